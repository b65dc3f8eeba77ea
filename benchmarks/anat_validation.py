"""Anatomy validation on a simulated cohort processed by the workflow.

For every subject with ground truth (``<results>/sim_bids/derivatives/simulation``):

* Dice of AAL3 regions (thalamus, left and right precentral gyrus) mapped into the subject's
  T1w grid through the *estimated* transforms (ANTs inverse, generic-label interpolation)
  versus through the *true* subject-to-MNI map;
* estimated GM volume and TIV against the truth: Pearson r, mean bias (mL and %);
* planted local GM atrophy recovered in template space: mean modulated GM in each planted
  region, patients versus controls (relative difference, with and without dividing by TIV),
  against the planted mean relative change;
* regional GM volume by each deep grey measure (``anat.deep_grey.method``: ``segmentation``, the
  warped Atropos GM times the Jacobian, and ``jacobian``, the template's GM fraction times the
  Jacobian inside the deep grey nuclei) summed over AAL3 regions in template space, against the
  truth's GM summed over the same regions mapped through the true transform (Pearson r, median
  measured / true), and the planted atrophy each recovers (measured / planted relative difference
  between the groups, TIV-normalised).

Usage: python benchmarks/anat_validation.py [--results results] [--out benchmarks/results/anat_validation.json]
       [--resolution 2] [--per-group N]
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import stats

from qsmvbm import atlas
from qsmvbm.anat.antsio import to_ants
from qsmvbm.anat.normalize import dice
from qsmvbm.io import read_tsv
from qsmvbm.layout import Layout, truth_dir, truth_file, truth_table
from qsmvbm.simulate.subject import load_true_transform
from qsmvbm.transforms import sample, world_coords

REGIONS = {
    "Thalamus": ["Thalamus"],
    "Precentral_L": ["Precentral_L"],
    "Precentral_R": ["Precentral_R"],
    "Caudate": ["Caudate_L", "Caudate_R"],
    "Putamen": ["Putamen_L", "Putamen_R"],
    "Pallidum": ["Pallidum_L", "Pallidum_R"],
}
#: transform files (qsmvbm.layout keys) of each normalization (anat.normalization): affine, inverse warp
XFM = {
    "t1": ("affine", "inverse_warp"),
    "multichannel": ("mc_affine", "mc_inverse_warp"),
}


@lru_cache(maxsize=1)
def _aal3() -> tuple[np.ndarray, np.ndarray]:
    return atlas.load_aal3()


def true_labels(truth: Path, pid: str, grid) -> np.ndarray:
    """AAL3 labels on the subject's T1w grid (``grid``: an image of it) through the TRUE
    subject -> MNI transform."""
    labels, laff = _aal3()
    mni = load_true_transform(truth, pid).to_mni("T1w", world_coords(grid.shape, grid.affine))
    return sample(labels.astype(np.float32), laff, mni, order=0).astype(np.int16)


def region_dice(lay: Layout, pid: str, true_lab: np.ndarray, normalization: str = "t1") -> dict:
    """Dice of each :data:`REGIONS` region: AAL3 through the estimated normalization vs
    ``true_lab`` (:func:`true_labels` on the T1w grid)."""
    import ants

    t1 = nib.load(lay.subject("t1_preproc", pid))
    labels, laff = _aal3()
    est_lab = (
        ants.apply_transforms(
            fixed=to_ants(t1.get_fdata(dtype=np.float32), t1.affine),
            moving=to_ants(labels.astype(np.float32), laff),
            transformlist=[str(lay.subject(key, pid)) for key in XFM[normalization]],
            whichtoinvert=[True, False],
            interpolator="genericLabel",
        )
        .numpy()
        .astype(np.int16)
    )
    return {
        name: dice(atlas.region_mask(est_lab, regs), atlas.region_mask(true_lab, regs))
        for name, regs in REGIONS.items()
    }


#: regions of the regional-GM comparison of the deep grey measures
GM_REGIONS = {
    "Thalamus_L": ["Thalamus_L"],
    "Thalamus_R": ["Thalamus_R"],
    "Precentral_L": ["Precentral_L"],
    "Precentral_R": ["Precentral_R"],
    "Caudate": ["Caudate"],
    "Putamen": ["Putamen"],
}


@lru_cache(maxsize=2)
def _template_side(resolution: int, regions: tuple, feather_mm: float):
    """The template, its AAL3 labels and the deep-grey weight (same for every subject)."""
    from qsmvbm.anat import normalize
    from qsmvbm.templates import load_template

    tpl = load_template(resolution)
    labels = atlas.aal3_on_grid(tpl.gm.shape, tpl.affine)
    vs = np.full(3, float(resolution))
    return tpl, labels, normalize.deep_grey_weight(labels, list(regions), vs, feather_mm)


def regional_gm(
    lay: Layout, truth: Path, pid: str, true_lab: np.ndarray, deep_grey: dict, resolution: int
) -> dict:
    """GM volume (mL) of each :data:`GM_REGIONS` region: ``true_<r>`` (truth's GM in the region
    through the true transform: ``true_lab``, :func:`true_labels` on the T1w grid),
    ``segmentation_<r>`` and ``jacobian_<r>`` (template-space modulated GM, affine+nonlinear, by
    each deep grey measure from the first normalization; ``deep_grey`` gives the regions and the
    edge) and ``run_<r>`` (the run's own modulated GM map, e.g. with the deep-grey refinement)."""
    from qsmvbm.anat import normalize
    from qsmvbm.anat.antsio import load_ants

    tpl, labels, w = _template_side(
        resolution, tuple(deep_grey["regions"]), float(deep_grey["feather_mm"])
    )
    T = to_ants(tpl.t1, tpl.affine)
    fwd = [str(lay.subject("warp", pid)), str(lay.subject("affine", pid))]
    gm = normalize.warp(T, load_ants(lay.subject("gm", pid)), fwd).numpy()
    jac = normalize.jacobian(T, fwd, "affine+nonlinear")
    vs = np.full(3, float(resolution))
    maps = {
        "segmentation": normalize.modulated_gm(gm, jac),
        "jacobian": normalize.modulated_gm(gm, jac, tpl.gm, w),
        # the run's own map, as the group analysis reads it (with the deep-grey refinement if on)
        "run": nib.load(lay.subject("gm_mod", pid)).get_fdata(dtype=np.float32),
    }
    gm_true = nib.load(truth_file(truth, "gm", pid))
    gt = gm_true.get_fdata(dtype=np.float32)
    v_t = float(np.prod(vs)) / 1000
    v_s = float(np.prod(gm_true.header.get_zooms()[:3])) / 1000
    out = {}
    for name, regs in GM_REGIONS.items():
        out[f"true_{name}"] = float(gt[atlas.region_mask(true_lab, regs)].sum() * v_s)
        m = atlas.region_mask(labels, regs)
        for method, mgm in maps.items():
            out[f"{method}_{name}"] = float(mgm[m].sum() * v_t)
    return out


def regional_summary(df: pd.DataFrame, patients: pd.Series, planted: dict) -> dict:
    """Per region and measure: r and median ratio against the truth, and the TIV-normalised
    patient/control relative difference against the true one (``planted``: region -> effect name
    planted there, whose truth columns give the true difference)."""
    out = {}
    for name in GM_REGIONS:
        t = df[f"true_{name}"]
        true_diff = float(
            (t[patients] / df.loc[patients, "TIV_true"]).mean()
            / (t[~patients] / df.loc[~patients, "TIV_true"]).mean()
            - 1
        )
        out[name] = {"true_relative_difference_tiv_normalised": true_diff}
        for method in ("segmentation", "jacobian", "run"):
            m = df[f"{method}_{name}"]
            d = float(
                (m[patients] / df.loc[patients, "TIV_est"]).mean()
                / (m[~patients] / df.loc[~patients, "TIV_est"]).mean()
                - 1
            )
            out[name][method] = {
                "pearson_r": float(stats.pearsonr(m, t)[0]),
                "median_measured_over_true": float((m / t).median()),
                "relative_difference_tiv_normalised": d,
                "recovered_over_true_difference": d / true_diff if name in planted else None,
            }
    return out


def effect_masks(truth: Path, effects: pd.DataFrame) -> dict:
    """Each planted effect's template-space mask from the truth folder: name -> (bool array, affine).
    The same for every subject, so read once per run."""
    out = {}
    for _, e in effects.iterrows():
        m = nib.load(truth / e["mask"])
        out[e["name"]] = (m.get_fdata() > 0, m.affine)
    return out


def true_region_masks(truth: Path, pid: str, masks: dict, grid_img) -> dict:
    """Each planted effect's region (``masks`` from :func:`effect_masks`) on the subject's grid of
    ``grid_img`` (a T1w-space image), through the TRUE subject->MNI map: name -> bool array."""
    mni = load_true_transform(truth, pid).to_mni(
        "T1w", world_coords(grid_img.shape, grid_img.affine)
    )
    return {
        name: sample(m.astype(np.float32), aff, mni, order=0) > 0
        for name, (m, aff) in masks.items()
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default="benchmarks/results/anat_validation.json")
    ap.add_argument(
        "--resolution", type=int, default=2, help="the run's anat.template_resolution (mm)"
    )
    ap.add_argument(
        "--deep-grey-config",
        default=None,
        help="workflow config whose anat.deep_grey to use (default: the schema's defaults)",
    )
    ap.add_argument(
        "--per-group",
        type=int,
        default=0,
        help="only the first N subjects of each group (participants.tsv order); 0 = all",
    )
    ap.add_argument(
        "--normalization",
        choices=sorted(XFM),
        default="t1",
        help="whose transforms to score for Dice (the template-space maps are whatever the run made)",
    )
    args = ap.parse_args(argv)
    res = Path(args.results)
    lay = Layout(res, resolution=args.resolution)
    truth = truth_dir(lay.sim_bids)
    parts = read_tsv(lay.sim_bids / "participants.tsv", keep_default_na=True)
    mult = pd.read_csv(truth_table(truth, "subjects"), sep="\t")
    effects = pd.read_csv(truth_table(truth, "effects"), sep="\t")
    masks = effect_masks(truth, effects)
    from qsmvbm.config import load_yaml, workflow_defaults

    over = load_yaml(args.deep_grey_config) if args.deep_grey_config else {}
    deep_grey = workflow_defaults({"anat": over.get("anat", {})})["anat"]["deep_grey"]
    if args.per_group:
        parts = parts.groupby("group", sort=False).head(args.per_group)
    rows = []
    for pid in parts.participant_id:
        vol_f = lay.subject("volumes", pid)
        if not vol_f.exists():
            continue
        est = json.loads(vol_f.read_text())
        tru = json.loads(truth_file(truth, "truth_json", pid).read_text())
        row = {
            "participant_id": pid,
            "group": parts.set_index("participant_id").loc[pid, "group"],
            "GM_est": est["GM_ml"],
            "GM_true": tru["GM_ml"],
            "TIV_est": est["TIV_ml"],
            "TIV_true": tru["TIV_ml"],
        }
        gm_true = nib.load(truth_file(truth, "gm", pid))  # on the subject's T1w grid
        true_lab = true_labels(truth, pid, gm_true)
        row.update(
            {f"dice_{k}": v for k, v in region_dice(lay, pid, true_lab, args.normalization).items()}
        )
        mgm = nib.load(lay.subject("gm_mod", pid))
        vox_t = float(np.prod(mgm.header.get_zooms()[:3])) / 1000
        vox_s = float(np.prod(gm_true.header.get_zooms()[:3])) / 1000
        in_region = true_region_masks(truth, pid, masks, gm_true)
        for name, (m, aff) in masks.items():
            lab = atlas.resample_labels(m.astype(np.int16), aff, mgm.shape, mgm.affine) > 0
            row[f"gm_{name}"] = float(mgm.get_fdata()[lab].mean())
            row[f"gm_ml_{name}"] = float(mgm.get_fdata()[lab].sum() * vox_t)
            row[f"gm_ml_true_{name}"] = float(gm_true.get_fdata()[in_region[name]].sum() * vox_s)
        row.update(regional_gm(lay, truth, pid, true_lab, deep_grey, args.resolution))
        rows.append(row)
    df = pd.DataFrame(rows).merge(mult.drop(columns="group"), on="participant_id")
    out = {"n_subjects": len(df), "normalization": args.normalization}
    qc_f = lay.group("qc_table")
    if qc_f.exists():
        qc = pd.read_csv(qc_f, sep="\t")
        col = next((c for c in qc.columns if c.startswith("qsm_dgm_corr")), None)
        if col:
            out["qsm_dgm_corr_with_cohort_median"] = {
                "median": float(qc[col].median()),
                "min": float(qc[col].min()),
            }
    for k in ("GM", "TIV"):
        e, t = df[f"{k}_est"], df[f"{k}_true"]
        out[k] = {
            "pearson_r": float(stats.pearsonr(e, t)[0]),
            "mean_bias_ml": float((e - t).mean()),
            "mean_bias_percent": float(((e - t) / t).mean() * 100),
        }
    out["dice_estimated_vs_true"] = {
        k: {"median": float(df[f"dice_{k}"].median()), "min": float(df[f"dice_{k}"].min())}
        for k in REGIONS
    }
    pat = df.group == df.group.iloc[0] if "ALS" not in set(df.group) else df.group == "ALS"
    out["planted_atrophy"] = {}
    for _, e in effects.iterrows():
        if not e["gm_change"]:
            continue
        col = f"gm_{e['name']}"
        a, c = df.loc[pat, col], df.loc[~pat, col]
        a_t, c_t = a / df.loc[pat, "TIV_est"], c / df.loc[~pat, "TIV_est"]
        planted = float((df.loc[pat, f"m_{e['name']}"] * e["gm_change"]).mean())
        out["planted_atrophy"][e["name"]] = {
            "planted_mean_relative_change": planted,
            "measured_relative_difference": float(a.mean() / c.mean() - 1),
            "measured_relative_difference_tiv_normalised": float(a_t.mean() / c_t.mean() - 1),
            "t_test_tiv_normalised": float(stats.ttest_ind(a_t, c_t).statistic),
            "r_with_multiplier_in_patients": float(
                stats.pearsonr(a_t, df.loc[pat, f"m_{e['name']}"])[0]
            ),
            "true_region_gm_relative_difference": float(
                df.loc[pat, f"gm_ml_true_{e['name']}"].mean()
                / df.loc[~pat, f"gm_ml_true_{e['name']}"].mean()
                - 1
            ),
            "measured_vs_true_region_gm_ml_r": float(
                stats.pearsonr(df[f"gm_ml_{e['name']}"], df[f"gm_ml_true_{e['name']}"])[0]
            ),
            "measured_over_true_region_gm_ml_median": float(
                (df[f"gm_ml_{e['name']}"] / df[f"gm_ml_true_{e['name']}"]).median()
            ),
        }
    planted_regions = {
        name: e["name"]
        for _, e in effects.iterrows()
        if e["gm_change"]
        for name, regs in GM_REGIONS.items()
        if set(regs) & set(json.loads(e["region"]).get("atlas_labels", []))
    }
    out["deep_grey"] = {"config": deep_grey, "regions": regional_summary(df, pat, planted_regions)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    df.to_csv(Path(args.out).with_suffix(".tsv"), sep="\t", index=False, float_format="%.4g")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
