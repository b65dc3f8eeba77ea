"""Map-level power against independent full-pipeline cohorts (issue 23's sharp agreement check).

Usage::

    python benchmarks/power_cohorts.py run WORK [--cohorts 10] [--first 0] [--per-group 10] [--cores 2]
        [--simulation config/simulation/study_2mm.yaml] [--deadline 2026-12-06T22:00]
    python benchmarks/power_cohorts.py compare WORK --name NAME [--model-runs 1000] [--jobs 2]

``run``: cohort k (``--first``, then one up each) is the simulation file's cohort with ``--per-group`` patients and
controls and the seed ``seed + 1000 (k + 1)``: new subjects, new noise, the same planted effects.
Each is a whole workflow run from raw data to the cluster table (``snakemake --until
cluster_table``), with the whole AAL3 region as the search volume (``group.svc_volume: roi``, the
power model's search) and TFCE on, so RFT, max-T and TFCE are all decided on the same cohort. When
a cohort is done its outcome is written to ``WORK/cohort-<k>/result.json``:

- per search (modality x ROI): was the planted effect detected by each method (a significant
  cluster, with the extent rule, peaking within ``--detect-mm`` of the planted centre), or, where
  nothing was planted, is any cluster significant (a false positive);
- the share of each planted effect that the maps carry (the least-squares amplitude of the group
  difference on the planted profile, ``group_end_to_end.recovered_size``) and, for GM, the planted
  change in map units (relative change x the controls' mean modulated GM, weighted by the profile);

and the group maps the model needs (residual SD, analysis mask, GLM record), the group
difference and t maps and the cluster table are kept in ``WORK/cohort-<k>/keep`` (in the ten cohorts
of docs/validation.md, cohorts 0-2 kept no difference and t maps, 0-5 no subject maps). Everything else of the cohort (its raw data and derivatives, about 5 GB)
is deleted. Cohorts with a ``result.json`` are skipped, so the command resumes where it stopped;
it starts no cohort that would not end before ``--deadline`` (by the median time of the cohorts
done, or 40 min for the first). A file ``WORK/STOP`` stops it after the running cohort. A cohort
whose run was killed (the machine stopped) is resumed: snakemake is unlocked and reruns the
incomplete jobs only, so its ``wall_s`` is then the resumed part.

``compare``: the map-level model (:func:`qsmvbm.stats.power.power_table`) calibrated from the
cohorts themselves (residual variance pooled over them, weighted by their degrees of freedom; the
mean smoothness; the mean surviving share of each effect; the planted gaussian profile), at the
cohorts' group size with ``--model-runs`` simulated studies, against the detection rate of the K
cohorts per (modality, ROI, method). The cohorts are independent, so the check is binomial: the
exact two-sided binomial test of k of K at the model's rate. Ten cohorts pin a rate down only to
about +-30%, so the whole distribution is compared too: each cohort's best FWE p of a search
(:func:`qsmvbm.stats.power.best_p`: the smallest p of a cluster near the planted centre, 1 when
none; detection is p < alpha) against the model's studies' best p, as a randomised probability
integral transform (PIT). PIT values are uniform when the model is right; below 0.5 on average, the
full pipeline finds the effect more strongly than the model predicts. Kolmogorov-Smirnov tests
per row and per method over the planted searches. Writes
``benchmarks/results/power_cohorts_<NAME>{.tsv,.json,_pit.tsv}``. Each search's model is cached
in ``WORK/compare-<NAME>/`` (a rerun with the same cohorts and settings reads it); ``--jobs 2``
models two searches at once. The model's noise (``--noise``): ``residuals`` (default, as
``qsmvbm-power``), the pooled GLM residuals of the cohorts that kept their subject maps (cohort 6
on), or ``gaussian``, stationary noise of the pooled FWHM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from group_end_to_end import (  # noqa: E402
    ROI_OF_EFFECT,
    controls_mean_gm,
    planted_weight,
    recovered_size,
)

from qsmvbm.atlas import aal3_on_grid  # noqa: E402
from qsmvbm.config import workflow_defaults  # noqa: E402
from qsmvbm.dipole import voxel_sizes  # noqa: E402
from qsmvbm.io import read_tsv  # noqa: E402
from qsmvbm.layout import Layout, truth_dir, truth_table  # noqa: E402
from qsmvbm.stats.design import included_rows  # noqa: E402
from qsmvbm.stats.pipeline import by_subject, svc_params  # noqa: E402
from qsmvbm.stats.power import (  # noqa: E402
    METHODS,
    best_p,
    detected,
    effect_weight,
    power_table,
    residual_basis,
    spread_effect,
)
from qsmvbm.stats.power_cli import (  # noqa: E402
    SubjectMaps,
    load_model,
    read_subject_maps,
    roi_crop,
    run_config,
)

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results"
KEEP = ("resid_sd", "svc_mask", "glm_json")  # the group outputs the model is calibrated from
KEEP_MAPS = ("effect", "tstat")  # and the group difference and t maps, to see where they differ
MODALITIES = ("qsm", "gm")


def cohort_dir(work: Path, k: int) -> Path:
    return work / f"cohort-{k:02d}"


def kept(cdir: Path, key: str, mod: str = "{modality}") -> Path:
    """A group output of a cohort's run, as kept in ``<cohort>/keep`` after the run is deleted."""
    return cdir / "keep" / Layout(cdir).group(key, mod).name


def write_configs(work: Path, k: int, args) -> Path:
    """The cohort's simulation file and workflow config file; returns the latter."""
    cdir = cohort_dir(work, k)
    cdir.mkdir(parents=True, exist_ok=True)
    sim = yaml.safe_load(Path(args.simulation).read_text())
    sim["seed"] = int(sim.get("seed", 0)) + 1000 * (k + 1)
    for g in sim["groups"]:
        g["n"] = args.per_group
    (cdir / "simulation.yaml").write_text(yaml.safe_dump(sim, sort_keys=False))
    cfg = {
        "simulation": str(cdir / "simulation.yaml"),
        "bids_dir": None,
        "output_dir": str(cdir / "out"),
        "group": {"svc_volume": "roi", "tfce": {"enabled": True}},
    }
    (cdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cdir / "config.yaml"


def outcome(run: Path, detect_mm: float) -> dict:
    """A finished cohort run's detections, surviving shares and model inputs (see the module doc)."""
    wf = run_config(run)
    lay = Layout.from_config(wf, run)
    group = wf["group"]
    params = replace(svc_params(group), tfce=True)
    design = pd.read_csv(lay.group("design"), sep="\t", keep_default_na=False)
    inc = design[design.included.astype(str) == "True"]
    control = wf["participants"]["control_label"]
    controls = list(inc.participant_id[inc.group == control])
    truth = truth_dir(run / "sim_bids")
    effects = pd.read_csv(truth_table(truth, "effects"), sep="\t")
    res = {"included": inc.group.value_counts().to_dict(), "glm": {}, "searches": []}
    for mod in MODALITIES:
        glm = json.loads(lay.group("glm_json", mod).read_text())
        res["glm"][mod] = {k: glm[k] for k in ("n", "df", "fwhm_mm")}
        clusters = pd.read_csv(lay.group("cluster_table", mod), sep="\t").to_dict("records")
        direction = group["modalities"][mod]["direction"]
        for roi in glm["roi_voxels"]:
            row = {"modality": mod, "roi": roi, "planted": False}
            col = "chi_delta_ppm" if mod == "qsm" else "gm_change"
            planted = effects[[ROI_OF_EFFECT.get(n) == roi for n in effects["name"]]]
            planted = planted[planted[col] != 0]
            centre = None
            if len(planted):
                e = planted.iloc[0]
                centre = json.loads(e["region"])["sphere_mni"]
                rec = recovered_size(lay, e, truth, mod, controls, direction)
                w, _ = planted_weight(e, truth)
                if mod == "qsm":
                    size = float(e.chi_delta_ppm)
                else:  # the planted relative change in modulated-GM units, profile-weighted
                    # (the controls' mean map that recovered_size has just read, cached)
                    g = controls_mean_gm(lay, tuple(controls))
                    size = float(e.gm_change * (w**2 * g).sum() / (w**2).sum())
                row |= {
                    "planted": True,
                    "effect": e["name"],
                    "centre_mm": centre,
                    "effect_map_units": size,
                    # the power model plants its effects in the tested direction
                    "effect_tested": size * (1.0 if direction == "greater" else -1.0),
                    "survival": rec["recovered_fraction"],
                }
            for m in METHODS:
                row[m] = bool(detected(clusters, roi, centre, detect_mm, params, m))
            res["searches"].append(row)
    return res


def keep_outputs(run: Path, cdir: Path) -> None:
    """Copy the model's inputs and the planted masks out of the run, then delete the run."""
    lay = Layout.from_config(run_config(run), run)
    keep = cdir / "keep"
    keep.mkdir(exist_ok=True)
    for mod in MODALITIES:
        for key in KEEP + KEEP_MAPS:
            shutil.copy2(lay.group(key, mod), kept(cdir, key, mod))
    for key in ("clusters", "design", "qc_table"):
        shutil.copy2(lay.group(key), kept(cdir, key))
    # the subjects' GLM inputs, so the residuals' spatial covariance in each ROI can be studied
    # (20 maps a modality, about 47 MB a cohort; cohorts 0-5 kept none)
    design = included_rows(read_tsv(lay.group("design")))
    for mod in MODALITIES:
        (keep / "maps" / mod).mkdir(parents=True, exist_ok=True)
        for pid in design.participant_id:
            src = lay.group_map(mod, pid)
            shutil.copy2(src, keep / "maps" / mod / src.name)
    truth, kept_truth = truth_dir(run / "sim_bids"), truth_dir(keep)
    table = truth_table(truth, "effects")
    kept_truth.mkdir(parents=True, exist_ok=True)
    shutil.copy2(table, kept_truth / table.name)
    for mask in pd.read_csv(table, sep="\t")["mask"]:
        dest = kept_truth / mask
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(truth / mask, dest)
    shutil.rmtree(run)


def run_cohorts(args) -> None:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    deadline = dt.datetime.fromisoformat(args.deadline) if args.deadline else None
    if deadline is not None and deadline.tzinfo is None:
        deadline = deadline.astimezone()  # a naive time is local time
    for k in range(args.first, args.first + args.cohorts):
        cdir = cohort_dir(work, k)
        if (cdir / "result.json").exists():
            continue
        if (work / "STOP").exists():
            print("STOP file found: stopping", flush=True)
            return
        done = [
            json.loads(p.read_text())["wall_s"] for p in sorted(work.glob("cohort-*/result.json"))
        ]
        need = float(np.median(done)) if done else 2400.0
        if deadline and dt.datetime.now().astimezone() + dt.timedelta(seconds=need) > deadline:
            print(f"cohort {k} would not end before {deadline}: stopping", flush=True)
            return
        cfg = write_configs(work, k, args)
        t0 = time.perf_counter()
        print(f"cohort {k}: started {dt.datetime.now():%H:%M}", flush=True)
        resumed = (cdir / "out").exists()  # a cohort cut off by a kill: its finished jobs stay
        with open(cdir / "snakemake.log", "a" if resumed else "w") as log:
            cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores)]
            cmd += ["--until", "cluster_table", "--rerun-incomplete"]
            cmd += ["--configfile", "config/config.yaml", str(cfg)]
            if resumed:  # a killed snakemake leaves its lock on the cohort's outputs
                subprocess.run(cmd + ["--unlock"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc:
            raise SystemExit(
                f"cohort {k}: snakemake failed (rc {rc}), see {cdir / 'snakemake.log'}"
            )
        run = cdir / "out"
        res = {"cohort": k, "wall_s": round(time.perf_counter() - t0, 1)}
        res |= outcome(run, args.detect_mm)
        keep_outputs(run, cdir)
        (cdir / "result.json").write_text(json.dumps(res, indent=1))
        print(f"cohort {k}: done in {res['wall_s']:.0f} s", flush=True)


def pooled_pilot(cdirs: list[Path], mod: str) -> dict:
    """The cohorts' group maps of ``mod`` as one pilot (the dict of
    :func:`qsmvbm.stats.power_cli.load_pilot`, read once per modality): residual variance pooled
    with the cohorts' degrees of freedom over the voxels every cohort analysed, the mean FWHM, the
    summed n and df."""
    var, mask, n, df, fwhm = 0.0, True, 0, 0, []
    for c in cdirs:
        glm = json.loads(kept(c, "glm_json", mod).read_text())
        img = nib.load(kept(c, "resid_sd", mod))
        var = var + glm["df"] * np.asarray(img.dataobj, float) ** 2
        mask = mask & (np.asarray(nib.load(kept(c, "svc_mask", mod)).dataobj) > 0)
        n, df = n + glm["n"], df + glm["df"]
        fwhm.append(glm["fwhm_mm"])
    sd = np.sqrt(var / df)
    return {
        "sd": sd,
        "mask": mask,
        "glm": {"fwhm_mm": np.mean(fwhm, axis=0).tolist(), "n": n, "df": df},
        "affine": img.affine,
        "labels": aal3_on_grid(sd.shape, img.affine),
    }


def pit(observed: float, model: np.ndarray, rng) -> float:
    """The randomised probability integral transform of ``observed`` under the model's sample:
    P(S < s) + V P(S = s), V uniform; uniform on (0, 1) when s is drawn from the model's
    distribution, ties (p = 1: nothing found) included."""
    model = np.asarray(model, float)
    below, tied = np.mean(model < observed), np.mean(model == observed)
    return float(below + rng.uniform() * tied)


def cohort_p(cdir: Path, search: dict, params, detect_mm: float, method: str) -> float:
    """A cohort's best FWE p of a search (:func:`qsmvbm.stats.power.best_p`), from its clusters."""
    clusters = pd.read_csv(kept(cdir, "clusters"), sep="\t", keep_default_na=False)
    clusters = clusters[clusters.modality == search["modality"]]
    for col in ("p_fwe_rft", "p_fwe_perm", "p_fwe_tfce"):
        clusters[col] = pd.to_numeric(clusters[col], errors="coerce")
    centre = search.get("centre_mm") if search["planted"] else None
    return best_p(clusters.to_dict("records"), search["roi"], centre, detect_mm, params, method)


def cohort_maps(cdirs: list[Path], mod: str, wf: dict, crop) -> list[SubjectMaps]:
    """The subject maps of ``mod`` on ``crop`` of the cohorts that kept them, with each cohort's
    GLM design and controls (:func:`qsmvbm.stats.power_cli.read_subject_maps`, as
    ``qsmvbm-power`` reads a run's)."""
    studies = []
    for c in cdirs:
        folder = c / "keep" / "maps" / mod
        if not folder.is_dir():
            continue
        by_pid = by_subject(folder.iterdir())
        design = kept(c, "design")
        studies.append(
            read_subject_maps(
                read_tsv(design), by_pid.__getitem__, wf, mod, {"crop": crop}, str(design)
            )["crop"]
        )
    if not studies:
        raise SystemExit(
            "no cohort kept its subject maps: use --noise gaussian --gm-effect absolute"
        )
    return studies


def pooled_basis(studies: list[SubjectMaps]) -> np.ndarray:
    """The residual basis (:func:`qsmvbm.stats.power.residual_basis`) of the cohorts'
    :func:`cohort_maps`, pooled: each cohort's residuals from its own design."""
    return residual_basis([(c.maps, c.X) for c in studies])


def pooled_reference(studies: list[SubjectMaps]) -> np.ndarray:
    """The controls' mean map over the cohorts' :func:`cohort_maps` (the reference of a relative
    effect, as ``qsmvbm-power``'s ``scale: relative``)."""
    return np.concatenate([c.maps[c.controls] for c in studies]).mean(axis=0, dtype=float)


def earlier_results(names: list[str]) -> tuple[pd.DataFrame, dict, dict]:
    """Earlier comparisons' cohorts whose folders are gone (``--earlier NAME``): their best p per
    search, method and cohort (``power_cohorts_NAME_pit.tsv``); per search (modality, ROI) the
    mean surviving share and tested effect of their cohorts with the number of cohorts behind them;
    and per search ("modality ROI") the (cohorts, bins) of their :func:`effect_shape`
    (``power_cohorts_NAME.json``)."""
    tables, means, shapes = [], {}, {}
    for name in names:
        table = pd.read_csv(OUT / f"power_cohorts_{name}_pit.tsv", sep="\t")
        summary = json.loads((OUT / f"power_cohorts_{name}.json").read_text())
        tables.append(table[["modality", "roi", "method", "cohort", "p"]])
        for m in summary["models"]:
            if m.get("survival") is not None:
                key = (m["modality"], m["roi"])
                means.setdefault(key, []).append((summary["cohorts"], m["survival"], m["effect"]))
        for key, v in summary["effect_shape"].items():
            if v:
                shapes.setdefault(key, []).append((v["cohorts_with_maps"], v["bins"]))
    if not tables:
        return pd.DataFrame(columns=["modality", "roi", "method", "cohort", "p"]), {}, {}
    return pd.concat(tables, ignore_index=True).drop_duplicates(), means, shapes


def pooled_mean(values: pd.Series, earlier: list) -> float:
    """The mean of the cohorts' ``values`` with the earlier cohorts' means ((count, mean) pairs),
    weighted by their numbers of cohorts."""
    total = float(values.sum()) + sum(k * v for k, v in earlier)
    return total / (len(values) + sum(k for k, _ in earlier))


def model_search(args, cdirs: list[Path], mod: str, roi: str) -> dict:
    """The map-level model of one search at the cohorts' design (run in a worker process): its
    detection rates (with and, where nothing is planted, without the extent rule), and every
    simulated study's best p per method. Cached in ``WORK/compare-<name>/``: a rerun with the same
    cohorts and settings reads it."""
    key = {
        "cohorts": [c.name for c in cdirs],
        "model_runs": args.model_runs,
        "n_perm": args.n_perm,
        "seed": args.seed,
        "detect_mm": args.detect_mm,
        "noise": args.noise,
        "gm_effect": args.gm_effect,
        "earlier": args.earlier,
        "spread": args.spread,
    }
    cache = args.work.resolve() / f"compare-{args.name}" / f"{mod}_{roi}.json"
    if cache.exists() and json.loads(cache.read_text())["key"] == key:
        return json.loads(cache.read_text())
    t0 = time.perf_counter()
    results = [json.loads((c / "result.json").read_text()) for c in cdirs]
    s = pd.DataFrame(
        [x for r in results for x in r["searches"] if (x["modality"], x["roi"]) == (mod, roi)]
    )
    wf = workflow_defaults(yaml.safe_load((cdirs[0] / "config.yaml").read_text()))
    sim = yaml.safe_load((cdirs[0] / "simulation.yaml").read_text())
    n = int(sim["groups"][0]["n"])
    group = wf["group"]
    params = model_params(group, args)
    pilot = pooled_pilot(cdirs, mod)
    sl = roi_crop(pilot, roi)  # the model's crop
    planted = bool(s.planted.iloc[0])
    relative = planted and mod == "gm" and args.gm_effect == "relative"
    studies = cohort_maps(cdirs, mod, wf, sl) if args.noise == "residuals" or relative else None
    basis = pooled_basis(studies) if args.noise == "residuals" else None
    model, info = load_model(pilot, roi, basis)
    kw, effect = {}, 0.0
    if planted:
        truth = truth_dir(cdirs[0] / "keep")
        effects = pd.read_csv(truth_table(truth, "effects"), sep="\t")
        e = effects[effects["name"] == s.effect.iloc[0]].iloc[0]
        w, _ = planted_weight(e, truth)  # on the template grid, as the pilot's maps
        before = args.earlier_means.get((mod, roi), [])  # read once by compare()
        effect = pooled_mean(s.effect_tested, [(k, v) for k, _, v in before])
        kw = {
            "survival": pooled_mean(s.survival, [(k, v) for k, v, _ in before]),
            "centre_mm": np.asarray(s.centre_mm.iloc[0], float),
            "profile": w[sl],
        }
        if relative:  # the planted relative change on the controls' mean map, voxel by voxel
            sign = 1.0 if group["modalities"][mod]["direction"] == "greater" else -1.0
            effect = sign * float(e.gm_change)
            kw["scale"] = pooled_reference(studies)
            info["scale"] = "relative"
            info["reference_median_in_roi"] = float(np.median(kw["scale"][model.roi]))
        spread = float(args.spread.get(f"{mod} {roi}", 0.0))
        if spread > 0:
            # the cohorts' surviving share is the least-squares amplitude of their maps on the
            # planted shape; the model's effect keeps that amplitude on it when spread
            shape = effect_weight(model, None, 0.0, w[sl], kw.get("scale"), spread)
            ref = np.abs(kw["scale"]) if "scale" in kw else 1.0
            sel = (w[sl] > 0) & model.mask
            planted_shape = (ref * w[sl])[sel]
            kw["survival"] *= float(
                (w[sl][sel] * planted_shape).sum() / (w[sl][sel] * shape[sel]).sum()
            )
            kw["spread_mm"] = spread
            info["spread_mm"] = spread
    common = dict(
        runs=args.model_runs,
        detect_mm=args.detect_mm,
        seed=args.seed,
        n_covariates=len(group["modalities"][mod]["covariates"]),
        **kw,
    )
    record: list = []
    table = power_table(model, roi, [effect], [n], params=params, record=record, **common)
    # where nothing is planted: the model's FWE also without the extent rule, which makes
    # any test more conservative than alpha (the calibration range is for the test itself)
    bare = None
    if not planted:
        no_extent = replace(params, min_cluster_mm3=0.0)
        bare = power_table(model, roi, [0.0], [n], params=no_extent, **common)
    out = {
        "key": key,
        "modality": mod,
        "roi": roi,
        "planted": planted,
        "effect": effect,
        "survival": kw.get("survival"),
        "n_per_group": n,
        "model": info | {"modality": mod, "effect": effect, "survival": kw.get("survival")},
        "rate": {m: float(table[table.method == m].power.iloc[0]) for m in METHODS},
        "rate_no_extent_rule": (
            None
            if bare is None
            else {m: float(bare[bare.method == m].power.iloc[0]) for m in METHODS}
        ),
        "study_p": {m: [r[f"p_{m}"] for r in record] for m in METHODS},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out["model"] = {
        k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out["model"].items()
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


WEIGHT_BINS = ((0.8, 1.0), (0.5, 0.8), (0.2, 0.5), (0.0, 0.2))


def effect_shape(
    cdirs: list[Path],
    mod: str,
    effect_name: str,
    reference: np.ndarray | None = None,
    spread_mm: float = 0.0,
) -> dict | None:
    """Does the group difference have the model's shape? The cohorts' mean difference map (those
    that kept it) in bins of the planted weight w, each bin's mean difference over its mean shape
    s, relative to the least-squares amplitude on s over the whole profile (the survival the model
    uses everywhere): 1 in every bin when the maps carry the shape; above 1 in the top bin, a peak
    sharper than the model's (which then underrates the peak t). s is w (``bins``) and the model's
    :func:`spread_shape` of w (``bins_model``: spread by ``spread_mm``, times the ``reference`` map
    of a relative effect, the controls' mean GM)."""
    maps = [c for c in cdirs if kept(c, "effect", mod).exists()]
    if not maps:
        return None
    truth = truth_dir(maps[0] / "keep")
    effects = pd.read_csv(truth_table(truth, "effects"), sep="\t")
    w, _ = planted_weight(effects[effects["name"] == effect_name].iloc[0], truth)
    d = np.mean([np.asarray(nib.load(kept(c, "effect", mod)).dataobj, float) for c in maps], axis=0)
    mask = np.all(
        [np.asarray(nib.load(kept(c, "svc_mask", mod)).dataobj) > 0 for c in maps], axis=0
    )
    sel = (w > 0) & mask
    affine = nib.load(kept(maps[0], "effect", mod)).affine
    model = spread_shape(w, affine, spread_mm, reference)
    out = {"cohorts_with_maps": len(maps)}
    out["ls_amplitude"], out["bins"] = bin_ratios(d, w, w, sel)
    out["ls_amplitude_model"], out["bins_model"] = bin_ratios(d, model, w, sel)
    # what the model's shape itself gives in bins of w: the cohorts' "bins" when it is right
    out["bins_predicted"] = bin_ratios(model, w, w, sel)[1]
    return out


def bin_ratios(d: np.ndarray, shape: np.ndarray, w: np.ndarray, sel: np.ndarray) -> tuple:
    """The least-squares amplitude of ``d`` on ``shape`` over ``sel``, and per bin of the planted
    weight ``w`` (:data:`WEIGHT_BINS`) the bin's mean of ``d`` over its mean of ``shape``, relative
    to that amplitude."""
    amp = float((shape[sel] * d[sel]).sum() / (shape[sel] ** 2).sum())
    bins = []
    for lo, hi in WEIGHT_BINS:
        b = sel & (w > lo) & (w <= hi)
        if b.any():
            ratio = float(d[b].mean() / shape[b].mean() / amp) if amp else float("nan")
            bins.append({"w": [lo, hi], "voxels": int(b.sum()), "relative_survival": ratio})
    return amp, bins


SPREAD_GRID_MM = tuple(range(0, 32, 2))


def spread_shape(w: np.ndarray, affine: np.ndarray, spread_mm: float, reference=None) -> np.ndarray:
    """The model's shape of a planted effect on the template grid: the planted weight ``w``
    spread by ``spread_mm`` (:func:`qsmvbm.stats.power.spread_effect`, as the model spreads it),
    times ``|reference|`` when given."""
    out = spread_effect(w, voxel_sizes(affine), spread_mm)
    return out if reference is None else out * np.abs(reference)


def fit_spread(
    cdirs: list[Path], mod: str, roi: str, effect_name: str, reference=None, earlier=()
) -> dict:
    """The pipeline's point spread of a planted effect (FWHM, mm, on :data:`SPREAD_GRID_MM`): the
    one whose :func:`spread_shape` (times the ``reference`` map of a relative effect) reproduces the
    shape of the cohorts' mean difference map, as :func:`effect_shape`'s relative survival in bins
    of the planted weight (the shape only: the amplitude is the survival's, never a detection).
    The bins of the cohorts that kept their difference maps are pooled with ``earlier`` ((cohorts,
    bins) of earlier cohorts whose maps are gone), weighted by their numbers of cohorts; weighted
    least squares over the bins with weights voxels x (bin centre of w)^2, as a bin's ratio has a
    noise of about 1 / w."""
    shape = effect_shape(cdirs, mod, effect_name)
    sets = [(shape["cohorts_with_maps"], shape["bins"])] if shape else []
    sets += [(k, bins) for k, bins in earlier]
    if not sets:
        return {"spread_mm": 0.0, "cohorts": 0}
    count = sum(k for k, _ in sets)
    measured = np.sum([k * np.array([b["relative_survival"] for b in bins]) for k, bins in sets], 0)
    measured = measured / count
    first = sets[0][1]
    weight = np.array([b["voxels"] * np.mean(b["w"]) ** 2 for b in first])
    maps = [c for c in cdirs if kept(c, "svc_mask", mod).exists()]
    img = nib.load(kept(maps[0], "svc_mask", mod))
    mask = np.asarray(img.dataobj) > 0
    truth = truth_dir(maps[0] / "keep")
    effects = pd.read_csv(truth_table(truth, "effects"), sep="\t")
    w, _ = planted_weight(effects[effects["name"] == effect_name].iloc[0], truth)
    sel = (w > 0) & mask
    sse, predicted = {}, {}
    for s in SPREAD_GRID_MM:
        _, bins = bin_ratios(spread_shape(w, img.affine, s, reference), w, w, sel)
        predicted[s] = np.array([b["relative_survival"] for b in bins])
        sse[s] = float((weight * (predicted[s] - measured) ** 2).sum())
    best = min(sse, key=sse.get)
    return {
        "spread_mm": float(best),
        "cohorts": count,
        "bins_measured": measured.round(3).tolist(),
        "bins_predicted": predicted[best].round(3).tolist(),
        "bins_predicted_unspread": predicted[0].round(3).tolist(),
        "weighted_sse": {str(k): round(v, 4) for k, v in sse.items()},
    }


def model_params(group: dict, args):
    params = replace(svc_params(group), tfce=True)
    if args.n_perm:  # fewer permutations than the cohorts had: a quick look, not the comparison
        params = replace(params, n_perm=args.n_perm)
    return params


def compare(args) -> None:
    work = args.work.resolve()
    cdirs = sorted(p.parent for p in work.glob("cohort-*/result.json"))
    if not cdirs:
        raise SystemExit(f"{work}: no finished cohort")
    results = [json.loads((c / "result.json").read_text()) for c in cdirs]
    wf = yaml.safe_load((cdirs[0] / "config.yaml").read_text())
    params = model_params(workflow_defaults(wf)["group"], args)
    searches = [(x["modality"], x["roi"]) for x in results[0]["searches"]]
    everywhere = (slice(None),) * 3
    references = (
        {"gm": pooled_reference(cohort_maps(cdirs, "gm", workflow_defaults(wf), everywhere))}
        if args.gm_effect == "relative"
        else {}
    )
    # the pipeline's point spread of each planted effect, fitted to the cohorts' mean difference
    # maps' shape (and the earlier cohorts' bins), or given per modality
    fits, given = {}, dict(x.split("=") for x in args.spread_mm)
    earlier, args.earlier_means, shapes = earlier_results(args.earlier)
    args.spread = {}
    for x in results[0]["searches"]:
        key = f"{x['modality']} {x['roi']}"
        if not x["planted"]:
            continue
        if x["modality"] in given:
            args.spread[key] = float(given[x["modality"]])
        elif args.spread_fit == "fit":
            fits[key] = fit_spread(
                cdirs,
                x["modality"],
                x["roi"],
                x["effect"],
                references.get(x["modality"]),
                shapes.get(key, ()),
            )
            args.spread[key] = fits[key]["spread_mm"]
            print(f"{key}: spread {fits[key]['spread_mm']:g} mm {fits[key]}", flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(model_search, args, cdirs, *sr): sr for sr in searches}
        models = {}
        for f in as_completed(futures):
            models[futures[f]] = f.result()
            print(
                f"{' '.join(futures[f])}: model done at {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    clash = set(earlier.cohort) & {c.name for c in cdirs}
    if clash:
        raise SystemExit(f"--earlier has cohorts that are also in {work}: {sorted(clash)}")
    rng = np.random.default_rng(args.seed)
    rows, pits = [], []
    for mod, roi in searches:
        out = models[(mod, roi)]
        per_cohort = [
            next(x for x in r["searches"] if (x["modality"], x["roi"]) == (mod, roi))
            for r in results
        ]
        for m in METHODS:
            observed = [
                cohort_p(c, x, params, args.detect_mm, m) for c, x in zip(cdirs, per_cohort)
            ]
            for c, p, x in zip(cdirs, observed, per_cohort):
                if (p < params.alpha) != bool(x[m]):  # the same rule as the run's detection
                    raise SystemExit(f"{c.name} {mod} {roi} {m}: best p {p} but detected {x[m]}")
            names = [c.name for c in cdirs]
            # and the earlier cohorts' best p (detected exactly when p < alpha, best_p)
            before = earlier[
                (earlier.modality == mod) & (earlier.roi == roi) & (earlier.method == m)
            ]
            observed += [float(p) for p in before.p]
            names += list(before.cohort)
            k, K = sum(p < params.alpha for p in observed), len(observed)
            p0 = out["rate"][m]
            lo, hi = stats.binom.ppf([0.025, 0.975], K, p0)
            # the cohorts' best p against the model's distribution of it: a check of the whole
            # distribution, of which the detection rate is one point
            u = [pit(p, out["study_p"][m], rng) for p in observed]
            pits += [
                {"modality": mod, "roi": roi, "method": m, "cohort": c, "p": p, "pit": v}
                for c, p, v in zip(names, observed, u)
            ]
            rows.append(
                {
                    "modality": mod,
                    "roi": roi,
                    "planted": out["planted"],
                    "effect": out["effect"],
                    "survival": np.nan if out["survival"] is None else out["survival"],
                    "method": m,
                    "cohorts": K,
                    "detected": k,
                    "full_rate": k / K,
                    "model_rate": p0,
                    "model_runs": args.model_runs,
                    "binomial_95_low": int(lo),
                    "binomial_95_high": int(hi),
                    "binomial_p": float(stats.binomtest(k, K, min(max(p0, 1e-9), 1 - 1e-9)).pvalue),
                    "model_rate_no_extent_rule": (
                        np.nan
                        if out["rate_no_extent_rule"] is None
                        else out["rate_no_extent_rule"][m]
                    ),
                    "cohort_median_p": float(np.median(observed)),
                    "model_median_p": float(np.median(out["study_p"][m])),
                    "pit_ks_p": float(stats.kstest([v for v in u], "uniform").pvalue),
                }
            )
    table = pd.DataFrame(rows)
    pit_table = pd.DataFrame(pits)
    planted_pits = pit_table[
        pit_table.set_index(["modality", "roi"]).index.isin(
            [(r["modality"], r["roi"]) for r in rows if r["planted"]]
        )
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / f"power_cohorts_{args.name}.tsv", sep="\t", index=False, float_format="%.4g")
    pit_table.to_csv(
        OUT / f"power_cohorts_{args.name}_pit.tsv", sep="\t", index=False, float_format="%.4g"
    )
    summary = {
        "work": str(work),
        "cohorts": int(pit_table.cohort.nunique()),
        "cohorts_here": len(cdirs),
        "earlier": args.earlier,
        "gm_effect": args.gm_effect,
        "spread_mm": args.spread,
        "spread_fit": fits,
        "per_group": models[searches[0]]["n_per_group"],
        "included": [r["included"] for r in results],
        "cohort_wall_s_median": float(np.median([r["wall_s"] for r in results])),
        "n_perm": params.n_perm,
        "detect_mm": args.detect_mm,
        "model_seconds": {" ".join(k): v["seconds"] for k, v in models.items()},
        "models": [v["model"] for v in models.values()],
        "rows_agreeing_p>0.05": int((table.binomial_p > 0.05).sum()),
        "rows": len(table),
        "effect_shape": {
            f"{mod} {roi}": effect_shape(
                cdirs, mod, x["effect"], references.get(mod), args.spread.get(f"{mod} {roi}", 0.0)
            )
            for mod, roi in searches
            for x in results[0]["searches"]
            if (x["modality"], x["roi"]) == (mod, roi) and x["planted"]
        },
        # every planted search's cohorts pooled, per method: are their best p drawn from the
        # model's distribution (KS test of the PIT values against the uniform)?
        "pit_ks_p_planted": {
            m: float(stats.kstest(planted_pits[planted_pits.method == m].pit, "uniform").pvalue)
            for m in METHODS
        },
        "pit_mean_planted": {
            m: float(planted_pits[planted_pits.method == m].pit.mean()) for m in METHODS
        },
    }
    (OUT / f"power_cohorts_{args.name}.json").write_text(json.dumps(summary, indent=1))
    print(table.to_string(index=False))
    print(json.dumps({k: summary[k] for k in ("pit_ks_p_planted", "pit_mean_planted")}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("work", type=Path)
    r.add_argument("--cohorts", type=int, default=10)
    r.add_argument("--first", type=int, default=0, help="the first cohort's number k (its seed)")
    r.add_argument("--per-group", type=int, default=10)
    r.add_argument("--cores", type=int, default=2)
    r.add_argument("--simulation", default="config/simulation/study_2mm.yaml")
    r.add_argument("--deadline", help="ISO time after which no cohort may end")
    r.add_argument("--detect-mm", type=float, default=6.0)
    c = sub.add_parser("compare")
    c.add_argument("work", type=Path)
    c.add_argument("--name", required=True)
    c.add_argument("--model-runs", type=int, default=1000)
    c.add_argument("--detect-mm", type=float, default=6.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--n-perm", type=int, help="the model's permutations (default: the cohorts')")
    c.add_argument("--jobs", type=int, default=1, help="searches modelled at once (processes)")
    c.add_argument(
        "--noise",
        choices=["residuals", "gaussian"],
        default="residuals",
        help="the model's noise: the cohorts' own residuals (those that kept their maps) or stationary",
    )
    c.add_argument(
        "--gm-effect",
        choices=["relative", "absolute"],
        default="relative",
        help="the GM model's effect: the planted relative change of the controls' mean map voxel by "
        "voxel (scale: relative) or its profile-weighted mean in map units everywhere",
    )
    c.add_argument(
        "--spread",
        dest="spread_fit",
        choices=["fit", "none"],
        default="fit",
        help="the pipeline's point spread of each planted effect in the model: fitted to the shape "
        "of the cohorts' mean difference maps (fit_spread) or none",
    )
    c.add_argument(
        "--spread-mm",
        action="append",
        default=[],
        metavar="MOD=MM",
        help="a modality's spread given (FWHM mm), e.g. gm=12; repeatable",
    )
    c.add_argument(
        "--earlier",
        action="append",
        default=[],
        metavar="NAME",
        help="also compare against the cohorts of benchmarks/results/power_cohorts_NAME (their "
        "best p and surviving shares; their folders may be gone); repeatable",
    )
    args = ap.parse_args(argv)
    if args.cmd == "run":
        args.simulation = str((REPO / args.simulation).resolve())
        run_cohorts(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
