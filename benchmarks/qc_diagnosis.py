"""Why did the normalization QC flag a subject? Checks each flag of a simulated run against the truth.

For every subject of a workflow run on a simulated cohort (``<results>/sim_bids/derivatives/simulation``):

* ``gre_to_t1_error_mm``: mean and max distance, over 3,000 brain points of the T1w, between where the
  estimated GRE->T1w rigid transform (``register_gre``) and the true one put them (mm);
* ``qsm_rmse_ppm`` and ``qsm_r``: the reconstructed QSM against the true susceptibility in the
  subject's QSM mask (GRE grid, both referenced to their median in the mask);
* ``chi_z_<tissue>``: how far the subject's drawn tissue susceptibility lies from the cohort mean, in SDs
  (the simulator draws every tissue's value per subject);
* the QC table's own columns (``qsm_dgm_corr``, ``qsm_dgm_robust_z``, ``included``, ``reason``) and, where
  ``benchmarks/anat_validation.py`` has written its table for this run (``--anat-table``), the truth-based
  Dice of the deep grey regions;
* across the cohort, the Pearson r of ``qsm_dgm_corr`` with each of these and with how atypical the
  subject's nuclei are (``chi_nuclei_sum_z2``: the sum of the squared ``chi_z`` of the six nuclei).

An alternative QC metric is scored alongside: ``qsm_dgm_lncc``, the mean local (``--window`` voxels wide)
correlation with the cohort median in the same deep-grey mask, and its robust z (``qsm_dgm_lncc_robust_z``,
MADs below the cohort median), which does not depend on each nucleus' overall level.

A flagged subject whose transforms and QSM are as good as the rest's was flagged for what it is (for
example unusual iron in its nuclei), not for its normalization.

Usage: python benchmarks/qc_diagnosis.py RESULTS [--anat-table T] [--window 5] [--out benchmarks/results/qc_diagnosis.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from qsmvbm.anat.antsio import LPS
from qsmvbm.anat.qc import deep_grey_roi, robust_z_below
from qsmvbm.layout import Layout, truth_file

TISSUES = (
    "cortical_gm",
    "wm",
    "caudate",
    "putamen",
    "pallidum",
    "thalamus",
    "substantia_nigra",
    "red_nucleus",
)


def rigid_error_mm(ants_mat: Path, true_gre_to_t1: np.ndarray, t1_points: np.ndarray) -> np.ndarray:
    """Distance (mm) between the GRE-space points the estimated and the true transform give for
    ``t1_points`` (N, 3, T1w world RAS mm). The ANTs ``from-MEGRE_to-T1w`` file maps T1w points to
    GRE points (LPS); ``true_gre_to_t1`` maps GRE world to T1w world (RAS, 4x4)."""
    import ants

    tx = ants.read_transform(str(ants_mat))
    # RAS <-> LPS (ITK's physical space): the map is its own inverse
    est = np.array([tx.apply_to_point(tuple(p)) for p in t1_points @ LPS]) @ LPS
    inv = np.linalg.inv(true_gre_to_t1)
    true = t1_points @ inv[:3, :3].T + inv[:3, 3]
    return np.linalg.norm(est - true, axis=1)


def local_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray, window: int) -> float:
    """Mean over ``mask`` of the Pearson correlation of ``a`` and ``b`` in a ``window``-voxel cube
    around each voxel (ANTs' CC metric); voxels where either is flat are left out."""
    a, b = a.astype(np.float64), b.astype(np.float64)

    def box(x):
        return ndimage.uniform_filter(x, window)

    ma, mb = box(a), box(b)
    cov, va, vb = box(a * b) - ma * mb, box(a * a) - ma**2, box(b * b) - mb**2
    ok = mask & (va > 1e-12) & (vb > 1e-12)
    return float(np.mean(cov[ok] / np.sqrt(va[ok] * vb[ok])))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--anat-table", help="the .tsv of benchmarks/anat_validation.py for this run")
    ap.add_argument(
        "--window",
        type=int,
        default=5,
        help="local correlation window (voxels of the template grid)",
    )
    ap.add_argument("--out", default="benchmarks/results/qc_diagnosis.json")
    args = ap.parse_args(argv)
    res = Path(args.results)
    lay = Layout(res)
    truth = lay.sim_bids
    qc = pd.read_csv(lay.group("qc_table"), sep="\t")
    rng = np.random.default_rng(0)
    rows = []
    for pid in qc.participant_id:
        tru = json.loads(truth_file(truth, "truth_json", pid).read_text())
        row = {"participant_id": pid}
        mask = nib.load(lay.subject("t1_mask", pid))
        ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
        ijk = ijk[rng.choice(len(ijk), min(3000, len(ijk)), replace=False)]
        pts = ijk @ mask.affine[:3, :3].T + mask.affine[:3, 3]
        err = rigid_error_mm(
            lay.subject("gre_xfm", pid), np.asarray(tru["MEGRE_to_T1w_world"]), pts
        )
        row.update(
            gre_to_t1_error_mm_mean=float(err.mean()), gre_to_t1_error_mm_max=float(err.max())
        )
        m = np.asarray(nib.load(lay.subject("qsm_mask", pid)).dataobj) > 0
        x = nib.load(lay.subject("chi", pid)).get_fdata(dtype=np.float32)[m]
        y = nib.load(truth_file(truth, "chi", pid)).get_fdata(dtype=np.float32)[m]
        x, y = x - np.median(x), y - np.median(y)
        row.update(
            qsm_rmse_ppm=float(np.sqrt(np.mean((x - y) ** 2))), qsm_r=float(np.corrcoef(x, y)[0, 1])
        )
        row.update({f"chi_{t}": tru["tissue_chi_ppm"][t] for t in TISSUES})
        rows.append(row)
    df = qc.merge(pd.DataFrame(rows), on="participant_id")
    maps = [nib.load(lay.subject("template_chi", pid)) for pid in df.participant_id]
    roi = deep_grey_roi(maps[0].shape, maps[0].affine)
    maps = [m.get_fdata(dtype=np.float32) for m in maps]
    median = np.median(np.stack(maps), axis=0)
    df["qsm_dgm_lncc"] = [local_correlation(m, median, roi, args.window) for m in maps]
    df["qsm_dgm_lncc_robust_z"] = robust_z_below(df.qsm_dgm_lncc.to_numpy())
    for t in TISSUES:
        c = df[f"chi_{t}"]
        df[f"chi_z_{t}"] = (c - c.mean()) / c.std()
    if args.anat_table:
        dice = pd.read_csv(args.anat_table, sep="\t")
        df = df.merge(
            dice[["participant_id"] + [c for c in dice.columns if c.startswith("dice_")]],
            on="participant_id",
            how="left",
        )
    checks = ["gre_to_t1_error_mm_mean", "qsm_rmse_ppm", "qsm_r"] + [
        c for c in df.columns if c.startswith("dice_") and c != "dice_brain"
    ]
    pct = df[checks].rank(pct=True)
    out = {
        "results": str(res),
        "n_subjects": len(df),
        "cohort": {
            c: {
                "median": float(df[c].median()),
                "min": float(df[c].min()),
                "max": float(df[c].max()),
            }
            for c in checks
        },
        "local_correlation": {
            "window_voxels": args.window,
            "flagged_at_robust_z_3.5": df.participant_id[df.qsm_dgm_lncc_robust_z > 3.5].tolist(),
            "robust_z_of_the_global_metric_flags": {
                pid: float(z)
                for pid, z in zip(df.participant_id, df.qsm_dgm_lncc_robust_z)
                if pid in set(df.participant_id[~df.passed_qc.astype(bool)])
            },
        },
        "flagged": [],
    }
    # what the deep-grey QSM correlation follows across the cohort: Pearson r with each candidate
    nuclei = [t for t in TISSUES if t not in ("cortical_gm", "wm")]
    df["chi_nuclei_sum_z2"] = sum(df[f"chi_z_{t}"] ** 2 for t in nuclei)
    out["qsm_dgm_corr_pearson_r_with"] = {
        c: float(np.corrcoef(df.qsm_dgm_corr, df[c])[0, 1]) for c in ["chi_nuclei_sum_z2"] + checks
    }
    for i in np.flatnonzero(~df.passed_qc.to_numpy(bool)):
        r = df.iloc[i]
        out["flagged"].append(
            {
                "participant_id": r.participant_id,
                "reason": r.reason,
                "included": bool(r.included),
                **{c: float(r[c]) for c in checks},
                **{f"{c}_percentile": float(pct.iloc[i][c]) for c in checks},
                "tissue_chi_z": {t: round(float(r[f"chi_z_{t}"]), 2) for t in TISSUES},
            }
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    df.to_csv(Path(args.out).with_suffix(".tsv"), sep="\t", index=False, float_format="%.4g")
    print(json.dumps(out["flagged"], indent=1))


if __name__ == "__main__":
    main()
