"""Background removal on the workflow's own masks: every subject of a finished simulated run re-solved
from its saved total field, per background-removal setting, scored against the simulator's truth.

``qsm_background.py`` compares the methods on one 1 mm subject with the true or a magnitude mask; this
benchmark asks what they do with the masks the workflow makes (by default the T1w brain mask brought
to the GRE grid, refined by phase quality), at the run's resolution, on every subject. For each
subject the run's total field (ppm) and brain mask are read, the mask is refined by phase quality as
the run did, then each chain's background removal and the run's STAR inversion (mean reference) are
applied. Scores (``qsm_background.score``): NRMSE and XSIM over the voxels each chain keeps inside the
true brain (means removed), each deep nucleus' mean error, the precentral cortical ribbon's error and
correlation, RMS error by distance from the true brain's edge, the share of the true brain kept.

Usage: python benchmarks/qsm_background_run.py RUN_DIR --name NAME [--subjects N]
Writes benchmarks/results/qsm_background_run_<NAME>.{tsv,json} (per subject and chain; the JSON adds
the medians over subjects).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from qsm_background import precentral_ribbon, score
from scipy import ndimage

from qsmvbm.dipole import b0_direction_from_affine, voxel_sizes
from qsmvbm.layout import Layout, truth_file
from qsmvbm.qsm.mask import refine_by_quality
from qsmvbm.qsm.pipeline import DEFAULTS, invert_dipole, merge, remove_background
from qsmvbm.qsm.reference import reference

ROOT = Path(__file__).resolve().parents[1]
CHAINS = {
    "LBV (default: rim test)": {"background": "lbv"},
    "LBV, former default (outer layer dropped)": {
        "background": "lbv",
        "lbv": {"erode": 1, "peel": 0, "rim_k": 0},
    },
    "LBV, boundary kept (no rim test)": {"background": "lbv", "lbv": {"rim_k": 0}},
    "V-SHARP (study)": {"background": "vsharp"},
}


def load(p, dtype=np.float32):
    return np.asarray(nib.load(p).dataobj, dtype=dtype)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--subjects", type=int, help="the first N subjects only")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    lay = Layout(args.run)
    pids = sorted(p.parent.name for p in lay.derivatives.glob("sub-*/anat"))
    pids = [p for p in pids if lay.subject("total_field", p).exists()][: args.subjects]
    rows = []
    for pid in pids:
        img = nib.load(lay.subject("total_field", pid))
        affine = img.affine
        total = np.asarray(img.dataobj, np.float32)
        noise = load(lay.subject("noise", pid))
        mask = load(lay.subject("gre_brain_mask", pid)) > 0
        quality = DEFAULTS["mask"]
        if quality["phase_quality"]:
            mask = refine_by_quality(mask, noise, quality["quality_factor"])
        vs, b0 = voxel_sizes(affine), b0_direction_from_affine(affine)
        truth = load(truth_file(lay.sim_bids, "chi", pid))
        tmask = load(truth_file(lay.sim_bids, "gre_mask", pid)) > 0
        seg = load(truth_file(lay.sim_bids, "dseg", pid), np.int16).astype(int)
        ribbon = precentral_ribbon(lay.sim_bids, pid, tmask.shape, affine, seg)
        depth = ndimage.distance_transform_edt(tmask, sampling=vs)
        for cname, params in CHAINS.items():
            p = merge(params)
            info: dict = {}
            t0 = time.perf_counter()
            local, final = remove_background(total, noise, mask, vs, b0, p, info, None)
            chi = invert_dipole(local, final, noise, vs, b0, p, info)
            chi, _ = reference(chi, final, "mean", None)
            row = {
                "subject": pid,
                "chain": cname,
                "seconds": round(time.perf_counter() - t0, 1),
                "mask_outside_true_brain": float((mask & ~tmask).sum() / mask.sum()),
                "rim_dropped": int(sum(info.get("lbv_rim_dropped", []))),
            }
            row.update(
                score(
                    argparse.Namespace(chi=chi, final_mask=final), truth, tmask, seg, ribbon, depth
                )
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"qsm_background_run_{args.name}"
    df.to_csv(f"{stem}.tsv", sep="\t", index=False, float_format="%.4g")
    num = df.drop(columns=["subject"]).groupby("chain", sort=False).median(numeric_only=True)
    worst = df.groupby("chain", sort=False)["nrmse"].max()
    summary = {
        "run": str(args.run),
        "subjects": len(pids),
        "chains": CHAINS,
        "median": json.loads(num.to_json(orient="index")),
        "worst_nrmse": worst.to_dict(),
    }
    Path(f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        num[
            [
                "nrmse",
                "substantia_nigra_error_ppm",
                "red_nucleus_error_ppm",
                "precentral_error_ppm",
                "brain_kept",
            ]
        ]
    )


if __name__ == "__main__":
    main()
