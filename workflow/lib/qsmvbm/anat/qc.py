"""Cohort-level normalization QC: thresholds, a QSM-specific deep-grey agreement, overrides.

The reference study excluded 8 of 76 subjects by eye for bad QSM normalization. Here every
subject gets numbers and a verdict with its reason:

* ``dice_brain``: Dice of the warped brain mask with the template's (T1 registration);
* ``t1_corr``: correlation of the warped T1w with the template T1w in the template mask (intensity:
  it depends on the sequence; a well registered real 3 T MPRAGE gave 0.43, simulated heads 0.92-0.93);
* ``gm_corr``: correlation of the warped GM probability with the template's GM fraction in the
  template mask (tissue: contrast-independent; 0.79 on that real T1w, 0.91 on simulated heads);
* ``qsm_dgm_corr``: correlation of the warped QSM with the cohort's voxelwise median QSM
  inside the deep grey nuclei (caudate, putamen, pallidum, thalamus, SN, red nucleus of AAL3),
  where QSM contrast is high and misregistration of the GRE shows first;
* ``qsm_dgm_robust_z``: how many MADs that correlation lies below the cohort's median.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import atlas
from .normalize import masked_correlation

DGM_REGIONS = ("Caudate", "Putamen", "Pallidum", "Thalamus", "SN_L", "SN_R", "Red_N")


def deep_grey_roi(labels: np.ndarray) -> np.ndarray:
    """AAL3 deep grey nuclei (``labels``: AAL3 on a template grid), dilated by one voxel (bool)."""
    return ndimage.binary_dilation(atlas.region_mask(labels, list(DGM_REGIONS)))


def normalization_problems(values, thresholds: dict) -> list[str]:
    """Brain Dice, T1w and GM correlation with the template against their minimums (the ``qc``
    config). ``values``: a mapping (a QC table row or a normalization QC JSON). An absent value is
    not checked; a NaN fails."""
    why = []
    v = values.get("dice_brain")
    if v is not None and not v >= thresholds["dice_min"]:
        why.append(f"brain Dice {v:.3f} < {thresholds['dice_min']}")
    v = values.get("t1_corr")
    if v is not None and not v >= thresholds["t1_corr_min"]:
        why.append(f"T1w correlation {v:.3f} < {thresholds['t1_corr_min']}")
    v = values.get("gm_corr")
    if v is not None and not v >= thresholds.get("gm_corr_min", -1):
        why.append(f"GM correlation {v:.3f} < {thresholds['gm_corr_min']}")
    return why


def subject_problems(
    norm_qc: dict, plausibility: dict | None, volumes: dict | None, thresholds: dict
) -> list[str]:
    """The checks one subject can be held to on its own (before the cohort exists): brain Dice,
    T1w and GM correlation with the template, and :func:`plausibility_problems` of its masks and
    volumes. ``norm_qc``: its normalization QC JSON; ``plausibility``: the QSM sidecar's
    ``MaskPlausibility``; ``volumes``: its volumes JSON; ``thresholds``: the ``qc`` config."""
    why = normalization_problems(norm_qc, thresholds)
    row = mask_qc_columns(plausibility) if plausibility else {}
    if volumes:
        row |= {"tiv_ml": volumes["TIV_ml"], "gm_tiv": volumes["GM_ml"] / volumes["TIV_ml"]}
    return why + plausibility_problems(row, thresholds)


def roi_coverage(mask: np.ndarray, labels: np.ndarray, rois) -> dict[str, float]:
    """Share of each AAL3 region (names; ``labels`` on the mask's grid) inside ``mask`` (bool)."""
    out = {}
    for name in rois:
        region = atlas.region_mask(labels, [name])
        out[name] = float((mask & region).sum() / max(int(region.sum()), 1))
    return out


def coverage_problems(coverage: pd.DataFrame, min_ratio: float) -> dict[str, list[str]]:
    """Subjects whose QSM mask covers a group ROI much less than the cohort does.

    ``coverage``: one row per subject (index participant_id), one column per ROI (share of the ROI
    in the subject's template-space QSM mask). A subject fails an ROI when its share is below
    ``min_ratio`` times the cohort's median share of it: its GRE slab or mask leaves out what the
    others cover, and the group analysis, which keeps only the voxels every subject covers, would
    lose it for everyone. Returns ``{participant_id: [reason, ...]}`` for the failing subjects.
    """
    med = coverage.median(axis=0)
    out: dict[str, list[str]] = {}
    for pid, row in coverage.iterrows():
        why = [
            f"QSM mask covers {100 * v:.0f}% of {roi} (cohort median {100 * med[roi]:.0f}%): the GRE "
            "leaves it out"
            for roi, v in row.items()
            if med[roi] > 0 and v < min_ratio * med[roi]
        ]
        if why:
            out[str(pid)] = why
    return out


def robust_z_below(values: np.ndarray, spread_min: float = 0.0) -> np.ndarray:
    """How many MADs (scaled by 1.4826, an SD for normal data) each value lies below the median of
    ``values`` (NaNs ignored); the scaled MAD is taken as at least ``spread_min``."""
    values = np.asarray(values, dtype=float)
    med = np.nanmedian(values)
    mad = max(1.4826 * np.nanmedian(np.abs(values - med)), spread_min) or 1e-6
    return (med - values) / mad


def mask_qc_columns(plausibility: dict) -> dict:
    """The QC table's columns from :func:`qsmvbm.qsm.mask.mask_plausibility` (or a QSM sidecar's
    ``MaskPlausibility``): ``qsm_mask_dice_t1``, ``qsm_mask_outside_t1``, ``qsm_mask_tiv_ratio``."""
    return {
        "qsm_mask_dice_t1": plausibility["dice_t1"],
        "qsm_mask_outside_t1": plausibility["outside_t1_fraction"],
        "qsm_mask_tiv_ratio": plausibility["mask_tiv_ratio"],
    }


def plausibility_problems(row, thresholds: dict) -> list[str]:
    """Reasons a subject's masks and volumes are implausible (empty if none or not measured).

    ``row`` may carry the columns of :func:`mask_qc_columns` (the QSM brain mask against the T1w brain
    mask in GRE space), ``tiv_ml``
    and ``gm_tiv``; ``thresholds`` the ``qc`` config keys ``qsm_mask_dice_min``, ``qsm_mask_outside_max``,
    ``qsm_mask_tiv_max``, ``tiv_ml_range`` and ``gm_tiv_range``. Missing values or keys are skipped.
    """

    def val(key):
        v = row.get(key) if hasattr(row, "get") else getattr(row, key, None)
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    why = []
    t = thresholds
    v = val("qsm_mask_dice_t1")
    if v is not None and "qsm_mask_dice_min" in t and v < t["qsm_mask_dice_min"]:
        why.append(f"QSM mask Dice with the T1w brain {v:.3f} < {t['qsm_mask_dice_min']}")
    v = val("qsm_mask_outside_t1")
    if v is not None and "qsm_mask_outside_max" in t and v > t["qsm_mask_outside_max"]:
        why.append(
            f"{100 * v:.0f}% of the QSM mask outside the T1w brain (> {100 * t['qsm_mask_outside_max']:.0f}%)"
        )
    v = val("qsm_mask_tiv_ratio")
    if v is not None and "qsm_mask_tiv_max" in t and v > t["qsm_mask_tiv_max"]:
        why.append(f"QSM mask volume {v:.2f} x TIV (> {t['qsm_mask_tiv_max']})")
    v = val("tiv_ml")
    if (
        v is not None
        and "tiv_ml_range" in t
        and not t["tiv_ml_range"][0] <= v <= t["tiv_ml_range"][1]
    ):
        why.append(
            f"TIV {v:.0f} mL outside the adult range {t['tiv_ml_range'][0]:g}-{t['tiv_ml_range'][1]:g} mL"
        )
    v = val("gm_tiv")
    if (
        v is not None
        and "gm_tiv_range" in t
        and not t["gm_tiv_range"][0] <= v <= t["gm_tiv_range"][1]
    ):
        why.append(f"GM/TIV {v:.2f} outside {t['gm_tiv_range'][0]:g}-{t['gm_tiv_range'][1]:g}")
    return why


def cohort_qc(
    metrics: pd.DataFrame,
    chi_maps: list[np.ndarray],
    roi: np.ndarray,
    thresholds: dict,
    extra_problems: dict | None = None,
) -> pd.DataFrame:
    """Add QSM agreement columns and the verdict to per-subject ``metrics``.

    Parameters
    ----------
    metrics : one row per subject with ``participant_id``, ``dice_brain``, ``t1_corr``.
    chi_maps : template-space QSM (ppm) of the same subjects, in the same order.
    roi : bool template-grid mask of the deep grey nuclei.
    thresholds : ``dice_min``, ``t1_corr_min``, ``gm_corr_min`` (when ``metrics`` has ``gm_corr``), ``qsm_dgm_corr_min``, ``qsm_dgm_robust_z_max`` (applied
        from ``robust_z_min_subjects`` subjects on), the
        plausibility limits of :func:`plausibility_problems`, ``include`` and ``exclude`` (participant ids).
    extra_problems : more reasons by participant id (e.g. :func:`coverage_problems`).

    Returns ``metrics`` with ``qsm_dgm_corr``, ``qsm_dgm_robust_z``, ``passed_qc``,
    ``included`` (after the overrides) and ``reason``.
    """
    out = metrics.copy().reset_index(drop=True)
    stack = np.stack([c[roi] for c in chi_maps])
    median = np.median(stack, axis=0)
    corr = np.array([masked_correlation(s, median, np.ones_like(s, bool)) for s in stack])
    out["qsm_dgm_corr"] = corr
    out["qsm_dgm_robust_z"] = robust_z_below(corr, thresholds.get("qsm_dgm_spread_min", 0.0))
    # a median absolute deviation from a handful of subjects is no yardstick (with 4 subjects one
    # subject 0.06 below the others sat 4.4 MADs out): the outlier rule needs a cohort
    use_z = len(out) >= thresholds.get("robust_z_min_subjects", 0)
    reasons = []
    for _, r in out.iterrows():
        values = r.to_dict()
        if not np.isfinite(values.get("gm_corr", 0.0)):
            del values["gm_corr"]  # not measured (subjects of a run before the metric): not checked
        why = normalization_problems(values, thresholds)
        if not r.qsm_dgm_corr >= thresholds["qsm_dgm_corr_min"]:
            why.append(
                f"deep-grey QSM correlation {r.qsm_dgm_corr:.3f} < {thresholds['qsm_dgm_corr_min']}"
            )
        if use_z and r.qsm_dgm_robust_z > thresholds["qsm_dgm_robust_z_max"]:
            why.append(
                f"deep-grey QSM correlation {r.qsm_dgm_robust_z:.1f} MADs below the cohort median"
            )
        why += plausibility_problems(r, thresholds)
        why += (extra_problems or {}).get(r.participant_id, [])
        reasons.append(why)
    out["passed_qc"] = [not w for w in reasons]
    inc, exc = set(thresholds.get("include", [])), set(thresholds.get("exclude", []))
    included, reason = [], []
    for pid, why in zip(out["participant_id"], reasons):
        if pid in exc:
            included.append(False)
            reason.append("excluded by config" + (f" (QC: {'; '.join(why)})" if why else ""))
        elif pid in inc:
            included.append(True)
            reason.append("included by config" + (f" despite QC: {'; '.join(why)}" if why else ""))
        else:
            included.append(not why)
            reason.append("; ".join(why) if why else "passed")
    out["included"] = included
    out["reason"] = reason
    return out
