"""Background removal where the science looks: the brain edge, the cortex, the brainstem nuclei.

Every background method (qsm.background) with the study's inversion (STAR-like), and the two
best with TV-ADMM, on two datasets made from the same true susceptibility of one 1 mm subject of
config/simulation/study.yaml:
(a) the simulator's own GRE (background field from air, bone and tissue outside the brain,
    noise, phase offsets), and
(b) qsm-forward's (an independent forward and signal model) with its shim field and phase
    offset on, as in issue 20.
Scores against the truth over the voxels each chain keeps (mean removed in both): NRMSE and
XSIM (qsm-ci), the mean error of each deep nucleus (caudate, pallidum, putamen, thalamus,
substantia nigra, red nucleus) and of the precentral cortical ribbon (AAL3 Precentral_L/R through
the TRUE subject-to-MNI transform, cortical GM only) with its correlation, the RMS error in bins
of distance from the true brain mask's edge (0-6, 6-12, 12-20, 20-30, >30 mm), the share of the
brain the final mask keeps, and seconds.

Usage: python benchmarks/qsm_background.py [--subject sub-NC001] [--mask magnitude|true]
Writes benchmarks/results/qsm_background[_mask-true].{tsv,txt}. ``--mask true`` gives every chain
the true brain mask (what the workflow's default T1w-derived mask approximates) instead of the
magnitude mask (BET after N4, made once per dataset; its time is added to every chain's seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
from qsm_accuracy import qsm_forward_dataset
from scipy import ndimage

from qsmvbm import atlas
from qsmvbm.bids import load_megre
from qsmvbm.layout import truth_file
from qsmvbm.qsm.mask import bet_magnitude_mask
from qsmvbm.qsm.pipeline import reconstruct
from qsmvbm.simulate.cohort_io import simulate_one, write_cohort_tables
from qsmvbm.simulate.settings import load_simulation_config
from qsmvbm.simulate.subject import DSEG_LABELS, load_true_transform
from qsmvbm.transforms import sample, world_coords

ROOT = Path(__file__).resolve().parents[1]
NUCLEI = ["caudate", "pallidum", "putamen", "thalamus", "substantia_nigra", "red_nucleus"]
BINS_MM = [(0, 6), (6, 12), (12, 20), (20, 30), (30, 999)]
CHAINS = {
    "V-SHARP + STAR (study)": {"background": "vsharp"},
    "PDF + STAR": {"background": "pdf"},
    "LBV + STAR": {"background": "lbv"},
    "LBV, former default (outer layer dropped) + STAR": {
        "background": "lbv",
        "lbv": {"erode": 1, "peel": 0, "rim_k": 0},
    },
    "LBV (rim kept, boundary peeled) + STAR": {
        "background": "lbv",
        "lbv": {"erode": 0, "peel": 1, "rim_k": 0},
    },
    "LBV (rim dropped, boundary peeled) + STAR": {
        "background": "lbv",
        "lbv": {"erode": 1, "peel": 1, "rim_k": 0},
    },
    "iSMV + STAR": {"background": "ismv"},
    "RESHARP + STAR": {"background": "resharp"},
    "V-SHARP + TV-ADMM": {"background": "vsharp", "inversion": "tvadmm"},
    "LBV + TV-ADMM": {"background": "lbv", "inversion": "tvadmm"},
    "V-SHARP + mSMV + STAR": {"background": "vsharp", "edge_refinement": "msmv"},
    "LBV + mSMV + STAR": {"background": "lbv", "edge_refinement": "msmv"},
    "TFI (total field inversion, no background removal)": {"background": "tfi"},
}
FLOOR = "floor: STAR of the shimmed true local field"


def precentral_ribbon(truth_dir: Path, pid: str, shape, affine, seg) -> np.ndarray:
    """Cortical-GM voxels of the subject's GRE grid that map into AAL3 Precentral_L/R through the
    true subject -> MNI transform."""
    labels, laff = atlas.load_aal3()
    mni = load_true_transform(truth_dir, pid).to_mni("MEGRE", world_coords(shape, affine))
    lab = sample(labels.astype(np.float32), laff, mni, order=0).astype(np.int16)
    return atlas.region_mask(lab, ["Precentral_L", "Precentral_R"]) & (
        seg == DSEG_LABELS["cortical_gm"]
    )


def shimmed_local_floor(truth, tmask, vs) -> SimpleNamespace:
    """The practical floor on qsm-forward's shimmed data (issue 20): the true local field (the
    field of the brain's own susceptibility, qsm-forward's forward model) less its 2nd-order
    polynomial fit in the mask (qsm-forward's shim step), inverted by the default chain's STAR with
    the true mask and referenced to the mean. No background removal can beat it: the shim took the
    polynomial's non-harmonic part of the local field with it."""
    from qsm_forward import qsm_forward as qf

    from qsmvbm.qsm.pipeline import DEFAULTS, invert_dipole
    from qsmvbm.qsm.reference import reference

    m = tmask.astype(bool)
    local = qf.generate_field(truth * m, m, voxel_size=list(vs), B0_dir=[0, 0, 1])
    _, shimmed, _ = qf.generate_shimmed_field(local, m, order=2)
    shimmed = np.where(m, shimmed, 0).astype(np.float32)
    b0 = np.array([0.0, 0.0, 1.0])
    chi = invert_dipole(shimmed, m, np.ones(m.shape, np.float32), vs, b0, DEFAULTS, {})
    chi, _ = reference(chi, m, "mean", None)
    return SimpleNamespace(chi=chi, final_mask=m)


def score(res, truth, tmask, seg, ribbon, depth_mm) -> dict:
    from qsm_ci.qsm_eval import score_arrays

    m = res.final_mask & tmask
    t = np.where(m, truth - truth[m].mean(), 0)
    c = np.where(m, res.chi - res.chi[m].mean(), 0)
    metrics, _ = score_arrays(c, t, m.astype(np.uint8), kind="chi", seg=seg)
    row = {k: metrics[k] for k in ("nrmse", "xsim") if k in metrics}
    for name in NUCLEI:
        sel = m & (seg == DSEG_LABELS[name])
        row[f"{name}_error_ppm"] = float((c - t)[sel].mean()) if sel.any() else np.nan
    sel = m & ribbon
    row["precentral_error_ppm"] = float((c - t)[sel].mean()) if sel.any() else np.nan
    row["precentral_r"] = float(np.corrcoef(c[sel], t[sel])[0, 1]) if sel.sum() > 2 else np.nan
    row["precentral_kept"] = float(sel.sum() / max(int((tmask & ribbon).sum()), 1))
    for lo, hi in BINS_MM:
        sel = m & (depth_mm > lo) & (depth_mm <= hi)
        key = f"rmse_{lo}_{hi if hi < 999 else 'inf'}mm"
        row[key] = float(np.sqrt(np.mean((c - t)[sel] ** 2))) if sel.any() else np.nan
    row["brain_kept"] = float(m.sum() / tmask.sum())
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "config" / "simulation" / "study.yaml"))
    ap.add_argument("--subject", default="sub-NC001")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "out" / "qsm_background"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--chains", nargs="*", help="names of CHAINS to run (default: all)")
    ap.add_argument(
        "--mask",
        choices=["magnitude", "true"],
        default="magnitude",
        help="brain mask given to the chain: its own magnitude mask, or the true brain mask (what "
        "the workflow's default T1w mask approximates); outputs get a _mask-true suffix",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="replace only the rows of the chains run now in an existing results table",
    )
    args = ap.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_simulation_config(args.config)
    bids = work / "sim"
    if not truth_file(bids, "dseg", args.subject).exists():
        cohort = write_cohort_tables(cfg, bids)
        simulate_one(cfg, bids, args.subject, cohort)
    truth = nib.load(truth_file(bids, "chi", args.subject)).get_fdata(dtype=np.float32)
    tmask = nib.load(truth_file(bids, "gre_mask", args.subject)).get_fdata() > 0
    seg = np.asarray(nib.load(truth_file(bids, "dseg", args.subject)).dataobj).astype(int)
    g = load_megre(bids, args.subject)
    vs = g.voxel_size
    ribbon = precentral_ribbon(bids, args.subject, tmask.shape, g.affine, seg)
    depth = ndimage.distance_transform_edt(tmask, sampling=vs)
    qf_bids, sl = qsm_forward_dataset(
        truth, tmask, seg, vs, g.echo_times_s, work / "qsm_forward", shim=True
    )
    gq = load_megre(qf_bids, "sub-1")
    datasets = [
        ("simulator 1 mm (background field)", g, truth, tmask, seg, ribbon, depth),
        (
            "qsm-forward (shim field, phase offset)",
            gq,
            truth[sl],
            tmask[sl],
            seg[sl],
            ribbon[sl],
            ndimage.distance_transform_edt(tmask[sl], sampling=vs),
        ),
    ]
    chains = {k: v for k, v in CHAINS.items() if not args.chains or k in args.chains}
    rows = []
    for dname, gre, tr, tm, sg, rib, dep in datasets:
        # the magnitude mask is the same for every chain: made once (BET after N4, the default
        # qsm.mask.method), then refined by phase quality inside each chain as in the workflow
        t0 = time.perf_counter()
        given = tm if args.mask == "true" else bet_magnitude_mask(gre.mag, gre.affine)
        mask_s = 0.0 if args.mask == "true" else time.perf_counter() - t0
        for cname, params in chains.items():
            t0 = time.perf_counter()
            res = reconstruct(
                gre.mag,
                gre.phase,
                gre.affine,
                gre.echo_times_s,
                gre.field_strength_t,
                params,
                given,
            )
            row = {
                "dataset": dname,
                "chain": cname,
                "mask": args.mask,
                "seconds": round(time.perf_counter() - t0 + mask_s, 1),
            }
            row.update(score(res, tr, tm, sg, rib, dep))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if not args.chains or FLOOR in args.chains:
        dname, gre, tr, tm, sg, rib, dep = datasets[1]
        t0 = time.perf_counter()
        res = shimmed_local_floor(tr, tm, vs)
        row = {"dataset": dname, "chain": FLOOR, "mask": "true"}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row.update(score(res, tr, tm, sg, rib, dep))
        rows.append(row)
        print(json.dumps(row), flush=True)
    df = pd.DataFrame(rows)
    name = "qsm_background" + ("_mask-true" if args.mask == "true" else "")
    if args.merge and (out / f"{name}.tsv").exists():
        # replace the rows of the chains run now, keep the others (e.g. after a change to one method)
        old = pd.read_csv(out / f"{name}.tsv", sep="\t", dtype={"mask": str})
        keep = ~old.set_index(["dataset", "chain"]).index.isin(list(zip(df.dataset, df.chain)))
        df = pd.concat([old[keep], df], ignore_index=True)
        order = {c: i for i, c in enumerate([*CHAINS, FLOOR])}
        ds = {d: i for i, d in enumerate(dict.fromkeys(df.dataset))}
        df = df.sort_values(
            by=["dataset", "chain"],
            key=lambda col: col.map(ds if col.name == "dataset" else order),
        )
    df.to_csv(out / f"{name}.tsv", sep="\t", index=False, float_format="%.4g")
    (out / f"{name}.txt").write_text(
        df.to_string(index=False, float_format=lambda v: f"{v:.3g}") + "\n"
    )


if __name__ == "__main__":
    main()
