"""T1w processing with ANTsPy: N4, template-based brain extraction, prior-based Atropos, TIV.

Images are ANTsImages in and out (see :mod:`.antsio` for numpy/affine conversion).
Registration outputs go to ``outprefix`` (inside the rule's output folder), never
to the system temp folder; Atropos' temporary files go to a folder removed after the call.
"""

from __future__ import annotations

import tempfile

import numpy as np
from scipy import ndimage

from ..qsm.mask import ball, brain_mask_from_magnitude, largest_component
from .antsio import to_ants


def n4(t1, mask=None, shrink_factor: int = 4):
    """N4 bias-field correction (Tustison 2010) after truncating the top 0.5% of intensities; returns the
    corrected image (float)."""
    import ants

    if t1.max() > 0:
        truncated = ants.iMath(t1, "TruncateIntensity", 0.0, 0.995)
        if not np.isfinite(truncated.numpy()).all():
            # ITK's TruncateIntensity returns NaN everywhere when many voxels sit at the minimum of 0 (a
            # zero-filled background, as in the Colin27 T1w of Debian's mricron-data), and N4 then returns NaN:
            # truncate the image shifted to a minimum of 1, then shift back
            lo = float(t1.min())
            truncated = ants.iMath(t1 - lo + 1.0, "TruncateIntensity", 0.0, 0.995) + (lo - 1.0)
        t1 = truncated
    return ants.n4_bias_field_correction(t1, mask=mask, shrink_factor=shrink_factor)


def coarse_copy(img, voxel_mm: float):
    """``img`` resampled (linear interpolation) to isotropic ``voxel_mm`` voxels over the same field of
    view, for steps that do not need the T1w's detail (the brain extraction's N4, outline and
    registration). Returns ``img`` itself when no axis is finer than ``voxel_mm``.

    No smoothing before the resampling: BET's surface follows the edge's sharpness, and on Colin27
    (1 mm, with scalp) a Gaussian anti-alias filter to 2 mm grew its outline from 1,816 mL (on the
    1 mm image) to 1,934 mL, where plain resampling gave 1,827 mL.
    """
    import ants

    vs = np.asarray(img.spacing, float)
    if voxel_mm <= 0 or np.all(vs >= voxel_mm * 0.999):
        return img
    return ants.resample_image(img, (voxel_mm,) * 3, use_voxels=False, interp_type=0)


def rough_head_brain(t1_n4) -> np.ndarray:
    """Intensity-based first guess of the brain (bool array in the T1 grid): Otsu threshold,
    3 mm opening, the central component, closing and hole filling (no erosion)."""
    return brain_mask_from_magnitude(
        t1_n4.numpy(), np.asarray(t1_n4.spacing), open_mm=3.0, close_mm=4.0, erode_mm=0.0
    )


def check_t1(
    data: np.ndarray,
    affine: np.ndarray,
    min_brain_ml: float = 600.0,
    max_edge_fraction: float = 0.02,
) -> dict:
    """Does this T1w contain a whole brain? A fast check before any registration.

    An intensity-based brain guess must hold at least ``min_brain_ml`` and touch the
    field-of-view border (outer 2 voxels) with at most ``max_edge_fraction`` of its voxels. The
    inferior face does not count: the guess takes the neck of a real head (and of the simulator's
    realistic head, whose fat joins scalp and neck), and the neck always leaves the image there;
    a brain cut at the top, front, back or sides still fails.
    Returns ``{"ok": bool, "reason": str, "brain_ml": float, "edge_fraction": float}``.
    """
    vs = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    if data.ndim != 3:
        return {
            "ok": False,
            "reason": f"T1w is not 3D (shape {data.shape})",
            "brain_ml": 0.0,
            "edge_fraction": 1.0,
        }
    if not np.isfinite(data).all():
        return {
            "ok": False,
            "reason": "T1w has NaN or infinite voxels",
            "brain_ml": 0.0,
            "edge_fraction": 1.0,
        }
    rough = brain_mask_from_magnitude(data, vs, open_mm=3.0, close_mm=4.0, erode_mm=0.0)
    ml = float(rough.sum() * np.prod(vs) / 1000)
    edge = np.zeros_like(rough)
    # the inferior face: the low or high end of the voxel axis closest to the scanner's z
    z_ax = int(np.argmax(np.abs(np.asarray(affine)[2, :3])))
    inferior = (z_ax, "low" if np.asarray(affine)[2, z_ax] > 0 else "high")
    for ax in range(3):
        for end, face in (("low", slice(0, 2)), ("high", slice(-2, None))):
            if (ax, end) != inferior:
                sl = [slice(None)] * 3
                sl[ax] = face
                edge[tuple(sl)] = True
    frac = float((rough & edge).sum() / max(rough.sum(), 1))
    if ml < min_brain_ml:
        return {
            "ok": False,
            "reason": f"only {ml:.0f} mL of brain-like tissue found (< {min_brain_ml:.0f}): "
            "the T1w field of view misses the brain",
            "brain_ml": ml,
            "edge_fraction": frac,
        }
    if frac > max_edge_fraction:
        return {
            "ok": False,
            "reason": f"the brain touches the T1w field-of-view border ({frac:.1%} of it): "
            "part of the brain is outside the image",
            "brain_ml": ml,
            "edge_fraction": frac,
        }
    return {"ok": True, "reason": "ok", "brain_ml": ml, "edge_fraction": frac}


def register(
    fixed,
    moving,
    transform: str,
    outprefix: str,
    seed: int,
    fixed_mask=None,
    multivariate_extras=None,
    initial_transform=None,
    **options,
) -> dict:
    """``ants.registration`` with a fixed seed and outputs under ``outprefix``.

    ``transform``: 'Rigid', 'Affine', 'SyN', 'antsRegistrationSyNQuick[s]', ...
    ``options``: further ``ants.registration`` keywords (``syn_metric``, ``reg_iterations``...; the
    registration candidates of ``benchmarks/local_volume.py``).
    Returns the ANTsPy dict (``fwdtransforms``, ``invtransforms``, ``warpedmovout``...).
    """
    import ants.config  # binds ``ants`` too

    kw = dict(options)
    if multivariate_extras:
        kw["multivariate_extras"] = multivariate_extras
    if initial_transform is not None:
        kw["initial_transform"] = initial_transform
    # ANTsPy >= 0.5 takes the seed from ants.config (a ``random_seed=`` keyword is silently swallowed by
    # **kwargs): without it the random metric sampling is seeded from the clock and repeated runs differ.
    previous = ants.config._random_seed
    ants.config._random_seed = int(seed)
    try:
        return ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform=transform,
            outprefix=outprefix,
            mask=fixed_mask,
            **kw,
        )
    finally:
        ants.config._random_seed = previous


def register_multichannel(
    template_t1,
    t1_brain,
    qsm_template,
    qsm_in_t1,
    initial_affine: str,
    outprefix: str,
    seed: int,
    qsm_weight: float = 1.0,
    metric: str = "CC",
    metric_param: float = 2,
) -> dict:
    """Two-channel SyN of a subject to the template: T1 (mutual information, weight 1) plus QSM.

    The QSM channel pairs a cohort QSM template (``qsm_template``, template grid, ppm) with the
    subject's QSM resampled to its T1 grid (``qsm_in_t1``, ppm, 0 outside the brain); ``metric``
    ('CC' with ``metric_param`` = radius in voxels, 'MeanSquares', or 'Mattes' with bins) and
    ``qsm_weight`` set its share. The deep grey nuclei, nearly invisible on T1, are the QSM
    channel's contrast. The affine is not re-estimated: SyN starts from ``initial_affine`` (the
    T1-only registration's .mat), so the two registrations differ only in their warps.
    Returns the ANTsPy dict (``fwdtransforms`` = [warp, affine], ``invtransforms``).
    """
    return register(
        template_t1,
        t1_brain,
        "SyNOnly",
        outprefix,
        seed,
        multivariate_extras=[(metric, qsm_template, qsm_in_t1, float(qsm_weight), metric_param)],
        initial_transform=initial_affine,
    )


def back_project(template_img, subject_img, invtransforms, interpolator="linear"):
    """Template-space image pulled into the subject grid through the inverse of a
    subject->template registration (affine inverted, inverse warp)."""
    import ants

    which = (
        [True] + [False] * (len(invtransforms) - 1) if invtransforms[0].endswith(".mat") else None
    )
    return ants.apply_transforms(
        fixed=subject_img,
        moving=template_img,
        transformlist=invtransforms,
        whichtoinvert=which,
        interpolator=interpolator,
    )


def template_priors(tpl, subject_img, invtransforms) -> list:
    """The template's CSF, GM and WM probability maps (``tpl``: :class:`qsmvbm.templates.Template`)
    pulled into the subject grid of ``subject_img`` through the inverse of its subject->template
    registration (``invtransforms``: affine .mat, inverse warp), in the order :func:`segment` takes."""
    return [
        back_project(to_ants(p, tpl.affine), subject_img, invtransforms)
        for p in (tpl.csf, tpl.gm, tpl.wm)
    ]


def template_tissue_mask(gm: np.ndarray, wm: np.ndarray, voxel_size) -> np.ndarray:
    """The template's brain as BET outlines a head: GM + WM probability > 0.5, closed by 3 mm (the
    sulci bridged) and holes filled; the CSF around the brain is left out."""
    vs = np.asarray(voxel_size, float)
    tissue = np.pad((np.asarray(gm) + np.asarray(wm)) > 0.5, 4)
    closed = ndimage.binary_closing(tissue, structure=ball(3.0 / vs))[4:-4, 4:-4, 4:-4]
    return ndimage.binary_fill_holes(closed)


def brain_extraction(
    t1_n4,
    template_t1,
    template_mask,
    outprefix: str,
    seed: int,
    transform: str = "antsRegistrationSyNQuick[s]",
    init: str = "bet",
    template_tissue=None,
    bet_f: float = 0.6,
    target=None,
) -> tuple[np.ndarray, dict]:
    """Template-based brain extraction.

    1. a first brain outline: BET's deformable surface (``init='bet'``, :func:`qsmvbm.bet.bet_mask`,
       fractional threshold ``bet_f``, on the head's top 170 mm so that a neck in the field of view is left out), which stops at
       the skull of a real head; or an intensity mask (``'otsu'``: Otsu, opening, largest component),
       which takes scalp, skull and neck with the brain on real heads and holds only for images
       without them;
    2. the T1 inside that outline (BET; the Otsu mask dilated by 5 mm) is registered to the
       (skull-stripped) template (``transform``); with BET, to the template inside
       ``template_tissue`` (its brain without the CSF around it, :func:`template_tissue_mask`), so
       that both edges are the brain's surface: against the whole template mask, whose edge lies
       beyond that CSF, the template would shrink onto the BET surface and the TIV come out short
       (measured on simulated heads: -7 to -11 %);
    3. the template brain mask is back-projected (linear interpolation, > 0.5);
    4. refined: intersected with the outline dilated by 5 mm, largest component, holes filled.

    ``target`` (ANTsImage, default ``t1_n4``) is the grid of the returned mask: steps 1-2 may run on a
    coarse copy of the T1w (:func:`coarse_copy`) and the template mask still be back-projected onto the
    T1w's own grid, with the detail of ``template_mask``'s grid (the transforms are in mm, whatever the
    grids of the images they were estimated on); the dilated outline is brought there by linear
    interpolation (> 0.5).

    Returns the mask (bool, grid of ``target``) and the registration used.
    """
    from ..bet import bet_mask
    from .antsio import from_ants

    if init not in ("bet", "otsu"):
        raise ValueError(f"brain extraction init must be 'bet' or 'otsu', got {init!r}")
    vs = np.asarray(t1_n4.spacing)
    rough = rough_head_brain(t1_n4)
    if rough.sum() * np.prod(vs) < 200_000:  # < 200 mL: no brain found in the field of view
        raise ValueError(
            f"brain extraction found only {rough.sum() * np.prod(vs) / 1000:.0f} mL of brain-like "
            "tissue: does the T1w field of view contain the brain?"
        )
    if init == "bet":
        data, affine = from_ants(t1_n4)
        outline = bet_mask(data, vs, fractional_threshold=bet_f, affine=affine)
    else:
        outline = rough
    wide = ndimage.binary_dilation(outline, structure=ball(5.0 / vs))
    region = outline if init == "bet" else wide
    moving = t1_n4 * t1_n4.new_image_like(region.astype(np.float32))
    fixed = (
        template_t1 if init == "otsu" or template_tissue is None else template_t1 * template_tissue
    )
    reg = register(fixed, moving, transform, outprefix + "bet_", seed)
    grid = t1_n4 if target is None else target
    proj = back_project(template_mask, grid, reg["invtransforms"]).numpy() > 0.5
    if target is not None:
        import ants

        wide = (
            ants.resample_image_to_target(
                t1_n4.new_image_like(wide.astype(np.float32)), target, interp_type="linear"
            ).numpy()
            > 0.5
        )
    mask = ndimage.binary_fill_holes(largest_component(proj & wide))
    return mask, reg


def segment(
    t1_n4,
    mask: np.ndarray,
    priors: list,
    prior_weight: float = 0.25,
    mrf: float = 0.1,
    iterations: int = 5,
) -> dict:
    """Prior-based Atropos (Avants 2011) in the brain mask with template tissue priors
    (CSF, GM, WM order) already in the subject grid.

    Returns ``{"csf", "gm", "wm"}`` posterior probability arrays and ``"labels"`` (1 CSF, 2 GM, 3 WM).
    """
    import ants

    m = t1_n4.new_image_like(mask.astype(np.float32))
    pri = [p * m for p in priors]
    # ANTsPy writes the prior images to tempfile's folder (mktemp) and leaves them there: point it at
    # a folder of our own for the call
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="qsmvbm_atropos_") as tmp:
        tempfile.tempdir = tmp
        try:
            # r=0: Atropos' internal random generator gets a constant seed (its default seeds from the
            # clock, and the posteriors then differ slightly from run to run)
            seg = ants.atropos(
                a=t1_n4,
                x=m,
                i=pri,
                m=f"[{mrf},1x1x1]",
                c=f"[{iterations},0]",
                priorweight=prior_weight,
                r=0,
            )
            probs = [p.numpy() * mask for p in seg["probabilityimages"]]
        finally:
            tempfile.tempdir = previous
    return {
        "csf": probs[0],
        "gm": probs[1],
        "wm": probs[2],
        "labels": seg["segmentation"].numpy().astype(np.uint8),
    }


def tissue_volumes_ml(seg: dict, voxel_size) -> dict:
    """GM, WM, CSF volumes and TIV = GM + WM + CSF, in mL."""
    v = float(np.prod(voxel_size)) / 1000.0
    out = {k.upper() + "_ml": float(seg[k].sum() * v) for k in ("gm", "wm", "csf")}
    out["TIV_ml"] = out["GM_ml"] + out["WM_ml"] + out["CSF_ml"]
    return out
