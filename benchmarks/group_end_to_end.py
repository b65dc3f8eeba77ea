"""End-to-end check of the group analysis against the simulator's planted truth.

``evaluate RUN``: for a finished run on a simulated cohort (``<RUN>/sim_bids`` + ``<RUN>/group``), compare the
significant clusters with the planted effects (peak within 6 mm of the planted sphere centre, in the planted
ROI; none where nothing was planted) and the correlations with the planted clinical links (is the planted r
inside the 95% CI of the measured one?). Writes ``benchmarks/results/group_end_to_end_<name>.json``. On a
simulated cohort without planted effects every significant cluster is a false positive::

    snakemake --cores 2 --config simulation=config/simulation/study_null_2mm.yaml output_dir=RUN
    python benchmarks/group_end_to_end.py evaluate RUN --name studynull2mm

``null RUN NEW``: a cohort with no planted effect from a finished run: its controls only, split at random
into two pseudo-groups, as a new BIDS folder whose subject folders (and derivatives) are symbolic links to
the run's, so only the group stage is computed. Then run e.g.::

    snakemake --cores 2 --rerun-triggers mtime --config bids_dir=NEW/bids output_dir=NEW/out
    python benchmarks/group_end_to_end.py evaluate NEW/out --truth RUN/sim_bids

``nulls RUN BASE --seeds K``: K such null cohorts (seeds 0..K-1), each run through the group stage with the
study's sphere search volume and with the whole ROI (``group.svc_volume``), and the false-positive rates per
search (modality x ROI) and per cohort (any search) by RFT and by permutation, each with the 100 mm3 extent
rule. The relabellings reuse the same controls, so the rates are permutation estimates for this one sample,
not for new cohorts. Writes ``benchmarks/results/group_null_relabellings.{json,tsv}``; with ``--family
modality|analysis`` (``group.fwe_family``) ``group_null_relabellings_family-<family>.{json,tsv}``;
``--anat "{template_resolution: 1}"`` for a run with other ``anat`` settings (a 1 mm run), ``--name``
a suffix of those files.

``subset RUN NEW --per-group N``: the first N subjects of each group (participants.tsv order) whose
QSM and T1 processing is done, as a new run folder: raw data and the simulation truth linked, the per-subject
derivatives *copied* (modification times kept), so a run in ``NEW`` with other options (e.g.
``anat.normalization: multichannel``) rewrites only its own files. Used to compare normalizations on the same
subjects (``benchmarks/anat_validation.py --results NEW``)::

    snakemake --cores 2 --rerun-triggers mtime --until normalization_qc \
        --config bids_dir=NEW/sim_bids output_dir=NEW "anat={normalization: multichannel}"
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from qsmvbm.config import workflow_defaults
from qsmvbm.layout import Layout, truth_dir, truth_table
from qsmvbm.simulate.cohort_io import EFFECT_COLUMNS
from qsmvbm.stats.power_cli import run_config
from qsmvbm.stats.tables import fisher_ci

OUT = Path(__file__).resolve().parent / "results"
ROI_OF_EFFECT = {
    "precentralL": "Precentral_L",
    "thalamusR": "Thalamus_R",
    "thalamusL": "Thalamus_L",
}


def _strongest(clusters: pd.DataFrame) -> dict:
    """The highest-t cluster of a clusters.tsv subset: peak (MNI mm), t, FWE p's, volume, as plain numbers."""
    best = clusters.sort_values("peak_t", ascending=False).iloc[0]
    keys = [
        "peak_x",
        "peak_y",
        "peak_z",
        "peak_t",
        "p_fwe_rft",
        "p_fwe_perm",
        "volume_mm3",
        "significant",
    ]
    keys += [k for k in ("p_fwe_tfce",) if k in clusters]  # when the run computed TFCE
    return json.loads(best[keys].to_json())


def planted_weight(effect: pd.Series, truth: Path) -> tuple[np.ndarray, np.ndarray]:
    """The planted effect's spatial weight on its template-space mask's grid (0..1: the gaussian
    profile of the simulator around the sphere centre, or 1 for a uniform effect) and that affine."""
    import nibabel as nib

    from qsmvbm.transforms import world_coords

    img = nib.load(truth / effect["mask"])
    mask = img.get_fdata() > 0
    region = json.loads(effect["region"])
    if region.get("profile", "uniform") != "gaussian":
        return mask.astype(float), img.affine
    c = np.asarray(
        region.get("sphere_mni", [effect.centroid_x, effect.centroid_y, effect.centroid_z]), float
    )
    xyz = world_coords(mask.shape, img.affine)
    d2 = sum((xyz[i] - c[i]) ** 2 for i in range(3))
    fwhm = float(region["profile_fwhm_mm"])
    return np.exp(-4 * np.log(2) * d2 / fwhm**2) * mask, img.affine


@lru_cache(maxsize=1)
def mean_map(paths: tuple[Path, ...]) -> np.ndarray:
    """The mean of these maps (read once for all planted effects)."""
    import nibabel as nib

    return np.mean([nib.load(p).get_fdata() for p in paths], axis=0)


def controls_mean_gm(lay: Layout, controls) -> np.ndarray:
    """The controls' mean template-space modulated GM."""
    return mean_map(tuple(lay.group_map("gm", pid) for pid in controls))


def recovered_size(
    lay: Layout, effect: pd.Series, truth: Path, mod: str, controls, direction: str
) -> dict:
    """How much of a planted effect the group analysis measured: the least-squares amplitude of the
    group difference D (patients - controls) on the planted profile ``w``, as a fraction of the
    planted one: ``sum(w D) / (delta sum(w^2))`` with ``delta`` the planted chi change (ppm) or, for
    GM, the relative change times the controls' mean modulated GM (voxelwise). The workflow's
    ``<modality>_effect`` map is the effect in the tested ``direction`` (the modality's
    ``group.modalities.<m>.direction``: controls - patients for GM's default ``less``); D undoes
    that. Before 2026-12-06 it did not, and the GM fractions in earlier results files have the
    wrong sign."""
    import nibabel as nib

    w, _ = planted_weight(effect, truth)
    d = nib.load(lay.group("effect", mod)).get_fdata() * (1.0 if direction == "greater" else -1.0)
    analysed = nib.load(lay.group("svc_mask", mod)).get_fdata() > 0
    sel = (w > 0) & analysed
    if mod == "qsm":
        planted = float(effect.chi_delta_ppm) * w
    else:
        planted = float(effect.gm_change) * controls_mean_gm(lay, tuple(controls)) * w
    amp = float((w[sel] * d[sel]).sum() / (w[sel] * planted[sel]).sum())
    return {
        "recovered_fraction": round(amp, 3),
        "measured_mean_in_region": float(d[sel].mean()),
        "planted_mean_in_region": float(planted[sel].mean()),
        "region_voxels_analysed": int(sel.sum()),
    }


def evaluate(run: Path, truth_bids: Path | None = None, name: str | None = None) -> dict:
    truth_bids = truth_bids or run / "sim_bids"
    # the run's own config: its template grid (res-1 or res-2) names the template-space maps
    cfg = run_config(run)
    lay = Layout.from_config(cfg, run)
    effects = pd.read_csv(truth_table(truth_bids, "effects"), sep="\t")
    clusters = pd.read_csv(lay.group("clusters"), sep="\t")
    corr = pd.read_csv(lay.group("correlations"), sep="\t")
    sig = clusters[clusters.significant.astype(str) == "True"]
    res = {
        "run": str(run),
        "clusters": sig.to_dict("records"),
        "effects": [],
        "false_positive_rois": [],
    }
    planted_rois = set()
    design = pd.read_csv(lay.group("design"), sep="\t")
    control = workflow_defaults()["participants"]["control_label"]
    controls = design[(design.included.astype(str) == "True") & (design.group == control)]
    controls = list(controls.participant_id)
    for _, e in effects.iterrows():
        roi = ROI_OF_EFFECT.get(e["name"])
        region = json.loads(e["region"])
        centre = np.array(
            region.get("sphere_mni", [e.centroid_x, e.centroid_y, e.centroid_z]), float
        )
        row = {
            "effect": e["name"],
            "roi": roi,
            "chi_delta_ppm": e.chi_delta_ppm,
            "gm_change": e.gm_change,
        }
        for mod in ("qsm", "gm"):
            if (mod == "qsm" and e.chi_delta_ppm == 0) or (mod == "gm" and e.gm_change == 0):
                continue
            planted_rois.add((mod, roi))
            c = sig[(sig.modality == mod) & (sig.roi == roi)]
            if len(c):
                best = _strongest(c)
                peak = [best.pop(k) for k in ("peak_x", "peak_y", "peak_z")]
                d = float(np.linalg.norm(np.array(peak, float) - centre))
                row[mod] = {
                    "found": True,
                    "peak": peak,
                    "distance_mm": round(d, 1),
                    "within_6mm": d <= 6.0,
                    **{
                        k: best[k]
                        for k in ("peak_t", "p_fwe_rft", "p_fwe_perm", "p_fwe_tfce", "volume_mm3")
                        if k in best
                    },
                }
            else:
                row[mod] = {"found": False}
            row[mod].update(
                recovered_size(
                    lay,
                    e,
                    truth_dir(truth_bids),
                    mod,
                    controls,
                    cfg["group"]["modalities"][mod]["direction"],
                )
            )
        score = e.get("clinical_score")
        if isinstance(score, str) and score != "n/a":
            target = float(e.target_r)
            rows = corr[
                (corr.y == score)
                & corr.x.str.startswith("qsm_")
                & corr.x.str.contains(roi)
                & (corr.covariates.fillna("") == "")
            ]
            row["clinical"] = []
            for _, r in rows.iterrows():
                lo, hi = fisher_ci(r.r, int(r.n))
                row["clinical"].append(
                    {
                        "x": r.x,
                        "score": score,
                        "planted_r": target,
                        "r": r.r,
                        "p": r.p,
                        "ci95": [lo, hi],
                        "planted_in_ci": lo <= target <= hi,
                    }
                )
        res["effects"].append(row)
    for _, c in sig.iterrows():
        if (c.modality, c.roi) not in planted_rois:
            res["false_positive_rois"].append(f"{c.modality}:{c.roi}")
    # every search (modality x ROI of the run's GLM) with its strongest cluster, significant or not
    res["searches"] = []
    for mod in ("qsm", "gm"):
        glm = json.loads(lay.group("glm_json", mod).read_text())
        for roi in glm["roi_voxels"]:
            c = clusters[(clusters.modality == mod) & (clusters.roi == roi)]
            row = {"modality": mod, "roi": roi, "n_clusters": len(c)}
            if len(c):
                row.update(_strongest(c))
            res["searches"].append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"group_end_to_end_{name or run.parent.name}.json").write_text(
        json.dumps(res, indent=2, default=str)
    )
    print(json.dumps(res, indent=2, default=str))
    return res


def make_null(run: Path, new: Path, seed: int = 0, outs: tuple[str, ...] = ("out",)) -> None:
    """Controls of ``run`` relabelled at random into two halves, linked (not copied) into ``new``; the
    derivatives are linked into each ``new/<out>``."""
    parts = pd.read_csv(
        run / "sim_bids" / "participants.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    nc = parts[parts.group == "NC"].copy()
    rng = np.random.default_rng(seed)
    labels = np.array(["ALS"] * (len(nc) // 2) + ["NC"] * (len(nc) - len(nc) // 2))
    rng.shuffle(labels)
    nc["group"] = labels
    bids = new / "bids"
    bids.mkdir(parents=True, exist_ok=True)
    for f in ("dataset_description.json", "README"):
        if (run / "sim_bids" / f).exists() and not (bids / f).exists():
            (bids / f).symlink_to((run / "sim_bids" / f).resolve())
    for pid in nc.participant_id:
        links = [(run / "sim_bids" / pid, bids / pid)]
        for o in outs:
            out = new / o / "derivatives" / "qsmvbm"
            out.mkdir(parents=True, exist_ok=True)
            links.append((run / "derivatives" / "qsmvbm" / pid, out / pid))
        for src, dst in links:
            if not dst.exists():
                dst.symlink_to(src.resolve())
    nc.to_csv(bids / "participants.tsv", sep="\t", index=False)
    # the null cohort's truth: no effect
    truth = truth_dir(bids)
    truth.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns=EFFECT_COLUMNS).to_csv(
        truth_table(truth, "effects"), sep="\t", index=False
    )
    print(
        f"null cohort: {len(nc)} controls relabelled {dict(zip(*np.unique(labels, return_counts=True)))} "
        f"-> {new}"
    )


def null_relabellings(
    run: Path,
    base: Path,
    seeds: int,
    cores: int = 2,
    family: str = "roi",
    volumes: tuple[str, ...] = ("sphere", "roi"),
    anat: str | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Group stage on ``seeds`` random relabellings of the controls, with each SVC search volume and the FWE
    family ``family`` (the other group settings: the workflow defaults); one row per (seed, svc_volume,
    modality, roi): the smallest FWE p of the clusters of at least ``group.min_cluster_mm3``.
    ``anat``: the run's ``anat`` settings as a YAML mapping (e.g. ``{template_resolution: 1}``), so that
    the group stage finds the run's template-space maps; ``name``: a suffix of the results files."""
    repo = Path(__file__).resolve().parents[1]
    group = workflow_defaults()["group"]
    alpha, min_mm3 = group["fwe_alpha"], group["min_cluster_mm3"]
    tag = {v: v if family == "roi" else f"{v}-{family}" for v in volumes}
    rows = []
    extra = []
    if anat:  # a config file: --config gives nested values as strings
        base.mkdir(parents=True, exist_ok=True)
        (base / "anat.yaml").write_text(f"anat: {anat}\n")
        extra = ["--configfile", "config/config.yaml", str(base / "anat.yaml")]
    for seed in range(seeds):
        new = base / f"seed-{seed}"
        make_null(run, new, seed, outs=tuple(tag.values()))
        for vol in volumes:
            out = new / tag[vol]
            if not Layout(out).group("clusters").exists():
                with open(new / f"{tag[vol]}.log", "w") as log:
                    subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "snakemake",
                            "--cores",
                            str(cores),
                            "--rerun-triggers",
                            "mtime",
                            *extra,
                            "--until",
                            "cluster_table",
                            "--config",
                            f"bids_dir={new / 'bids'}",
                            f"output_dir={out}",
                            f"group={{svc_volume: {vol}, fwe_family: {family}}}",
                        ],
                        cwd=repo,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        check=True,
                    )
            cl = pd.read_csv(Layout(out).group("clusters"), sep="\t")
            for mod in group["modalities"]:
                for roi in group["rois"]:
                    c = cl[(cl.modality == mod) & (cl.roi == roi) & (cl.volume_mm3 >= min_mm3)]
                    rows.append(
                        {
                            "seed": seed,
                            "svc_volume": vol,
                            "modality": mod,
                            "roi": roi,
                            "min_p_fwe_rft": c.p_fwe_rft.min() if len(c) else 1.0,
                            "min_p_fwe_perm": c.p_fwe_perm.min() if len(c) else 1.0,
                        }
                    )
        print(f"seed {seed} done", flush=True)
    df = pd.DataFrame(rows)
    df["fp_rft"] = df.min_p_fwe_rft < alpha
    df["fp_perm"] = df.min_p_fwe_perm < alpha
    per_search = (
        df.groupby(["svc_volume", "modality", "roi"])[["fp_rft", "fp_perm"]].mean().reset_index()
    )
    per_cohort = (
        df.groupby(["svc_volume", "seed"])[["fp_rft", "fp_perm"]].any().groupby("svc_volume").mean()
    )
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "group_null_relabellings" + ("" if family == "roi" else f"_family-{family}")
    stem += f"_{name}" if name else ""
    df.to_csv(OUT / f"{stem}.tsv", sep="\t", index=False)
    summary = {
        "run": str(run),
        "n_cohorts": seeds,
        "alpha": alpha,
        "min_cluster_mm3": min_mm3,
        "fwe_family": family,
        "anat": anat,
        "note": "controls relabelled at random into two halves (QC exclusions applied by the workflow)",
        "per_search_rate": per_search.to_dict("records"),
        "any_search_rate": per_cohort.reset_index().to_dict("records"),
    }
    (OUT / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return df


def make_subset(run: Path, new: Path, per_group: int) -> None:
    """First ``per_group`` finished subjects of each group of ``run``: raw linked, derivatives copied."""
    parts = pd.read_csv(
        run / "sim_bids" / "participants.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    lay = Layout.from_config(run_config(run), run)
    deriv = lay.derivatives

    def finished(pid: str) -> bool:
        """QSM and T1 processing done (the anat_t1 benchmark is written when the job has ended)."""
        return (
            lay.benchmark("anat_t1", pid).exists()
            and lay.subject("volumes", pid).exists()
            and lay.subject("chi", pid).exists()
        )

    chosen = {
        grp: g[g.participant_id.map(finished)].head(per_group)
        for grp, g in parts.groupby("group", sort=False)
    }
    short = {grp: len(g) for grp, g in chosen.items() if len(g) < per_group}
    if short:
        raise SystemExit(f"{run}: fewer than {per_group} finished subjects in {short}")
    keep = pd.concat(chosen.values())
    bids, out = new / "sim_bids", new / "derivatives" / "qsmvbm"
    (bids / "derivatives").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for f in ("dataset_description.json", "README", "participants.json", "derivatives/simulation"):
        if (run / "sim_bids" / f).exists() and not (bids / f).exists():
            (bids / f).symlink_to((run / "sim_bids" / f).resolve())
    for pid in keep.participant_id:
        if not (bids / pid).exists():
            (bids / pid).symlink_to((run / "sim_bids" / pid).resolve())
        if not (out / pid).exists():
            shutil.copytree(deriv / pid, out / pid, copy_function=shutil.copy2)
    keep.to_csv(bids / "participants.tsv", sep="\t", index=False)
    print(
        f"subset: { {k: int(v) for k, v in keep.group.value_counts().items()} } of {run} -> {new}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="what", required=True)
    e = sub.add_parser("evaluate")
    e.add_argument("run", type=Path)
    e.add_argument(
        "--truth", type=Path, default=None, help="the simulated BIDS (default RUN/sim_bids)"
    )
    e.add_argument("--name", default=None)
    n = sub.add_parser("null")
    n.add_argument("run", type=Path)
    n.add_argument("new", type=Path)
    n.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("nulls")
    m.add_argument("run", type=Path)
    m.add_argument("base", type=Path)
    m.add_argument("--seeds", type=int, default=20)
    m.add_argument("--cores", type=int, default=2)
    m.add_argument(
        "--family", default="roi", choices=["roi", "modality", "analysis"], help="group.fwe_family"
    )
    m.add_argument(
        "--volumes", nargs="+", default=["sphere", "roi"], help="group.svc_volume values"
    )
    m.add_argument("--anat", default=None, help="the run's anat settings, a YAML mapping")
    m.add_argument("--name", default=None, help="suffix of the results files")
    s = sub.add_parser("subset")
    s.add_argument("run", type=Path)
    s.add_argument("new", type=Path)
    s.add_argument("--per-group", type=int, default=12)
    a = ap.parse_args()
    if a.what == "evaluate":
        evaluate(a.run, a.truth, a.name)
    elif a.what == "null":
        make_null(a.run, a.new, a.seed)
    elif a.what == "nulls":
        null_relabellings(
            a.run,
            a.base,
            a.seeds,
            a.cores,
            family=a.family,
            volumes=tuple(a.volumes),
            anat=a.anat,
            name=a.name,
        )
    else:
        make_subset(a.run, a.new, a.per_group)


if __name__ == "__main__":
    main()
