"""Brain mask from GRE magnitude (BET-like, without a surface model)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def ball(radius_vox) -> np.ndarray:
    """Ellipsoidal structuring element with radii ``radius_vox`` (voxels, per axis)."""
    r = np.maximum(np.asarray(radius_vox, dtype=float), 0.5)
    n = np.ceil(r).astype(int)
    g = np.ogrid[tuple(slice(-k, k + 1) for k in n)]
    return sum((gi / ri) ** 2 for gi, ri in zip(g, r)) <= 1.0


def largest_component(mask: np.ndarray, near=None) -> np.ndarray:
    """The connected component of ``mask`` with the most voxels (26-connectivity).

    With ``near`` (a boolean array), the component overlapping ``near`` most is kept.
    """
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return mask.astype(bool)
    weights = near.astype(np.float64) if near is not None else None
    sizes = ndimage.sum_labels(
        weights if weights is not None else mask, lab, index=np.arange(1, n + 1)
    )
    return lab == (int(np.argmax(sizes)) + 1)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def rss_magnitude(mag: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over echoes of a (X, Y, Z, E) magnitude; a 3D image as it is (float32)."""
    return (
        np.sqrt((mag.astype(np.float32) ** 2).sum(-1)) if mag.ndim == 4 else mag.astype(np.float32)
    )


def brain_mask_from_magnitude(
    mag: np.ndarray,
    voxel_size,
    threshold_scale: float = 1.0,
    open_mm: float = 3.0,
    close_mm: float = 3.0,
    erode_mm: float = 1.0,
    central_radius_mm: float = 40.0,
) -> np.ndarray:
    """Brain mask (bool, X x Y x Z) from a magnitude image or echo series.

    Steps: root-sum-of-squares over echoes; 1 mm Gaussian smoothing; Otsu
    threshold (times ``threshold_scale``) over non-background voxels; opening
    with a ball of ``open_mm`` to cut bridges to the scalp; the component that
    overlaps most with a sphere of ``central_radius_mm`` around the intensity
    centroid; closing (``close_mm``); hole filling; final erosion (``erode_mm``).
    """
    vs = np.asarray(voxel_size, dtype=float)
    m = rss_magnitude(mag)
    m = ndimage.gaussian_filter(m, sigma=1.0 / vs)
    sample = m[m > np.percentile(m, 5)]
    t = otsu_threshold(sample[:: max(1, sample.size // 500000)]) * threshold_scale
    b = m > t
    b = ndimage.binary_opening(b, structure=ball(open_mm / vs))
    coords = np.indices(m.shape, dtype=np.float32)
    w = m * b
    centre = [(coords[i] * w).sum() / w.sum() for i in range(3)]
    d2 = sum(((coords[i] - centre[i]) * vs[i]) ** 2 for i in range(3))
    b = largest_component(b, near=d2 <= central_radius_mm**2)
    pad = int(np.ceil(close_mm / vs.min())) + 1
    b = np.pad(b, pad)
    b = ndimage.binary_closing(b, structure=ball(close_mm / vs))
    b = b[(slice(pad, -pad),) * 3]
    b = ndimage.binary_fill_holes(b)
    if erode_mm > 0:
        b = ndimage.binary_erosion(b, structure=ball(erode_mm / vs))
        b = largest_component(b)
    return b


def refine_by_quality(mask: np.ndarray, noise: np.ndarray, factor: float = 5.0) -> np.ndarray:
    """Drop voxels whose field noise (e.g. the echo fit's SD) exceeds ``factor`` times its
    median over the mask's interior, then keep the largest component and fill holes.

    Removes the unreliable-phase rim (sinuses, bone edges) that a magnitude mask keeps.
    """
    inner = ndimage.binary_erosion(mask, iterations=3)
    ref = float(np.median(noise[inner if inner.any() else mask]))
    good = largest_component(mask & (noise <= factor * ref))
    return ndimage.binary_fill_holes(good)


def mask_plausibility(
    mask: np.ndarray, t1_mask: np.ndarray, voxel_size, tiv_ml: float | None = None
) -> dict:
    """How a GRE-space brain mask compares with the subject's T1w brain mask brought into the same grid.

    Parameters
    ----------
    mask, t1_mask : (X, Y, Z) bool on the GRE grid.
    voxel_size : (3,) mm. tiv_ml : the subject's total intracranial volume (mL) from the T1w, or None.

    Returns
    -------
    ``mask_ml`` and ``t1_mask_ml`` (mL), ``dice_t1`` (Dice of the two), ``outside_t1_fraction`` (share of
    ``mask`` outside the T1w brain) and ``mask_tiv_ratio`` (``mask_ml / tiv_ml``, None without TIV). A
    magnitude mask that took the scalp or the neck shows as a low Dice, a large outside share and a ratio
    above 1 (on the simulator: 0.78, 0.34 and 1.44 for one such subject; 0.98, <= 0.01, 0.97 otherwise).
    """
    m, t = np.asarray(mask, bool), np.asarray(t1_mask, bool)
    vox_ml = float(np.prod(voxel_size)) / 1000.0
    inter = float((m & t).sum())
    out = {
        "mask_ml": float(m.sum()) * vox_ml,
        "t1_mask_ml": float(t.sum()) * vox_ml,
        "dice_t1": 2 * inter / max(float(m.sum() + t.sum()), 1.0),
        "outside_t1_fraction": float((m & ~t).sum()) / max(float(m.sum()), 1.0),
        "mask_tiv_ratio": None,
    }
    if tiv_ml:
        out["mask_tiv_ratio"] = out["mask_ml"] / float(tiv_ml)
    return out


def bet_magnitude_mask(
    mag: np.ndarray, affine: np.ndarray, fractional_threshold: float = 0.5
) -> np.ndarray:
    """Brain mask (bool, X x Y x Z) of a GRE by BET (:func:`qsmvbm.bet.bet_mask`).

    The root-sum-of-squares magnitude over echoes is first bias-corrected (N4): a receive coil's
    bright periphery otherwise lets the surface leak into the scalp (seen on a real 3 T 32-channel
    scan). ``affine``: voxel -> mm (RAS); ``fractional_threshold``: BET's f (smaller: larger brain).
    """
    from ..anat.antsio import to_ants
    from ..anat.t1 import n4
    from ..bet import bet_mask

    m = rss_magnitude(mag)
    vs = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    corrected = n4(to_ants(m, affine), shrink_factor=4).numpy()
    return bet_mask(corrected, vs, fractional_threshold, affine=affine)
