"""Template-space maps of one subject: QSM (GRE->T1->template in one interpolation),
Jacobian-modulated GM, smoothing, per-subject normalization QC metrics and overlay."""

import numpy as np

from qsmvbm import atlas
from qsmvbm.anat import normalize, refine
from qsmvbm.anat.antsio import load_ants, to_ants
from qsmvbm.anat.figures import normalization_overlay
from qsmvbm.io import save_json, save_nifti
from qsmvbm.smk import logged, set_threads
from qsmvbm.templates import TEMPLATE_SPACE, load_template


def run(inp: dict, params: dict, out: dict, subject: str, log) -> dict:
    tpl = load_template(params["template_resolution"])
    T = to_ants(tpl.t1, tpl.affine)
    vs = np.full(3, float(params["template_resolution"]))
    first = [inp["warp"], inp["affine"]]
    # the deep-grey refinement (template -> template-space subject) goes first: one interpolation
    fwd_t1 = ([inp["refine"]] if "refine" in inp else []) + first
    fwd_gre = fwd_t1 + [inp["gre_xfm"]]
    chi, qmask = normalize.warp_qsm(T, load_ants(inp["chi"]), load_ants(inp["qsm_mask"]), fwd_gre)
    save_nifti(chi, tpl.affine, out["chi"])
    save_nifti(qmask, tpl.affine, out["qsm_mask"], dtype=np.uint8)
    if "chi_smooth" in out:  # written only when smoothed at all (FWHM > 0)
        save_nifti(
            normalize.smooth(chi, params["qsm_fwhm_mm"], vs, qmask), tpl.affine, out["chi_smooth"]
        )
    gm = normalize.warp(T, load_ants(inp["gm"]), fwd_t1).numpy()
    jac = normalize.jacobian(T, first, params["modulation"])
    if "refine" in inp:
        jac = refine.chain_jacobian(T, inp["refine"], jac)
    dg = params["deep_grey"]
    weight = None
    if dg["method"] == "jacobian":
        labels = atlas.aal3_on_grid(tpl.gm.shape, tpl.affine)
        weight = normalize.deep_grey_weight(labels, dg["regions"], vs, dg["feather_mm"])
    mgm = normalize.modulated_gm(gm, jac, tpl.gm, weight)
    save_nifti(mgm, tpl.affine, out["gm_mod"])
    if "gm_mod_smooth" in out:
        save_nifti(
            normalize.smooth(mgm, params["gm_fwhm_mm"], vs), tpl.affine, out["gm_mod_smooth"]
        )
    # the T1w and its brain mask through the same transforms (T1-only or multichannel) for the QC metrics
    t1w = normalize.warp(T, load_ants(inp["t1"]), fwd_t1).numpy()
    wmask = normalize.warp(T, load_ants(inp["t1_mask"]), fwd_t1).numpy() > 0.5
    qc = {
        "participant_id": subject,
        "dice_brain": normalize.dice(wmask, tpl.mask),
        "t1_corr": normalize.masked_correlation(t1w, tpl.t1, tpl.mask),
        "gm_corr": normalize.masked_correlation(gm, tpl.gm, tpl.mask),
        "qsm_mask_in_template": float((qmask & tpl.mask).sum() / tpl.mask.sum()),
        "gm_ml_modulated": float(mgm.sum() * np.prod(vs) / 1000),
        "jacobian_mean": float(jac[tpl.mask].mean()),
        "modulation": params["modulation"],
        "deep_grey_gm": dg["method"],
        "normalization": params["normalization"],
        "deep_grey_refinement": "refine" in inp,
        "TemplateSpace": TEMPLATE_SPACE,
    }
    save_json(qc, out["qc"])
    normalization_overlay(
        t1w,
        chi,
        tpl,
        out["png"],
        f"{subject}: normalization to {TEMPLATE_SPACE} "
        f"(Dice {qc['dice_brain']:.3f}, T1 r {qc['t1_corr']:.3f})",
    )
    log.info("%s: %s", subject, qc)
    return qc


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        run(
            dict(smk.input.items()),
            dict(smk.params.anat),
            dict(smk.output.items()),
            smk.wildcards.subject,
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
