"""The T1w stage with the brain extraction on a coarse copy (``anat.brain_extraction_voxel_mm``)
against the same on the T1w's own grid (0): time, and how much the subject's outputs change.

For each case the workflow's whole T1w stage (``qsmvbm.anat.pipeline.process_t1``) runs twice, once
per setting, at ``--resolution`` (the study's 1 mm template by default). Compared:

- time per step (s) and in all;
- brain mask: volume (mL), Dice between the two settings and, where there is one, with a reference
  (the simulator's true T1w brain mask; FSL BET's own ``ch2bet`` for Colin27);
- TIV and GM volume (mL, the sidecar's), and for simulated heads the truth's (sum of the true
  probability maps);
- the GM maps (mean |difference| inside either mask) and the normalisation: Dice of the two
  template-space brain masks and the correlation of the two warped T1w inside them.

Cases: simulated subjects of a BIDS folder (``--bids``, its truth under derivatives/simulation;
``--subjects``), Colin27 with scalp (``--mricron`` = the templates folder of Debian's mricron-data:
``apt-get download mricron-data; dpkg-deb -x``) and the real 2 mm XA30 T1w of tests/data.

    python benchmarks/brain_extraction_voxel.py --bids SIM_BIDS --subjects sub-ALS001 sub-NC001 \\
        --mricron /tmp/mricron/usr/share/mricron/templates --name 1mm

Writes ``benchmarks/results/brain_extraction_voxel_<name>.tsv`` (a row per case and setting, written
after each) and ``.json`` (per-setting medians).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmvbm.anat.normalize import dice
from qsmvbm.anat.pipeline import process_t1
from qsmvbm.config import workflow_defaults
from qsmvbm.layout import truth_dir, truth_file

ROOT = Path(__file__).resolve().parents[1]
XA30 = ROOT / "tests" / "data" / "real" / "xa30" / "5_anat-T1w_acq-tfl.nii.gz"
OUTPUTS = (
    "preproc mask gm wm csf dseg affine warp inverse_warp template_t1 template_mask volumes".split()
)


def run_case(t1w: Path, params: dict, folder: Path) -> tuple[dict, dict, float]:
    """process_t1 on one T1w; returns (sidecar, output paths, wall seconds)."""
    ext = {"affine": ".mat", "volumes": ".json"}
    out = {n: str(folder / f"{n}{ext.get(n, '.nii.gz')}") for n in OUTPUTS}
    t0 = time.perf_counter()
    info = process_t1(t1w, params, out, logging.getLogger("bench"))
    return info, out, time.perf_counter() - t0


def load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bids", default=None)
    ap.add_argument("--subjects", nargs="*", default=[])
    ap.add_argument("--mricron", default=None)
    ap.add_argument("--no-xa30", action="store_true")
    ap.add_argument("--resolution", type=int, default=1)
    ap.add_argument("--voxel-mm", nargs=2, type=float, default=[0.0, 2.0])
    ap.add_argument("--name", default="1mm")
    args = ap.parse_args(argv)

    cases = []  # (name, T1w, reference mask or None, truth folder or None)
    for pid in args.subjects:
        bids = Path(args.bids)
        cases.append(
            (
                pid,
                bids / pid / "anat" / f"{pid}_T1w.nii.gz",
                truth_file(truth_dir(bids), "t1_mask", pid),
                (truth_dir(bids), pid),
            )
        )
    if args.mricron:
        m = Path(args.mricron)
        cases.append(("colin27_ch2", m / "ch2.nii.gz", m / "ch2bet.nii.gz", None))
    if not args.no_xa30:
        cases.append(("xa30_real", XA30, None, None))

    results = ROOT / "benchmarks" / "results"
    tsv = results / f"brain_extraction_voxel_{args.name}.tsv"
    rows = []
    for name, t1w, ref, truth in cases:
        vox = float(np.prod(nib.load(t1w).header.get_zooms()[:3])) / 1000
        with tempfile.TemporaryDirectory() as tmp:
            outs = {}
            for v in args.voxel_mm:
                params = workflow_defaults(
                    {
                        "anat": {
                            "template_resolution": args.resolution,
                            "brain_extraction_voxel_mm": v,
                        }
                    }
                )["anat"]
                folder = Path(tmp) / f"v{v:g}"
                folder.mkdir()
                info, out, wall = run_case(t1w, params, folder)
                outs[v] = out
                mask = load(out["mask"]) > 0
                row = {
                    "case": name,
                    "brain_extraction_voxel_mm": v,
                    "total_s": round(wall, 1),
                    **{f"{k}_s": t for k, t in info["Timings_s"].items()},
                    "mask_ml": round(mask.sum() * vox, 1),
                    "TIV_ml": round(info["TIV_ml"], 1),
                    "GM_ml": round(info["GM_ml"], 1),
                }
                if ref is not None:
                    r = np.asarray(nib.load(ref).dataobj) > 0
                    row["dice_reference"] = round(dice(mask, r), 4)
                    row["reference_ml"] = round(r.sum() * vox, 1)
                if truth is not None:
                    tdir, pid = truth
                    tg = {
                        k: np.asarray(nib.load(truth_file(tdir, k, pid)).dataobj, float)
                        for k in ("gm", "wm", "csf")
                    }
                    row["true_TIV_ml"] = round(sum(a.sum() for a in tg.values()) * vox, 1)
                    row["true_GM_ml"] = round(tg["gm"].sum() * vox, 1)
                if v != args.voxel_mm[0]:
                    base = outs[args.voxel_mm[0]]
                    m0 = load(base["mask"]) > 0
                    either = m0 | mask
                    row["dice_vs_first"] = round(dice(mask, m0), 4)
                    row["gm_mean_abs_diff"] = round(
                        float(np.abs(load(out["gm"]) - load(base["gm"]))[either].mean()), 4
                    )
                    tm0, tm1 = load(base["template_mask"]) > 0, load(out["template_mask"]) > 0
                    row["template_mask_dice_vs_first"] = round(dice(tm0, tm1), 4)
                    both = tm0 & tm1
                    row["template_t1_corr_vs_first"] = round(
                        float(
                            np.corrcoef(
                                load(base["template_t1"])[both], load(out["template_t1"])[both]
                            )[0, 1]
                        ),
                        4,
                    )
                print(json.dumps(row), flush=True)
                rows.append(row)
                pd.DataFrame(rows).to_csv(tsv, sep="\t", index=False)
    df = pd.DataFrame(rows)
    summary = {
        "resolution_mm": args.resolution,
        "cases": [c[0] for c in cases],
        "median_total_s": {
            f"{v:g}": float(df.loc[df.brain_extraction_voxel_mm == v, "total_s"].median())
            for v in args.voxel_mm
        },
        "median_steps_s": {
            f"{v:g}": {
                c[:-2]: float(df.loc[df.brain_extraction_voxel_mm == v, c].median())
                for c in df.columns
                if c.endswith("_s") and c != "total_s"
            }
            for v in args.voxel_mm
        },
    }
    (results / f"brain_extraction_voxel_{args.name}.json").write_text(
        json.dumps(summary, indent=2) + "\n"
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
