"""Cohort-level normalization QC: thresholds, a QSM-specific deep-grey agreement, overrides.

The reference study excluded 8 of 76 subjects by eye for bad QSM normalization. Here every
subject gets numbers and a verdict with its reason:

* ``dice_brain``: Dice of the warped brain mask with the template's (T1 registration);
* ``t1_corr``: correlation of the warped T1w with the template T1w in the template mask;
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


def deep_grey_roi(shape, affine) -> np.ndarray:
    """AAL3 deep grey nuclei on a template grid, dilated by one voxel (bool)."""
    labels = atlas.aal3_on_grid(shape, affine)
    return ndimage.binary_dilation(atlas.region_mask(labels, list(DGM_REGIONS)))


def robust_z_below(values: np.ndarray) -> np.ndarray:
    """How many MADs (scaled by 1.4826, an SD for normal data) each value lies below the median of
    ``values`` (NaNs ignored)."""
    values = np.asarray(values, dtype=float)
    med = np.nanmedian(values)
    mad = 1.4826 * np.nanmedian(np.abs(values - med)) or 1e-6
    return (med - values) / mad


def cohort_qc(metrics: pd.DataFrame, chi_maps: list[np.ndarray], roi: np.ndarray, thresholds: dict) -> pd.DataFrame:
    """Add QSM agreement columns and the verdict to per-subject ``metrics``.

    Parameters
    ----------
    metrics : one row per subject with ``participant_id``, ``dice_brain``, ``t1_corr``.
    chi_maps : template-space QSM (ppm) of the same subjects, in the same order.
    roi : bool template-grid mask of the deep grey nuclei.
    thresholds : ``dice_min``, ``t1_corr_min``, ``qsm_dgm_corr_min``, ``qsm_dgm_robust_z_max``,
        ``include`` and ``exclude`` (lists of participant ids).

    Returns ``metrics`` with ``qsm_dgm_corr``, ``qsm_dgm_robust_z``, ``passed_qc``,
    ``included`` (after the overrides) and ``reason``.
    """
    out = metrics.copy().reset_index(drop=True)
    stack = np.stack([c[roi] for c in chi_maps])
    median = np.median(stack, axis=0)
    corr = np.array([masked_correlation(s, median, np.ones_like(s, bool)) for s in stack])
    out["qsm_dgm_corr"] = corr
    out["qsm_dgm_robust_z"] = robust_z_below(corr)
    reasons = []
    for _, r in out.iterrows():
        why = []
        if not r.dice_brain >= thresholds["dice_min"]:
            why.append(f"brain Dice {r.dice_brain:.3f} < {thresholds['dice_min']}")
        if not r.t1_corr >= thresholds["t1_corr_min"]:
            why.append(f"T1w correlation {r.t1_corr:.3f} < {thresholds['t1_corr_min']}")
        if not r.qsm_dgm_corr >= thresholds["qsm_dgm_corr_min"]:
            why.append(f"deep-grey QSM correlation {r.qsm_dgm_corr:.3f} < {thresholds['qsm_dgm_corr_min']}")
        if r.qsm_dgm_robust_z > thresholds["qsm_dgm_robust_z_max"]:
            why.append(f"deep-grey QSM correlation {r.qsm_dgm_robust_z:.1f} MADs below the cohort median")
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
