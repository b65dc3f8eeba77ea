"""Template-space maps: warping in one interpolation, Jacobian modulation, smoothing, QC metrics."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def warp(template_img, moving_img, transformlist: list, interpolator: str = "linear"):
    """Pull ``moving_img`` into the template grid through ``transformlist`` (ANTs order:
    template->subject warp and affine, then e.g. a T1->GRE rigid), in one interpolation."""
    import ants

    return ants.apply_transforms(
        fixed=template_img,
        moving=moving_img,
        transformlist=transformlist,
        interpolator=interpolator,
    )


def warp_qsm(
    fixed_img, chi_img, qsm_mask_img, transformlist: list
) -> tuple[np.ndarray, np.ndarray]:
    """QSM (ppm, GRE grid) and its mask pulled into ``fixed_img``'s grid in one interpolation.

    ``transformlist`` (ANTs order) ends with the T1->GRE rigid: alone for the T1 grid, after the
    template->T1 warp and affine for the template grid.
    Returns (chi float32, 0 outside the warped mask; mask bool), arrays of the fixed grid.
    """
    chi = warp(fixed_img, chi_img, transformlist).numpy()
    mask = warp(fixed_img, qsm_mask_img, transformlist).numpy() > 0.5
    return np.where(mask, chi, 0).astype(np.float32), mask


def t1_mask_in_gre(t1_mask, gre_xfm, gre_shape, gre_affine) -> np.ndarray:
    """A T1w-space mask (NIfTI path) pulled into the GRE grid (``gre_shape``, ``gre_affine``, voxel ->
    scanner mm) through the inverse of the GRE->T1w rigid (``gre_xfm``, an ANTs .mat); bool."""
    import ants

    from .antsio import load_ants, to_ants

    fixed = to_ants(np.zeros(gre_shape, np.float32), gre_affine)
    moved = ants.apply_transforms(
        fixed=fixed,
        moving=load_ants(t1_mask),
        transformlist=[str(gre_xfm)],
        whichtoinvert=[True],
        interpolator="linear",
    )
    return moved.numpy() > 0.5


def affine_determinant(affine_file: str) -> float:
    """|det| of the linear part of an ANTs affine (.mat) transform."""
    import ants

    tx = ants.read_transform(affine_file)
    return float(abs(np.linalg.det(np.asarray(tx.parameters[:9]).reshape(3, 3))))


def jacobian(template_img, fwdtransforms: list, mode: str = "affine+nonlinear") -> np.ndarray:
    """Jacobian determinant of the template->subject map on the template grid.

    ``fwdtransforms`` = [warp field, affine .mat] of a subject->template SyN. A template
    voxel stands for ``J`` times its volume in the subject. ``mode``:
    ``affine+nonlinear`` (CAT12's mwp1: absolute volumes, use TIV as covariate) or
    ``nonlinear`` (the global affine scaling removed).
    """
    import ants

    warp_file = next(t for t in fwdtransforms if t.endswith((".nii.gz", ".nii")))
    j = ants.create_jacobian_determinant_image(template_img, warp_file, do_log=False).numpy()
    j = np.clip(j, 0, None)
    if mode == "affine+nonlinear":
        aff = next(t for t in fwdtransforms if t.endswith(".mat"))
        j = j * affine_determinant(aff)
    elif mode != "nonlinear":
        raise ValueError(f"unknown modulation {mode!r}")
    return j.astype(np.float32)


def deep_grey_weight(
    labels: np.ndarray, regions, voxel_size, feather_mm: float = 4.0
) -> np.ndarray:
    """Weight (float32 in [0, 1], shape of ``labels``) of the deep grey nuclei on a template grid.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        AAL3 labels on the template grid (:func:`qsmvbm.atlas.aal3_on_grid`).
    regions : list of str
        AAL3 region names (or composites such as ``Thalamus``) of the deep grey nuclei.
    voxel_size : sequence of 3 float
        Voxel size of the grid (mm).
    feather_mm : float, default 4.0
        FWHM (mm) of the Gaussian that blurs the regions' union; the weight is twice the blurred
        union, capped at 1: 1 inside a nucleus up to its edge, falling to 0 over about this distance
        outside, so the two estimates that :func:`modulated_gm` blends meet without a seam and the
        nucleus itself is measured by one of them. 0 = hard edge.
    """
    from .. import atlas

    m = atlas.region_mask(labels, list(regions)).astype(np.float32)
    if feather_mm <= 0:
        return m
    sigma = feather_mm * FWHM_TO_SIGMA / np.asarray(voxel_size, dtype=float)
    return np.clip(2.0 * ndimage.gaussian_filter(m, sigma), 0.0, 1.0).astype(np.float32)


def modulated_gm(
    gm: np.ndarray,
    jac: np.ndarray,
    template_gm: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Jacobian-modulated GM on the template grid [mL of GM per mL of template voxel].

    ``(1 - w) * clip(gm, 0, 1) * J + w * template_gm * J``: outside the deep grey nuclei
    (``w = 0``) the subject's warped GM probability times the Jacobian (standard VBM); inside
    them the template's GM fraction times the Jacobian, i.e. the nucleus's GM volume measured by
    its volume change alone (tensor-based morphometry), because the GM/WM contrast of the thalamus
    and the lentiform nuclei on T1w is partial-volume and tissue classification does not track it
    (docs/validation.md: thalamic GM r 0.48 with the truth by segmentation, 0.99 by Jacobian).

    Parameters
    ----------
    gm : ndarray, shape (X, Y, Z)
        The subject's GM probability warped to the template (0-1).
    jac : ndarray, shape (X, Y, Z)
        Jacobian determinant of the template-to-subject map (:func:`jacobian`).
    template_gm : ndarray, shape (X, Y, Z), optional
        The template's GM probability; needed with ``weight``.
    weight : ndarray, shape (X, Y, Z), optional
        Deep grey weight (:func:`deep_grey_weight`); None = segmentation everywhere.
    """
    g = np.clip(gm, 0, 1).astype(np.float32)
    if weight is not None:
        if template_gm is None:
            raise ValueError("modulated_gm: a deep grey weight needs the template GM")
        g = (1.0 - weight) * g + weight * np.clip(template_gm, 0, 1)
    return (g * jac).astype(np.float32)


def smooth(
    data: np.ndarray, fwhm_mm: float, voxel_size, mask: np.ndarray | None = None
) -> np.ndarray:
    """Gaussian smoothing with ``fwhm_mm``. With ``mask``, normalised within the mask
    (smooth(data*mask)/smooth(mask)), so values outside the mask do not leak in."""
    if fwhm_mm <= 0:
        return data.astype(np.float32)
    sigma = fwhm_mm * FWHM_TO_SIGMA / np.asarray(voxel_size, dtype=float)
    if mask is None:
        return ndimage.gaussian_filter(data.astype(np.float32), sigma)
    m = mask.astype(np.float32)
    num = ndimage.gaussian_filter(data.astype(np.float32) * m, sigma)
    den = ndimage.gaussian_filter(m, sigma)
    return np.where(mask, num / np.maximum(den, 1e-6), 0).astype(np.float32)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def cohort_template(
    maps: list[np.ndarray], masks: list[np.ndarray], min_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Voxelwise median of subjects' template-space maps (e.g. QSM in ppm), each within its mask.

    maps, masks : lists of (X, Y, Z) arrays on one grid (float, bool). A voxel is defined where at
    least ``min_fraction`` of the subjects are valid; the median (robust to a misregistered
    subject) is over those subjects. Returns (template float32, 0 where undefined; defined bool).
    """
    if not maps or len(maps) != len(masks):
        raise ValueError(
            f"cohort_template needs one mask per map, got {len(maps)} maps, {len(masks)} masks"
        )
    stack = np.stack([np.where(m, x, np.nan) for x, m in zip(maps, masks)]).astype(np.float32)
    n_valid = np.isfinite(stack).sum(0)
    defined = n_valid >= max(1, int(np.ceil(min_fraction * len(maps))))
    out = np.zeros(stack.shape[1:], np.float32)
    if defined.any():
        out[defined] = np.nanmedian(stack[:, defined], axis=0)
    return out, defined
