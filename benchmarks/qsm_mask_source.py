"""QSM brain mask: the magnitude (Otsu) mask against the T1w brain mask in GRE space (the default),
on every subject of a finished simulated run, scored against the simulator's true chi.

For each subject the QSM chain runs twice with the workflow's default parameters, once per mask
(both refined by phase quality), and reports: the mask's plausibility against the T1w brain
(qsmvbm.qsm.mask.mask_plausibility) and the QC verdict on it, the share of the true brain the final
mask keeps, the share of the final mask outside the true brain, and chi vs truth (RMSE, r, each
deep nucleus' mean error) in the voxels both final masks keep inside the true brain.

Usage: python benchmarks/qsm_mask_source.py RUN_DIR [--out benchmarks/results/qsm_mask_source_<name>.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmvbm.anat.normalize import t1_mask_in_gre
from qsmvbm.anat.qc import mask_qc_columns, plausibility_problems
from qsmvbm.bids import load_megre
from qsmvbm.config import validate
from qsmvbm.layout import Layout, truth_file
from qsmvbm.qsm.mask import brain_mask_from_magnitude, mask_plausibility
from qsmvbm.qsm.pipeline import reconstruct

ROOT = Path(__file__).resolve().parents[1]
DGM = {1: "caudate", 2: "pallidum", 3: "putamen", 7: "thalamus"}


def load(p, dtype=np.float64):
    return np.asarray(nib.load(p).dataobj, dtype=dtype)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    cfg = validate({}, ROOT / "workflow" / "schemas" / "config.schema.yaml")
    params = {k: v for k, v in cfg["qsm"].items() if k not in ("phase_units", "phase_scale")}
    params["mask"] = {k: v for k, v in params["mask"].items() if k != "source"}
    lay = Layout(a.run)
    bids = lay.sim_bids
    rows = []
    for anat in sorted(lay.derivatives.glob("sub-*/anat")):
        pid = anat.parent.name
        t0 = time.time()
        gre = load_megre(bids, pid)
        t1m = t1_mask_in_gre(
            lay.subject("t1_mask", pid), lay.subject("gre_xfm", pid), gre.mag.shape[:3], gre.affine
        )
        tiv = json.loads(lay.subject("volumes", pid).read_text())["TIV_ml"]
        truth = load(truth_file(bids, "chi", pid))
        tbrain = load(truth_file(bids, "gre_mask", pid)) > 0
        seg = load(truth_file(bids, "dseg", pid)).astype(int)
        masks = {
            "magnitude": brain_mask_from_magnitude(
                gre.mag,
                gre.voxel_size,
                **{
                    k: params["mask"][k]
                    for k in ("threshold_scale", "open_mm", "close_mm", "erode_mm")
                },
            ),
            "t1": t1m,
        }
        res = {
            name: reconstruct(
                gre.mag, gre.phase, gre.affine, gre.echo_times_s, gre.field_strength_t, params, m
            )
            for name, m in masks.items()
        }
        common = res["magnitude"].final_mask & res["t1"].final_mask & tbrain
        t = truth[common] - truth[common].mean()
        for name, r in res.items():
            p = mask_plausibility(masks[name], t1m, gre.voxel_size, tiv)
            why = plausibility_problems(pd.Series(mask_qc_columns(p)), cfg["qc"])
            c = r.chi[common] - r.chi[common].mean()
            row = {
                "participant_id": pid,
                "mask": name,
                "mask_ml": p["mask_ml"],
                "dice_t1": p["dice_t1"],
                "outside_t1": p["outside_t1_fraction"],
                "mask_tiv": p["mask_tiv_ratio"],
                "qc_fails": "; ".join(why),
                "true_brain_kept": float((r.final_mask & tbrain).sum() / tbrain.sum()),
                "final_outside_true_brain": float(
                    (r.final_mask & ~tbrain).sum() / r.final_mask.sum()
                ),
                "rmse_ppm": float(np.sqrt(((c - t) ** 2).mean())),
                "r": float(np.corrcoef(c, t)[0, 1]),
            }
            full = np.zeros(truth.shape)
            full[common] = c - t
            for lab, nm in DGM.items():
                sel = common & (seg == lab)
                row[f"{nm}_error_ppm"] = float(full[sel].mean()) if sel.any() else np.nan
            rows.append(row)
        print(
            pid,
            f"{time.time() - t0:.0f} s",
            {r["mask"]: round(r["rmse_ppm"], 4) for r in rows[-2:]},
            flush=True,
        )
    df = pd.DataFrame(rows)
    summary = {}
    for name, g in df.groupby("mask"):
        summary[name] = {
            "subjects": int(len(g)),
            "qc_failures": int((g.qc_fails != "").sum()),
            "median_rmse_ppm": float(g.rmse_ppm.median()),
            "median_r": float(g.r.median()),
            "median_true_brain_kept": float(g.true_brain_kept.median()),
            "max_final_outside_true_brain": float(g.final_outside_true_brain.max()),
            **{
                f"median_abs_{nm}_error_ppm": float(g[f"{nm}_error_ppm"].abs().median())
                for nm in DGM.values()
            },
        }
    wide = df.pivot(index="participant_id", columns="mask", values="rmse_ppm")
    summary["t1_better_rmse_subjects"] = int((wide["t1"] < wide["magnitude"]).sum())
    out = a.out or ROOT / "benchmarks" / "results" / f"qsm_mask_source_{a.run.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"run": str(a.run), "summary": summary, "subjects": rows}, indent=1) + "\n"
    )
    df.to_csv(out.with_suffix(".tsv"), sep="\t", index=False, float_format="%.5g")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
