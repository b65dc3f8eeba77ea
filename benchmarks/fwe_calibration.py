"""Family-wise error calibration of the small-volume corrections on null data.

For each of ``--runs`` null simulations: two groups of 34 smooth Gaussian noise images (no effect) on a
2 mm box around an AAL3 ROI, analysed by the workflow's own ``voxelwise_svc`` (GLM, smoothness from
residuals, clusters at p < 0.005, RFT and Freedman-Lane max-T). A run is a family-wise false positive
for a method when the ROI's highest peak has FWE p < 0.05:

- ``rft_roi``: RFT over the whole ROI (SPM SVC with the ROI as search volume);
- ``rft_sphere``: RFT in a 20 mm sphere around the peak x ROI (the reference study's SVC);
- ``perm_roi``: permutation max-T over the ROI;
- ``tfce_roi`` (with ``--tfce``): TFCE (E 0.5, H 2, dh 0.1) with the same permutations, any voxel
  of the ROI with TFCE FWE p < 0.05 (whether or not a cluster passes p < 0.005);
- ``*_extent``: the same and the study's extent rule (cluster >= 100 mm3 at p < 0.005).

Writes ``benchmarks/results/fwe_calibration.tsv`` (rates with 95% binomial intervals) and
``fwe_calibration.json``. The 95% band of a correct 5% test over 500 runs is [3.1%, 6.9%].
Each run's result is appended to ``benchmarks/out/fwe_calibration/<name>/<roi>_fwhm<mm>.jsonl`` as it
finishes, and a rerun of the same command reads them and goes on (each run has its own random
generator, seeded by the settings and its index). Tables before that change (the Thalamus_L rows of
``fwe_calibration*.tsv``) came from one generator shared by the runs: the same test, other noise.
A calibration stopped at a session's end is kept as ``benchmarks/results/<name>_<roi>_fwhm<mm>.partial.jsonl``;
to go on, copy it to ``benchmarks/out/fwe_calibration/<name>/<roi>_fwhm<mm>.jsonl`` and rerun the command
(the TFCE Precentral_L one: ``--runs 500 --n-perm 1000 --tfce --methods tfce_roi perm_roi rft_sphere
--rois Precentral_L --fwhm-mm 4.8 --name fwe_calibration_tfce_precentral``, about 17 s a run on one core).

    python benchmarks/fwe_calibration.py --runs 500 --n-perm 1000
    python benchmarks/fwe_calibration.py --runs 500 --n-perm 1000 --tfce --methods tfce_roi \
        --name fwe_calibration_tfce
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from qsmvbm.atlas import aal3_on_grid, region_mask
from qsmvbm.qsm.grid import bbox_slices, crop_affine
from qsmvbm.stats.glm import design_matrix
from qsmvbm.stats.rft import p_fwe_peak, resel_counts
from qsmvbm.stats.voxelwise import SvcParams, voxelwise_svc
from qsmvbm.templates import load_template

OUT = Path(__file__).parent / "results"
WORK = Path(__file__).parent / "out" / "fwe_calibration"


def roi_box(roi_name: str, margin: int = 6):
    """The ROI and the template brain mask cropped to the ROI's bounding box + margin (2 mm grid)."""
    tpl = load_template(2)
    roi = region_mask(aal3_on_grid(tpl.mask.shape, tpl.affine), [roi_name])
    sl = bbox_slices(roi, margin)
    return roi[sl], tpl.mask[sl], crop_affine(tpl.affine, sl)


def noise(rng, n, shape, fwhm_vox, pad=8):
    sigma = fwhm_vox / np.sqrt(8 * np.log(2))
    big = tuple(s + 2 * pad for s in shape)
    out = np.empty((n, *shape), np.float32)
    for i in range(n):
        f = ndimage.gaussian_filter(rng.normal(size=big), sigma)[pad:-pad, pad:-pad, pad:-pad]
        out[i] = f / f.std()
    return out


def one_run(rng, roi, brain, aff, fwhm_vox, n_perm, n_per_group=34, tfce=False):
    n = 2 * n_per_group
    data = noise(rng, n, roi.shape, fwhm_vox)
    X = design_matrix(np.r_[np.ones(n_per_group), np.zeros(n_per_group)])
    params = SvcParams(
        svc_volume="sphere", n_perm=n_perm, seed=int(rng.integers(1 << 31)), tfce=tfce
    )
    ones = np.ones(roi.shape, bool)
    res = voxelwise_svc(lambda i: (data[i], ones), X, 1.0, brain, {"roi": roi}, aff, params)
    out = {"fwhm_est_vox": float(np.mean(res.info["fwhm_vox"]))}
    if tfce:
        out["tfce_roi"] = float(res.tfce_pfwe[roi & res.mask].min())
    if not res.clusters:
        return out | {k: 1.0 for k in ("rft_roi", "rft_sphere", "perm_roi")} | {"extent_mm3": 0.0}
    top = max(res.clusters, key=lambda c: c["peak_t"])
    search = roi & res.mask
    p_roi = p_fwe_peak(
        top["peak_t"], res.info["df"], resel_counts(search, res.info["fwhm_vox"]), int(search.sum())
    )[0]
    return out | {
        "rft_roi": float(p_roi),
        "rft_sphere": top["p_fwe_rft"],
        "perm_roi": top["p_fwe_perm"],
        "extent_mm3": top["volume_mm3"],
    }


def resumable_runs(log: Path, n_runs: int, run, seed: list[int]) -> list[dict]:
    """``n_runs`` results of ``run(rng)``, run ``i`` with its own generator ``seed + [i]``, each
    appended to the JSON-lines file ``log`` as it finishes; runs already in ``log`` are read, not
    redone, so an interrupted calibration goes on where it stopped (same results as in one go)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec.pop("seed") == seed:
                done[rec.pop("run")] = rec
    t0 = time.time()
    with log.open("a") as fh:
        for i in range(n_runs):
            if i in done:
                continue
            done[i] = run(np.random.default_rng([*seed, i]))
            fh.write(json.dumps({"run": i, "seed": seed, **done[i]}) + "\n")
            fh.flush()
            if len(done) % 25 == 0:
                print(
                    f"{log.name}: {len(done)}/{n_runs} runs ({time.time() - t0:.0f} s)", flush=True
                )
    return [done[i] for i in range(n_runs)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--n-perm", type=int, default=1000)
    ap.add_argument("--rois", nargs="+", default=["Thalamus_L", "Precentral_L"])
    ap.add_argument(
        "--fwhm-mm",
        nargs="+",
        type=float,
        default=[4.8, 8.0],
        help="noise smoothness: 4.8 mm as measured on template-space QSM, 8 mm as smoothed modulated GM",
    )
    ap.add_argument("--seed", type=int, default=2016)
    ap.add_argument("--tfce", action="store_true", help="also TFCE (tfce_roi)")
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["rft_roi", "rft_sphere", "perm_roi"],
        help="rates reported (tfce_roi needs --tfce)",
    )
    ap.add_argument("--name", default="fwe_calibration", help="output file stem")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows, t0 = [], time.time()
    for roi_name in args.rois:
        roi, brain, aff = roi_box(roi_name)
        for fwhm_mm in args.fwhm_mm:
            log = WORK / args.name / f"{roi_name}_fwhm{fwhm_mm:g}.jsonl"
            df = pd.DataFrame(
                resumable_runs(
                    log,
                    args.runs,
                    partial(
                        one_run,
                        roi=roi,
                        brain=brain,
                        aff=aff,
                        fwhm_vox=fwhm_mm / 2.0,
                        n_perm=args.n_perm,
                        tfce=args.tfce,
                    ),
                    [args.seed, int(fwhm_mm * 10), len(roi_name), args.n_perm, int(args.tfce)],
                )
            )
            for method in args.methods:
                for extent in (False, True):
                    fp = (df[method] < 0.05) & ((df["extent_mm3"] >= 100) if extent else True)
                    k = int(fp.sum())
                    lo, hi = stats.binomtest(k, args.runs).proportion_ci(0.95)
                    rows.append(
                        {
                            "roi": roi_name,
                            "roi_voxels": int(roi.sum()),
                            "fwhm_mm": fwhm_mm,
                            "fwhm_est_mm": 2.0 * df["fwhm_est_vox"].mean(),
                            "method": method + ("_extent" if extent else ""),
                            "runs": args.runs,
                            "false_positives": k,
                            "fwe_rate": k / args.runs,
                            "ci95_low": lo,
                            "ci95_high": hi,
                            "in_band_3.1_6.9": 0.031 <= k / args.runs <= 0.069,
                        }
                    )
            print(pd.DataFrame(rows).tail(6).to_string(), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(OUT / f"{args.name}.tsv", sep="\t", index=False, float_format="%.4g")
    (OUT / f"{args.name}.json").write_text(
        json.dumps(
            {
                "runs": args.runs,
                "n_perm": args.n_perm,
                "tfce": {"E": 0.5, "H": 2.0, "dh": 0.1} if args.tfce else None,
                "groups": "34 vs 34",
                "cluster_forming_p": 0.005,
                "sphere_radius_mm": 20,
                "wall_s": round(time.time() - t0, 1),
            },
            indent=2,
        )
    )
    print(table.to_string())


if __name__ == "__main__":
    main()
