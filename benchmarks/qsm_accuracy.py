"""QSM accuracy: every method scored by qsm-ci's independent scorer against ground truth.

(a) the simulator's phantom (a 1 mm subject of config/simulation/study.yaml, with background
    field, cavities, noise and phase offsets), and (b) a dataset made by qsm-forward (an
    independent forward model) from the same true chi (local field only, its own signal model).

Usage: python benchmarks/qsm_accuracy.py [--config config/simulation/study.yaml] [--out benchmarks/results]
Writes qsm_accuracy.tsv (dataset x chain x metric) and qsm_accuracy.txt.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmvbm.bids import load_megre
from qsmvbm.qsm.pipeline import reconstruct
from qsmvbm.simulate.cohort_io import simulate_one, truth_dir, write_cohort_tables
from qsmvbm.simulate.settings import load_simulation_config
from qsmvbm.simulate.subject import truth_paths

CHAINS = {
    "default (study: Laplacian, V-SHARP, STAR-like)": {},
    "default with V-SHARP TSVD 0.05": {"vsharp": {"tsvd": 0.05}},
    "TKD": {"inversion": "tkd"},
    "TV-ADMM": {"inversion": "tvadmm"},
    "iLSQR-like": {"inversion": "ilsqr"},
    "consensus (path unwrap, V-SHARP, TV-ADMM)": {"unwrapping": "path", "inversion": "tvadmm"},
    "PDF + STAR-like": {"background": "pdf"},
}
DGM = {1: "caudate", 2: "pallidum", 3: "putamen", 7: "thalamus"}


def score(res, truth, tmask, seg):
    from qsm_ci.qsm_eval import score_arrays

    m = res.final_mask & tmask
    t = np.where(m, truth - truth[m].mean(), 0)
    metrics, _ = score_arrays(res.chi, t, m.astype(np.uint8), kind="chi", seg=seg)
    row = {
        k: metrics[k]
        for k in ("nrmse", "nrmse_detrend", "hfen", "xsim", "correlation", "dgm_linearity")
        if k in metrics
    }
    for lab, name in DGM.items():
        sel = m & (seg == lab)
        row[f"{name}_error_ppm"] = (
            float(res.chi[sel].mean() - t[sel].mean()) if sel.any() else np.nan
        )
    row["coverage"] = float(m.sum() / tmask.sum())
    return row


def head_crop(mask, margin: int = 16) -> tuple[slice, ...]:
    """Slices of the mask's bounding box plus ``margin`` voxels (the grid given to qsm-forward)."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def qsm_forward_dataset(chi, mask, seg, vs, tes, out: Path, shim: bool = False):
    """qsm-forward's BIDS dataset of ``chi`` (cropped to the head), phase offset on, its shim field
    on when ``shim``; made once per folder."""
    from qsm_forward import qsm_forward as qf

    # crop to keep qsm-forward's 2x-padded FFTs small
    sl = head_crop(mask)
    aff = np.diag([*vs, 1.0])
    out.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(chi[sl].astype(np.float32), aff), out / "chi.nii.gz")
    nib.save(nib.Nifti1Image(mask[sl].astype(np.uint8), aff), out / "mask.nii.gz")
    tissue = qf.TissueParams(
        chi=str(out / "chi.nii.gz"), mask=str(out / "mask.nii.gz"), seg=str(out / "mask.nii.gz")
    )
    recon = qf.ReconParams(
        TEs=np.asarray(tes),
        B0=3,
        voxel_size=np.asarray(vs),
        peak_snr=100,
        random_seed=1,
        generate_phase_offset=True,
        generate_shim_field=shim,
    )
    if not (out / "bids").exists():
        qf.generate_bids(tissue, recon, str(out / "bids"))
    return out / "bids", sl


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config/simulation/study.yaml")
    ap.add_argument("--subject", default="sub-NC001")
    ap.add_argument("--work", default="benchmarks/out/qsm_accuracy")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_simulation_config(args.config)
    bids = work / "sim"
    if not truth_paths(truth_dir(bids), args.subject)["dseg"].exists():
        cohort = write_cohort_tables(cfg, bids)
        simulate_one(cfg, bids, args.subject, cohort)
    tp = truth_paths(truth_dir(bids), args.subject)
    truth = nib.load(tp["chi"]).get_fdata(dtype=np.float32)
    tmask = nib.load(tp["gre_mask"]).get_fdata() > 0
    seg = np.asarray(nib.load(tp["dseg"]).dataobj).astype(int)
    g = load_megre(bids, args.subject)
    rows = []
    datasets = [("simulator 1 mm (background field, noise)", g, truth, tmask, seg)]
    qf_bids, sl = qsm_forward_dataset(
        truth, tmask, seg, g.voxel_size, g.echo_times_s, work / "qsm_forward"
    )
    gq = load_megre(qf_bids, "sub-1")
    datasets.append(("qsm-forward (local field only)", gq, truth[sl], tmask[sl], seg[sl]))
    for dname, gre, tr, tm, sg in datasets:
        for cname, params in CHAINS.items():
            t0 = time.perf_counter()
            res = reconstruct(
                gre.mag, gre.phase, gre.affine, gre.echo_times_s, gre.field_strength_t, params
            )
            row = {"dataset": dname, "chain": cname, "seconds": round(time.perf_counter() - t0, 1)}
            row.update(score(res, tr, tm, sg))
            rows.append(row)
            print(json.dumps(row), flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "qsm_accuracy.tsv", sep="\t", index=False, float_format="%.4g")
    (out / "qsm_accuracy.txt").write_text(
        df.to_string(index=False, float_format=lambda v: f"{v:.3g}") + "\n"
    )


if __name__ == "__main__":
    main()
