"""Referencing susceptibility maps: whole-brain mean (default) or CSF."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .mask import ball


def csf_mask_from_r2star(
    r2star: np.ndarray,
    mask: np.ndarray,
    voxel_size,
    max_r2star: float = 5.0,
    erode_mm: float = 6.0,
    min_volume_mm3: float = 200.0,
) -> np.ndarray:
    """Ventricular CSF: low R2* (< ``max_r2star`` 1/s) inside the mask eroded by ``erode_mm``,
    in connected pieces of at least ``min_volume_mm3`` (away from the brain surface)."""
    vs = np.asarray(voxel_size, dtype=float)
    inner = ndimage.binary_erosion(mask, structure=ball(erode_mm / vs))
    csf = inner & (r2star > 0) & (r2star < max_r2star)
    lab, n = ndimage.label(csf)
    if n == 0:
        return csf
    sizes = ndimage.sum_labels(csf, lab, index=np.arange(1, n + 1)) * float(np.prod(vs))
    keep = np.flatnonzero(sizes >= min_volume_mm3) + 1
    return np.isin(lab, keep)


def reference(
    chi: np.ndarray, mask: np.ndarray, method: str = "mean", csf_mask=None
) -> tuple[np.ndarray, float]:
    """Subtract the reference value: the mean over ``mask`` or over ``csf_mask``.

    Returns (referenced chi, 0 outside the mask; the reference value in ppm).
    """
    if method == "mean":
        region = mask
    elif method == "csf":
        if csf_mask is None or not csf_mask.any():
            raise ValueError("CSF referencing needs a non-empty CSF mask")
        region = csf_mask & mask
    else:
        raise ValueError(f"unknown reference method {method!r}")
    ref = float(chi[region].mean())
    return np.where(mask, chi - ref, 0).astype(np.float32), ref
