"""Atropos prior weight and regional GM on a simulated cohort processed by the workflow.

For the first N/2 patients and N/2 controls of a run, Atropos is run again on the saved N4-corrected T1w
(``desc-preproc_T1w``) and brain mask, with the template priors pulled back through the run's own
T1w->template transforms, once per setting (prior weight, MRF). GM volume (mL, native T1w grid) is summed in
each planted effect region mapped into the subject through the TRUE subject->MNI map, and compared with the
true GM volume there, and the whole-brain GM with the true GM volume.

Caveat, for reading the numbers: the simulator's GM truth is the template's GM prior deformed, while its T1w
contrast is the template's T1 image; in the thalamus the two disagree (median T1 intensity 0.745, between GM
0.651 and WM 0.871, with GM prior 0.57), and a heavy prior weight agrees with the truth partly because the
truth is the prior.

Usage: python benchmarks/segmentation_prior_weight.py RESULTS N SETTINGS_JSON OUT.tsv
       python benchmarks/segmentation_prior_weight.py --summarize OUT.tsv SETTINGS_JSON
(SETTINGS_JSON e.g. '[{"pw": 0.25, "mrf": 0.1}, {"pw": 0.5, "mrf": 0.1}]'; the summary goes to OUT.json)
"""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from anat_validation import (  # benchmarks/ (this script's folder) is on sys.path
    effect_masks,
    true_region_masks,
)
from scipy import stats

from qsmvbm.anat import t1
from qsmvbm.anat.antsio import to_ants
from qsmvbm.layout import Layout, truth_dir, truth_file, truth_table
from qsmvbm.templates import load_template


def measure(res: Path, n: int, settings: list, outf: str) -> None:
    lay = Layout(res)
    truth = truth_dir(lay.sim_bids)
    parts = pd.read_csv(lay.sim_bids / "participants.tsv", sep="\t")
    masks = effect_masks(truth, pd.read_csv(truth_table(truth, "effects"), sep="\t"))
    tpl = load_template(2)
    pids = list(parts.participant_id[parts.group == "ALS"][: n // 2]) + list(
        parts.participant_id[parts.group == "NC"][: n // 2]
    )
    rows = []
    for pid in pids:
        pre = nib.load(lay.subject("t1_preproc", pid))
        n4 = to_ants(pre.get_fdata(dtype=np.float32), pre.affine)
        mask = nib.load(lay.subject("t1_mask", pid)).get_fdata() > 0
        priors = t1.template_priors(
            tpl, n4, [str(lay.subject("affine", pid)), str(lay.subject("inverse_warp", pid))]
        )
        gt = nib.load(truth_file(truth, "gm", pid))
        vox = float(np.prod(gt.header.get_zooms()[:3])) / 1000
        regions = true_region_masks(truth, pid, masks, gt)
        row = {
            "participant_id": pid,
            "GM_true": json.loads(truth_file(truth, "truth_json", pid).read_text())["GM_ml"],
        }
        for k, r in regions.items():
            row[f"true_{k}"] = float(gt.get_fdata()[r].sum() * vox)
        for s in settings:
            seg = t1.segment(n4, mask, priors, s["pw"], s["mrf"], 5)
            tag = f"pw{s['pw']}_mrf{s['mrf']}"
            for k, r in regions.items():
                row[f"{tag}_{k}"] = float(seg["gm"][r].sum() * vox)
            row[f"{tag}_GM"] = float(seg["gm"].sum() * vox)
        rows.append(row)
        print(pid, flush=True)
    pd.DataFrame(rows).to_csv(outf, sep="\t", index=False)


def summarize(outf: str, settings: list) -> dict:
    df = pd.read_csv(outf, sep="\t")
    regions = [c[len("true_") :] for c in df.columns if c.startswith("true_")]
    out = {"n_subjects": len(df), "settings": {}}
    for s in settings:
        tag = f"pw{s['pw']}_mrf{s['mrf']}"
        d = {
            "GM": {
                "pearson_r": float(stats.pearsonr(df[f"{tag}_GM"], df.GM_true)[0]),
                "median_measured_over_true": float((df[f"{tag}_GM"] / df.GM_true).median()),
            }
        }
        for k in regions:
            d[k] = {
                "pearson_r": float(stats.pearsonr(df[f"{tag}_{k}"], df[f"true_{k}"])[0]),
                "median_measured_over_true": float((df[f"{tag}_{k}"] / df[f"true_{k}"]).median()),
            }
        out["settings"][tag] = d
    Path(outf).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    if sys.argv[1] == "--summarize":
        print(json.dumps(summarize(sys.argv[2], json.loads(sys.argv[3])), indent=1))
    else:
        settings = json.loads(sys.argv[3])
        measure(Path(sys.argv[1]), int(sys.argv[2]), settings, sys.argv[4])
        print(json.dumps(summarize(sys.argv[4], settings), indent=1))
