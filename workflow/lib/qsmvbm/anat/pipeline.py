"""The T1w stage of one subject as one library call (the workflow's ``anat_t1`` rule).

ANTs writes its transforms to files, so this pipeline reads and writes files; the steps are
array functions in :mod:`qsmvbm.anat.t1` and :mod:`qsmvbm.anat.normalize`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from ..io import save_json, save_nifti
from ..templates import TEMPLATE_SPACE, load_template
from ..timing import Stopwatch
from ..version import full_version
from . import normalize, t1
from .antsio import from_ants, load_ants, to_ants


def process_t1(t1w_path: Path, params: dict, out: dict, log) -> dict:
    """T1w of one subject, file in and files out: N4, brain extraction, SyN to the template,
    prior-based Atropos, TIV.

    Parameters
    ----------
    t1w_path : Path
        The raw T1w NIfTI (3D, finite).
    params : dict
        The ``anat`` section of the workflow config (``qsmvbm.config.workflow_defaults()["anat"]``).
    out : dict
        Output paths by key: ``preproc``, ``mask``, ``gm``, ``wm``, ``csf``, ``dseg`` (T1w space),
        ``affine`` (.mat), ``warp``, ``inverse_warp`` (ANTs warps), ``template_t1``,
        ``template_mask`` (template space) and ``volumes`` (JSON: tissue volumes in mL, TIV,
        timings in s, parameters). ANTs' intermediates go to a temporary folder beside ``affine``.
    log : logging.Logger

    Returns
    -------
    dict
        The ``volumes`` sidecar's content.
    """
    tpl = load_template(params["template_resolution"])
    T = to_ants(tpl.t1, tpl.affine)
    Tmask = to_ants(tpl.mask.astype(np.float32), tpl.affine)
    img = nib.load(t1w_path)
    data = img.get_fdata(dtype=np.float32)
    if data.ndim != 3 or not np.isfinite(data).all():
        raise ValueError(f"{t1w_path}: expected a finite 3D T1w image")
    raw = to_ants(data, img.affine)
    seed = params["random_seed"]
    vs = np.asarray(raw.spacing)
    xfm_dir = Path(out["affine"]).parent
    watch = Stopwatch(digits=2)
    tick = watch.tick
    timings = watch.timings

    with tempfile.TemporaryDirectory(dir=xfm_dir, prefix=".ants_") as tmp:
        pre = str(Path(tmp) / "reg_")
        be_vox = params["brain_extraction_voxel_mm"]
        small = t1.coarse_copy(raw, be_vox)
        # the template grid nearest the copy's voxels, for the registration; the mask comes from
        # the study template's own mask (Tmask) whatever the grid the registration ran on
        be_tpl = tpl if not be_vox else load_template(1 if be_vox < 1.5 else 2)
        # N4's time goes with the voxels of its shrunken grid: on the copy the same shrink factor
        # gives a coarser grid than on the T1w (8 mm for a 2 mm copy), enough for a first outline
        n4_small = t1.n4(small, shrink_factor=params["n4_shrink_factor"])
        tick("n4_initial")
        mask, _ = t1.brain_extraction(
            n4_small,
            T if be_tpl is tpl else to_ants(be_tpl.t1, be_tpl.affine),
            Tmask,
            pre,
            seed,
            params["brain_extraction_registration"],
            params["brain_extraction_init"],
            to_ants(
                t1.template_tissue_mask(
                    be_tpl.gm, be_tpl.wm, np.linalg.norm(be_tpl.affine[:3, :3], axis=0)
                ).astype(np.float32),
                be_tpl.affine,
            ),
            params["brain_extraction_bet_f"],
            target=None if small is raw else raw,
        )
        tick("brain_extraction")
        n4 = t1.n4(
            raw,
            mask=raw.new_image_like(mask.astype(np.float32)),
            shrink_factor=params["n4_shrink_factor"],
        )
        tick("n4_masked")
        m_img = n4.new_image_like(mask.astype(np.float32))
        reg = t1.register(T, n4 * m_img, params["registration"], pre + "syn_", seed)
        tick("syn")
        shutil.copy(next(f for f in reg["fwdtransforms"] if f.endswith(".mat")), out["affine"])
        shutil.copy(next(f for f in reg["fwdtransforms"] if f.endswith(".nii.gz")), out["warp"])
        shutil.copy(
            next(f for f in reg["invtransforms"] if f.endswith(".nii.gz")), out["inverse_warp"]
        )
    fwd = [out["warp"], out["affine"]]
    inv = [out["affine"], out["inverse_warp"]]
    priors = t1.template_priors(tpl, n4, inv)
    a = params["atropos"]
    seg = t1.segment(n4, mask, priors, a["prior_weight"], a["mrf"], a["iterations"])
    vols = t1.tissue_volumes_ml(seg, vs)
    tick("atropos")
    aff = img.affine
    save_nifti(from_ants(n4)[0], aff, out["preproc"])
    save_nifti(mask, aff, out["mask"], dtype=np.uint8)
    for k in ("gm", "wm", "csf"):
        save_nifti(seg[k], aff, out[k])
    save_nifti(seg["labels"], aff, out["dseg"], dtype=np.uint8)
    warped = normalize.warp(T, n4, fwd)
    save_nifti(from_ants(warped)[0], tpl.affine, out["template_t1"])
    wmask = normalize.warp(T, m_img, fwd).numpy() > 0.5
    save_nifti(wmask, tpl.affine, out["template_mask"], dtype=np.uint8)
    tick("write_and_warp")
    info = {
        **vols,
        "TemplateSpace": TEMPLATE_SPACE,
        "TemplateResolution_mm": params["template_resolution"],
        "BrainMask_ml": float(mask.sum() * np.prod(vs) / 1000),
        "Registration": params["registration"],
        "RandomSeed": seed,
        "Deterministic": params["deterministic"],
        "ITKThreads": int(os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "0")) or None,
        "Timings_s": timings,
        "Parameters": params,
        "Software": {"qsmvbm": full_version(), "antspyx": __import__("ants").__version__},
        "Source": str(t1w_path),
    }
    save_json(info, out["volumes"])
    log.info("TIV %.0f mL, GM %.0f mL", vols["TIV_ml"], vols["GM_ml"])
    return info


def refine_deep_grey(t1_path, transforms: list, params: dict, out: dict, log) -> dict:
    """The deep-grey refinement of one subject, file in and files out (the workflow's
    ``refine_deep_grey`` rule; :mod:`qsmvbm.anat.refine`).

    Parameters
    ----------
    t1_path : path
        The subject's bias-corrected T1w (T1w space).
    transforms : list of str
        The first normalization, template -> T1w, in ANTs order ([warp, affine]).
    params : dict
        The ``anat`` section of the workflow config (``template_resolution``, ``random_seed``,
        ``deep_grey.refine``).
    out : dict
        Output paths: ``field`` (the refinement's displacement field, template grid) and ``json``
        (its parameters and displacement summary, mm).
    log : logging.Logger
    """
    from . import refine

    tpl = load_template(params["template_resolution"])
    T = to_ants(tpl.t1, tpl.affine)
    p = params["deep_grey"]["refine"]
    watch = Stopwatch(digits=2)
    moving = normalize.warp(T, load_ants(str(t1_path)), list(transforms)).numpy()
    with tempfile.TemporaryDirectory(dir=Path(out["field"]).parent, prefix=".ants_dg_") as tmp:
        res = refine.refine(
            tpl.t1,
            moving,
            tpl.affine,
            str(Path(tmp) / "dg_"),
            params["random_seed"],
            box_mm=p["box_mm"],
            radius=p["radius_vox"],
            iterations=p["iterations"],
            taper_mm=p["taper_mm"],
        )
        shutil.copy(res.pop("field"), out["field"])
    watch.tick("refinement")
    info = {
        **res,
        "Description": "deep-grey refinement: local CC SyN of the template-space T1w to the "
        "template T1, template -> template-space subject (ANTs displacement field, mm, LPS)",
        "TemplateSpace": TEMPLATE_SPACE,
        "TemplateResolution_mm": params["template_resolution"],
        "RandomSeed": params["random_seed"],
        "Parameters": p,
        "Timings_s": watch.timings,
        "Software": {"qsmvbm": full_version(), "antspyx": __import__("ants").__version__},
    }
    save_json(info, out["json"])
    log.info(
        "deep-grey refinement: median displacement %.2f mm, max %.2f mm in the box",
        res["median_displacement_mm"],
        res["max_displacement_mm"],
    )
    return info
