"""How well a pilot knows its noise where an effect lies: the coverage of ``qsmvbm-power``'s
bootstrap range (:func:`qsmvbm.stats.power.noise_scale_range`, setting ``power.pilot_bootstrap``).

Usage::

    python benchmarks/pilot_noise.py simulated [--pilots 300]
    python benchmarks/pilot_noise.py cohorts WORK [--spread-from study2mm_10v10_spread]

``simulated``: Gaussian (and t(4)) pilots of known unit noise, smoothed (FWHM 2.4 voxels) and with
a share of the noise common to every voxel (a whole-ROI offset per subject, as the thalami's QSM
residuals have: correlation 0.6 there), in an 8^3 crop with a 4^3 effect: the share of pilots whose
95% range covers the true noise (the pilot's estimate over it) and the median range. Writes
``benchmarks/results/pilot_noise_simulated.json``.

``cohorts``: the full-pipeline check. Each cohort of ``benchmarks/power_cohorts.py run`` that kept
its subject maps is a pilot of the same simulator: per planted search (modality x ROI), its noise
where the planted effect lies (its planted profile on the model's crop; for GM relative to the
controls' mean map, with the pipeline's spread of the comparison ``--spread-from``) against the
other cohorts' pooled noise there (leave one out, weighted by their degrees of freedom: the truth
as far as they know it), and its bootstrap range: covered or not, and ``z``, the log ratio over its
SD with the others' own error (both from the bootstrap's chi df). Writes
``benchmarks/results/pilot_noise_cohorts{.tsv,.json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from group_end_to_end import planted_weight  # noqa: E402
from power_cohorts import OUT, cohort_maps, pooled_pilot, pooled_reference  # noqa: E402

from qsmvbm.config import workflow_defaults  # noqa: E402
from qsmvbm.layout import truth_dir, truth_table  # noqa: E402
from qsmvbm.stats.glm import design_matrix  # noqa: E402
from qsmvbm.stats.power import (  # noqa: E402
    effect_noise,
    effect_weight,
    noise_scale_bootstrap,
    noise_scale_range,
)
from qsmvbm.stats.power_cli import SubjectMaps, load_model, roi_crop  # noqa: E402

CASES = [  # per group, share of the noise common to the crop, tails
    (10, 0.6, "normal"),
    (10, 0.0, "normal"),
    (10, 1.0, "normal"),
    (20, 0.6, "normal"),
    (10, 0.6, "t4"),
]


def simulated(args) -> None:
    out = {}
    for ng, shared, tails in CASES:
        rng = np.random.default_rng(1)
        x = np.r_[np.ones(ng), np.zeros(ng)]
        X = design_matrix(x)
        weight = np.zeros((8, 8, 8))
        weight[2:6, 2:6, 2:6] = 1

        def z(shape, rng=rng, tails=tails):
            if tails == "normal":
                return rng.standard_normal(shape)
            return rng.standard_t(4, shape) / np.sqrt(2)  # unit variance

        def draw(k, z=z):
            return np.stack([ndimage.gaussian_filter(a, 1.0) for a in z((k, 8, 8, 8))])

        unit = draw(3000).std(axis=0)  # each voxel's SD of the smoothed noise
        hits, ends, nus = [], [], []
        for p in range(args.pilots):
            noise = np.sqrt(1 - shared) * draw(2 * ng) / unit
            noise = noise + np.sqrt(shared) * z((2 * ng, 1, 1, 1))
            g = effect_noise(noise, X, weight)  # the truth is 1: the pilot's noise over it
            low, high, nu = noise_scale_range(
                noise_scale_bootstrap(noise, X, x, weight, args.boot, p), 2 * ng
            )
            hits.append(low <= g <= high)
            ends.append((low, high))
            nus.append(nu)
        key = f"{ng}+{ng}, shared {shared}, {tails}"
        out[key] = {
            "coverage": float(np.mean(hits)),
            "median_range": np.median(ends, axis=0).round(3).tolist(),
            "median_nu": round(float(np.median(nus)), 1),
            "pilots": args.pilots,
            "bootstrap": args.boot,
        }
        print(key, out[key], flush=True)
    (OUT / "pilot_noise_simulated.json").write_text(json.dumps(out, indent=1))


def cohorts(args) -> None:
    cdirs = sorted(
        (c for c in args.work.glob("cohort-*") if (c / "keep" / "maps").is_dir()),
        key=lambda c: int(c.name.split("-")[1]),
    )
    if len(cdirs) < 3:
        raise SystemExit(f"{args.work}: {len(cdirs)} cohorts kept their subject maps; 3+ needed")
    spread = json.loads((OUT / f"power_cohorts_{args.spread_from}.json").read_text())["spread_mm"]
    wf = workflow_defaults(yaml.safe_load((cdirs[0] / "config.yaml").read_text()))
    truth = truth_dir(cdirs[0] / "keep")
    effects = pd.read_csv(truth_table(truth, "effects"), sep="\t")
    searches = json.loads((cdirs[0] / "result.json").read_text())["searches"]
    rows = []
    for mod in ("qsm", "gm"):
        pilot = pooled_pilot(cdirs, mod)
        # every cohort's subject maps read once per modality, then cut to each search's crop
        grid = cohort_maps(cdirs, mod, wf, (slice(None),) * 3)
        for s in searches:
            if s["modality"] != mod or not s["planted"]:
                continue
            roi = s["roi"]
            sl = roi_crop(pilot, roi)
            model, _ = load_model(pilot, roi)
            w, _ = planted_weight(effects[effects["name"] == s["effect"]].iloc[0], truth)
            studies = [SubjectMaps(c.maps[(slice(None), *sl)], c.X, c.controls) for c in grid]
            scale = pooled_reference(studies) if mod == "gm" else None
            weight = effect_weight(
                model, None, 0.0, w[sl], scale, float(spread.get(f"{mod} {roi}", 0.0))
            )
            noise = np.array([effect_noise(c.maps, c.X, weight) for c in studies])
            df = np.array([len(c.maps) - np.linalg.matrix_rank(c.X) for c in studies], float)
            ranges = [
                noise_scale_range(
                    noise_scale_bootstrap(c.maps, c.X, c.controls, weight, args.boot, k),
                    len(c.maps),
                )
                for k, c in enumerate(studies)
            ]
            nus = np.array([r[2] for r in ranges])
            for k, (c, (low, high, nu)) in enumerate(zip(cdirs, ranges)):
                others = np.arange(len(studies)) != k
                truth_loo = np.sqrt((df[others] * noise[others] ** 2).sum() / df[others].sum())
                g = noise[k] / truth_loo
                # the others' pooled noise is uncertain too: log g over its whole SD (both
                # sides' scaled chi, var(log sd) ~ 1 / (2 nu)), which is N(0, 1) if the
                # bootstrap's nu are right
                z = np.log(g) / np.sqrt(1 / (2 * nu) + 1 / (2 * nus[others].sum()))
                rows.append(
                    {
                        "cohort": c.name,
                        "modality": mod,
                        "roi": roi,
                        "noise": noise[k],
                        "others_noise": truth_loo,
                        "ratio": g,
                        "range_low": low,
                        "range_high": high,
                        "nu": nu,
                        "covered": bool(low <= g <= high),
                        "z": z,
                    }
                )
                print({k: v for k, v in rows[-1].items()}, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(OUT / "pilot_noise_cohorts.tsv", sep="\t", index=False, float_format="%.5g")
    summary = {
        "work": str(args.work),
        "cohorts": [c.name for c in cdirs],
        "spread_from": args.spread_from,
        "bootstrap": args.boot,
        "coverage": float(table.covered.mean()),
        "checks": len(table),
        "coverage_by_search": {
            f"{m} {r}": float(g.covered.mean()) for (m, r), g in table.groupby(["modality", "roi"])
        },
        "median_range": [float(table.range_low.median()), float(table.range_high.median())],
        # with the others' own error: |z| < 1.96 in 95% of checks, and z's SD 1, if the ranges
        # are right (an SD above 1: the bootstrap's ranges are too narrow by that factor)
        "within_z_1.96": float((table.z.abs() < 1.96).mean()),
        "z_sd": float(np.sqrt((table.z**2).mean())),
        "z_sd_by_search": {
            f"{m} {r}": float(np.sqrt((g.z**2).mean()))
            for (m, r), g in table.groupby(["modality", "roi"])
        },
        "ratio_sd_log": float(np.log(table.ratio).std()),
    }
    (OUT / "pilot_noise_cohorts.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("simulated")
    s.add_argument("--pilots", type=int, default=300)
    s.add_argument("--boot", type=int, default=200)
    c = sub.add_parser("cohorts")
    c.add_argument("work", type=Path)
    c.add_argument("--spread-from", default="study2mm_10v10_spread")
    c.add_argument("--boot", type=int, default=200)
    args = ap.parse_args(argv)
    {"simulated": simulated, "cohorts": cohorts}[args.cmd](args)


if __name__ == "__main__":
    main()
