"""Does the map-level power model agree with full-pipeline cohorts? (issue 23's validation)

Usage::

    python benchmarks/power_agreement.py RUN --name NAME [--n-per-group 6 10] [--partitions 20]
        [--n-perm 500] [--model-runs 200] [--jobs 2]

RUN is a finished run on a simulated cohort with planted effects (its ``sim_bids`` holds the truth),
e.g. ``config/simulation/study_2mm.yaml`` with 20 patients and 20 controls. For each planted QSM
effect (its AAL3 ROI) and each n:

1. **full pipeline**: sub-cohorts of n patients and n controls of RUN's included subjects, each
   analysed as the group stage does (:func:`qsmvbm.stats.voxelwise.voxelwise_svc` with the run's
   covariates, its subjects' template-space QSM masks, its group settings with TFCE on, and the
   smoothness of its GLM) on the ROI's crop (the ROI's search is the same on the crop as on the
   whole grid; the smoothness is given). Each of ``--partitions`` random partitions of each group
   gives ``floor(N / n)`` disjoint sub-cohorts. A detection: a significant cluster (RFT, max-T or
   TFCE; the extent rule) whose peak lies within ``--detect-mm`` of the planted centre. The null
   rows: the controls alone, split n versus n; any significant cluster in the ROI is a false
   positive.
2. **map-level model**: :func:`qsmvbm.stats.power.power_table` with the pilot model of RUN (residual
   SD and smoothness of its GLM, ``qsmvbm-power``'s ``load_model``), the planted profile (the
   simulator's gaussian cut at the ROI) and the survival measured on RUN (the recovered fraction of
   the planted effect, as ``group_end_to_end.py`` measures it), ``--model-runs`` simulated studies,
   the pooled null.

Both use the same ``n_perm``. The sub-cohorts come from one finite sample: a sub-cohort of n
shares n / N of its noise variance with the sample's (N per group), so their rate is the power
*given that sample*, which scatters around the power of new cohorts far more than the binomial
error says. Two comparisons are reported:

- binomial: the model's power against the full-pipeline rate (two-proportion z test, and the
  model's rate inside the full-pipeline 95% Clopper-Pearson band); valid only for independent
  cohorts, so too strict here;
- predictive (the agreement test): ``--samples`` samples of the run's size drawn from the model,
  each cut into sub-cohorts exactly as the run was and analysed the same way; the full-pipeline
  rate should lie inside the 95% range of the model's rates (two-sided percentile p > 0.05).

Writes ``benchmarks/results/power_agreement_<NAME>.{tsv,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from group_end_to_end import ROI_OF_EFFECT, planted_weight, recovered_size  # noqa: E402

from qsmvbm.atlas import aal3_on_grid, region_mask  # noqa: E402
from qsmvbm.io import read_tsv  # noqa: E402
from qsmvbm.layout import Layout, truth_dir, truth_table  # noqa: E402
from qsmvbm.qsm.grid import bbox_slices, crop_affine  # noqa: E402
from qsmvbm.stats.design import covariate_matrix, included_rows  # noqa: E402
from qsmvbm.stats.glm import design_matrix  # noqa: E402
from qsmvbm.stats.pipeline import svc_params  # noqa: E402
from qsmvbm.stats.power import (  # noqa: E402
    detected,
    effect_weight,
    model_design,
    pooled_null,
    power_table,
    simulate_study,
)
from qsmvbm.stats.power_cli import load_model, load_pilot, run_config  # noqa: E402
from qsmvbm.stats.voxelwise import voxelwise_svc  # noqa: E402
from qsmvbm.templates import load_template  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "power_agreement"
METHODS = ("rft", "perm", "tfce")


def cohorts(rng, patients: list, controls: list, n: int, partitions: int) -> list:
    """(patients, controls) sub-cohorts: each partition shuffles both groups and cuts them into
    ``min(len(patients), len(controls)) // n`` disjoint cohorts of n + n."""
    out = []
    k = min(len(patients), len(controls)) // n
    for _ in range(partitions):
        p, c = rng.permutation(patients), rng.permutation(controls)
        out += [(list(p[j * n : (j + 1) * n]), list(c[j * n : (j + 1) * n])) for j in range(k)]
    return out


def null_cohorts(rng, controls: list, n: int, partitions: int) -> list:
    """Controls split into two pseudo-groups of n (disjoint), ``len // (2 n)`` per partition."""
    out = []
    k = len(controls) // (2 * n)
    for _ in range(partitions):
        c = rng.permutation(controls)
        out += [
            (list(c[2 * j * n : (2 * j + 1) * n]), list(c[(2 * j + 1) * n : (2 * j + 2) * n]))
            for j in range(k)
        ]
    return out


def full_pipeline(task: dict) -> list[dict]:
    """Detections of the sub-cohorts of one ROI (a worker's task)."""
    data, valid, design = task["data"], task["valid"], task["design"]
    rows = []
    for kind, cohort_list in (("effect", task["cohorts"]), ("null", task["nulls"])):
        for j, (pa, co) in enumerate(cohort_list):
            # rows of the design = positions of the loaded maps (both in the design's order)
            pos = [task["order"][pid] for pid in list(pa) + list(co)]
            sub = design.loc[pos].reset_index(drop=True)
            x = np.r_[np.ones(len(pa)), np.zeros(len(co))]
            X = design_matrix(x, covariate_matrix(sub, task["covariates"], "design"))
            p = replace(
                task["params"], seed=int(task["seed"] + j + (10**6 if kind == "null" else 0))
            )
            res = voxelwise_svc(
                lambda i, pos=pos: (data[pos[i]], valid[pos[i]]),
                X,
                task["sign"],
                task["base"],
                {task["roi"]: task["roi_mask"]},
                task["affine"],
                p,
                fwhm_mm=task["fwhm_mm"],
            )
            centre = task["centre"] if kind == "effect" else None
            row = {"roi": task["roi"], "n_per_group": len(pa), "kind": kind, "cohort": j}
            for m in METHODS:
                row[m] = detected(res.clusters, task["roi"], centre, task["detect_mm"], p, m)
            rows.append(row)
    return rows


def model_table(task: dict) -> pd.DataFrame:
    """The map-level power of one ROI (a worker's task)."""
    return power_table(**task)


def predictive(task: dict) -> pd.DataFrame:
    """The model's distribution of the full-pipeline rate (a worker's task): ``samples`` samples of
    as many patients and controls as the run, drawn from the map-level model, each cut into
    sub-cohorts exactly as the run's subjects were; one row per (sample, n) with the share of its
    sub-cohorts detected by each method."""
    model, params, roi = task["model"], task["params"], task["roi"]
    rng = np.random.default_rng(task["seed"])
    m = task["per_group"]
    weight = effect_weight(model, task["centre"], 9.0, task["profile"]).astype(np.float32)
    k = task["n_covariates"]
    nulls = {n: pooled_null(rng, model, n, params, task["null_studies"], k) for n in task["n"]}
    rows = []
    for s in range(task["samples"]):
        sample = simulate_study(
            rng, model, m, task["survival"] * task["effect"], task["centre"], 9.0, weight
        )
        for n in task["n"]:
            X = model_design(n, k)
            subs = cohorts(rng, list(range(m)), list(range(m, 2 * m)), n, task["partitions"])
            hits = dict.fromkeys(METHODS, 0)
            for pa, co in subs:
                idx = list(pa) + list(co)
                res = voxelwise_svc(
                    lambda i, idx=idx, sample=sample: (sample[idx[i]], model.mask),
                    X,
                    1.0,
                    model.roi,
                    {roi: model.roi},
                    model.affine,
                    params,
                    null=nulls[n],
                    fwhm_mm=model.fwhm_mm,
                )
                for meth in METHODS:
                    hits[meth] += detected(
                        res.clusters, roi, task["centre"], task["detect_mm"], params, meth
                    )
            rows.append(
                {"roi": roi, "n_per_group": n, "sample": s}
                | {meth: hits[meth] / len(subs) for meth in METHODS}
            )
    return pd.DataFrame(rows)


def rate_row(k: int, n: int) -> dict:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact") if n else None
    return {"k": int(k), "n": int(n), "rate": k / n if n else np.nan, "ci": [ci.low, ci.high]}


def compare(full: dict, model: dict) -> dict:
    """Two-proportion z test of the full-pipeline and model rates."""
    k1, n1, k2, n2 = full["k"], full["n"], model["k"], model["n"]
    pbar = (k1 + k2) / (n1 + n2)
    se = np.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n2))
    z = 0.0 if se == 0 else (k1 / n1 - k2 / n2) / se
    return {
        "difference": k1 / n1 - k2 / n2,
        "z": float(z),
        "p_two_sided": float(2 * stats.norm.sf(abs(z))),
        "model_in_full_ci": bool(full["ci"][0] <= k2 / n2 <= full["ci"][1]),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--n-per-group", type=int, nargs="+", default=[6, 10])
    ap.add_argument("--partitions", type=int, default=20)
    ap.add_argument("--n-perm", type=int, default=500)
    ap.add_argument("--model-runs", type=int, default=200)
    ap.add_argument("--detect-mm", type=float, default=6.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--samples",
        type=int,
        default=50,
        help="model samples of the run's size for the predictive distribution of the rate",
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    modality = "qsm"
    wf = run_config(args.run)
    lay = Layout.from_config(wf, args.run)  # the run's own map names (smoothing)
    group = wf["group"]
    params = replace(svc_params({**group, "n_perm": args.n_perm}), tfce=True)
    mcfg = group["modalities"][modality]
    sign = 1.0 if mcfg["direction"] == "greater" else -1.0
    patient, control = wf["participants"]["patient_label"], wf["participants"]["control_label"]
    design = included_rows(read_tsv(lay.group("design"))).reset_index(drop=True)
    patients = list(design.participant_id[design.group == patient])
    controls = list(design.participant_id[design.group == control])
    glm = json.loads(lay.group("glm_json", modality).read_text())
    tpl = load_template(wf["anat"]["template_resolution"])
    labels = aal3_on_grid(tpl.mask.shape, tpl.affine)
    truth = truth_dir(args.run / "sim_bids")
    effects = pd.read_csv(truth_table(args.run / "sim_bids", "effects"), sep="\t")
    effects = effects[effects.chi_delta_ppm != 0]
    ids = list(design.participant_id)
    order = {pid: i for i, pid in enumerate(ids)}
    maps = np.stack(
        [np.asarray(nib.load(lay.group_map(modality, pid)).dataobj, np.float32) for pid in ids]
    )
    valid = np.isfinite(maps)
    for i, pid in enumerate(ids):
        valid[i] &= np.asarray(nib.load(lay.subject("template_qsm_mask", pid)).dataobj) > 0
    print(f"{len(patients)} patients, {len(controls)} controls loaded", flush=True)
    pilot = load_pilot(lay, modality)
    rng = np.random.default_rng(args.seed)
    full_tasks, model_tasks, pred_tasks, info = [], [], [], []
    for _, e in effects.iterrows():
        roi = ROI_OF_EFFECT[e["name"]]
        region = json.loads(e["region"])
        centre = np.asarray(region["sphere_mni"], float)
        roi_full = region_mask(labels, [roi])
        sl = bbox_slices(roi_full, 6)
        aff = crop_affine(tpl.affine, sl)
        w, w_aff = planted_weight(e, truth)
        if not np.allclose(w_aff, tpl.affine, atol=1e-3):
            raise ValueError(f"{e['name']}: planted mask not on the template grid")
        surv = recovered_size(lay, e, truth, modality, controls, mcfg["direction"])[
            "recovered_fraction"
        ]
        model, minfo = load_model(pilot, roi)
        info.append(
            {
                **minfo,
                "effect": e["name"],
                "chi_delta_ppm": float(e.chi_delta_ppm),
                "survival": surv,
                "centre_mm": centre.tolist(),
            }
        )
        for n in args.n_per_group:
            full_tasks.append(
                {
                    "roi": roi,
                    "data": maps[(slice(None), *sl)].copy(),
                    "valid": valid[(slice(None), *sl)].copy(),
                    "design": design,
                    "order": order,
                    "covariates": mcfg["covariates"],
                    "params": params,
                    "seed": args.seed * 7919 + n,
                    "sign": sign,
                    "base": tpl.mask[sl],
                    "roi_mask": roi_full[sl],
                    "affine": aff,
                    "fwhm_mm": np.asarray(glm["fwhm_mm"], float),
                    "centre": centre,
                    "detect_mm": args.detect_mm,
                    "cohorts": cohorts(rng, patients, controls, n, args.partitions),
                    "nulls": null_cohorts(rng, controls, n, args.partitions),
                }
            )
        pred_tasks.append(
            {
                "model": model,
                "params": params,
                "roi": roi,
                "seed": args.seed * 7919 + 17,
                "per_group": min(len(patients), len(controls)),
                "centre": centre,
                "profile": w[sl],
                "null_studies": 10,
                "samples": args.samples,
                "survival": surv,
                "effect": float(e.chi_delta_ppm),
                "n": list(args.n_per_group),
                "partitions": args.partitions,
                "detect_mm": args.detect_mm,
                "n_covariates": len(mcfg["covariates"]),
            }
        )
        model_tasks.append(
            dict(
                model=model,
                roi_name=roi,
                effects=[0.0, float(e.chi_delta_ppm)],
                n_per_group=list(args.n_per_group),
                runs=args.model_runs,
                params=params,
                survival=surv,
                centre_mm=centre,
                detect_mm=args.detect_mm,
                methods=METHODS,
                seed=args.seed,
                profile=w[sl],
                n_covariates=len(mcfg["covariates"]),
            )
        )
    WORK.mkdir(parents=True, exist_ok=True)
    cache = WORK / f"{args.name}_full.tsv"  # the full-pipeline rows, reused by a rerun
    with ProcessPoolExecutor(args.jobs) as pool:
        if cache.exists():
            full = pd.read_csv(cache, sep="\t", keep_default_na=False)  # "null" rows
        else:
            full = pd.DataFrame([r for rows in pool.map(full_pipeline, full_tasks) for r in rows])
            full.to_csv(cache, sep="\t", index=False)
        print(f"full pipeline done at {time.perf_counter() - t0:.0f} s", flush=True)
        model = pd.concat(list(pool.map(model_table, model_tasks)), ignore_index=True)
        print(f"model done at {time.perf_counter() - t0:.0f} s", flush=True)
        pred = pd.concat(list(pool.map(predictive, pred_tasks)), ignore_index=True)
    pred.to_csv(OUT / f"power_agreement_{args.name}_predictive.tsv", sep="\t", index=False)
    rows = []
    for it in info:
        roi = it["roi"]
        for n in args.n_per_group:
            for kind in ("effect", "null"):
                f = full[(full.roi == roi) & (full.n_per_group == n) & (full.kind == kind)]
                eff = it["chi_delta_ppm"] if kind == "effect" else 0.0
                for m in METHODS:
                    mr = model[
                        (model.roi == roi)
                        & (model.n_per_group == n)
                        & (model.method == m)
                        & np.isclose(model.effect, eff)
                    ].iloc[0]
                    fr = rate_row(int(f[m].sum()), len(f))
                    if kind == "effect":
                        r = pred[(pred.roi == roi) & (pred.n_per_group == n)][m].to_numpy()
                        lo_p = float(np.mean(r <= fr["rate"] + 1e-12))
                        hi_p = float(np.mean(r >= fr["rate"] - 1e-12))
                        pi = {
                            "pred_mean": float(r.mean()),
                            "pred_q025": float(np.quantile(r, 0.025)),
                            "pred_q975": float(np.quantile(r, 0.975)),
                            "pred_p_two_sided": min(1.0, 2 * min(lo_p, hi_p)),
                        }
                    else:
                        pi = {}
                    mo = rate_row(int(mr.detections), int(mr.runs))
                    # the spread of the rate over partitions (cohorts of one partition are disjoint)
                    per_part = f.groupby(f.cohort // max(1, len(f) // args.partitions))[m].mean()
                    rows.append(
                        {
                            "roi": roi,
                            "n_per_group": n,
                            "kind": kind,
                            "method": m,
                            "full_k": fr["k"],
                            "full_n": fr["n"],
                            "full_rate": fr["rate"],
                            "full_ci_low": fr["ci"][0],
                            "full_ci_high": fr["ci"][1],
                            "full_partition_sd": float(per_part.std(ddof=1)),
                            "model_k": mo["k"],
                            "model_n": mo["n"],
                            "model_rate": mo["rate"],
                            "model_ci_low": mo["ci"][0],
                            "model_ci_high": mo["ci"][1],
                            **compare(fr, mo),
                            **pi,
                        }
                    )
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(
        OUT / f"power_agreement_{args.name}.tsv", sep="\t", index=False, float_format="%.4g"
    )
    summary = {
        "run": str(args.run),
        "patients": len(patients),
        "controls": len(controls),
        "n_per_group": args.n_per_group,
        "partitions": args.partitions,
        "n_perm": args.n_perm,
        "model_runs": args.model_runs,
        "detect_mm": args.detect_mm,
        "models": info,
        "effect_rows_agreeing_p>0.05": int(
            ((table.kind == "effect") & (table.p_two_sided > 0.05)).sum()
        ),
        "effect_rows": int((table.kind == "effect").sum()),
        "null_rows_agreeing_p>0.05": int(
            ((table.kind == "null") & (table.p_two_sided > 0.05)).sum()
        ),
        "null_rows": int((table.kind == "null").sum()),
        "samples": args.samples,
        "effect_rows_inside_predictive_95": int(
            ((table.kind == "effect") & (table.pred_p_two_sided > 0.05)).sum()
        ),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    (OUT / f"power_agreement_{args.name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table.to_string())
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
