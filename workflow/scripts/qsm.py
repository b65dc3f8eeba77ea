"""QSM reconstruction of one subject: BIDS MEGRE in, Chimap (ppm) and intermediates out."""

from pathlib import Path

import numpy as np

from qsmvbm.anat.normalize import t1_mask_in_gre
from qsmvbm.bids import bids_uri, dataset_root, load_megre
from qsmvbm.io import load_json, save_json, save_nifti
from qsmvbm.layout import image_sidecar
from qsmvbm.qc import mosaic_png
from qsmvbm.qsm.mask import mask_plausibility
from qsmvbm.qsm.pipeline import reconstruct
from qsmvbm.smk import logged, set_threads
from qsmvbm.version import full_version

METHOD_NAMES = {
    "complex_fit": "nonlinear complex fit (MEDI Fit_ppm_complex-style)",
    "wls": "weighted least squares over unwrapped echoes",
    "laplacian": "Laplacian unwrapping (STI Suite style)",
    "path": "quality-guided path unwrapping (Herraez 2002)",
    "vsharp": "V-SHARP",
    "pdf": "PDF",
    "lbv": "LBV (Laplacian boundary value)",
    "ismv": "iSMV (iterative spherical mean value)",
    "resharp": "RESHARP (Tikhonov-regularised SHARP)",
    "star": "STAR-QSM-like two-level sparse inversion",
    "tvadmm": "TV-ADMM",
    "ilsqr": "iLSQR-like",
    "tkd": "TKD",
    "none": "none",
    "msmv": "mSMV (maximum spherical mean value, Roberts 2024)",
}


def run(
    bids_dir: Path,
    subject: str,
    params: dict,
    out: dict,
    log,
    t1_mask=None,
    gre_xfm=None,
    megre_filters: dict | None = None,
    tiv_ml: float | None = None,
) -> dict:
    """Reconstruct and write every output; returns the sidecar dict."""
    qsm_params = {k: v for k, v in params.items() if k not in ("phase_units", "phase_scale")}
    qsm_params["mask"] = {k: v for k, v in params["mask"].items() if k != "source"}
    gre = load_megre(
        bids_dir,
        subject,
        params.get("phase_units", "auto"),
        params.get("phase_scale"),
        megre_filters,
    )
    mask = t1_in_gre = None
    if t1_mask is not None:
        t1_in_gre = t1_mask_in_gre(t1_mask, gre_xfm, gre.mag.shape[:3], gre.affine)
    if params["mask"].get("source", "magnitude") == "t1":
        if t1_in_gre is None:
            raise ValueError(f"{subject}: qsm.mask.source is t1 but no T1w brain mask was given")
        mask = t1_in_gre
        log.info("%s: brain mask from the T1w (%d voxels)", subject, int(mask.sum()))
    log.info(
        "%s: %s echoes, TE %s s, B0 %.2f T, voxel %s mm, phase stored as %s",
        subject,
        gre.mag.shape[-1],
        np.round(gre.echo_times_s, 5).tolist(),
        gre.field_strength_t,
        np.round(gre.voxel_size, 3).tolist(),
        gre.phase_units,
    )
    res = reconstruct(
        gre.mag, gre.phase, gre.affine, gre.echo_times_s, gre.field_strength_t, qsm_params, mask
    )
    aff = gre.affine
    save_nifti(res.chi, aff, out["chi"])
    save_nifti(res.mask, aff, out["mask"], dtype=np.uint8)
    save_nifti(res.final_mask, aff, out["final_mask"], dtype=np.uint8)
    save_nifti(res.total_field, aff, out["total_field"])
    save_nifti(res.local_field, aff, out["local_field"])
    save_nifti(res.noise, aff, out["noise"])
    save_nifti(res.r2star, aff, out["r2star"])
    save_nifti(gre.mag[..., 0], aff, out["magnitude"])
    p = res.info["parameters"]
    sidecar = {
        "Units": "ppm",
        "Space": "MEGRE (the subject's GRE acquisition grid)",
        "ReferenceRegion": "whole-brain mean"
        if p["reference"] == "mean"
        else "ventricular CSF (low R2*)",
        "ReferenceValue_ppm": res.info["reference_value_ppm"],
        "Methods": {
            k: METHOD_NAMES.get(p[k], p[k])
            for k in ("combination", "unwrapping", "background", "edge_refinement", "inversion")
        }
        | ({"combination": res.info["combination_used"]} if "combination_used" in res.info else {}),
        "Parameters": p,
        "PhaseUnitsDetected": gre.phase_units,
        "PhaseCycle_stored_units": gre.phase_period,
        "EchoTimes_s": gre.echo_times_s.tolist(),
        "MagneticFieldStrength_T": gre.field_strength_t,
        "B0DirectionVoxel": res.info["b0_direction_voxel"],
        "MaskSource": (
            "T1w brain mask (inverse GRE->T1w rigid)"
            if mask is not None
            else f"GRE magnitude ({p['mask']['method']})"
        )
        + (
            ", refined by phase quality"
            if p["mask"]["phase_quality"] and "combination_used" not in res.info
            else ""
        ),
        "MaskVoxels": res.info["mask_voxels"],
        "MaskVoxelsBeforePhaseQuality": res.info.get("mask_voxels_before_quality"),
        "FinalMaskVoxels": res.info["final_mask_voxels"],
        "Timings_s": res.info["timings_s"],
        "Software": {"qsmvbm": full_version()},
        "Sources": [
            bids_uri(f[part], bids_dir) for f in gre.files for part in ("mag", "phase") if f[part]
        ],
    }
    if t1_in_gre is not None:
        plaus = mask_plausibility(res.mask, t1_in_gre, gre.voxel_size, tiv_ml)
        sidecar["MaskPlausibility"] = {"reference": "T1w brain mask in GRE space", **plaus}
        log.info(
            "%s: mask %.0f mL, Dice with the T1w brain %.3f, %.1f%% outside it, mask/TIV %s",
            subject,
            plaus["mask_ml"],
            plaus["dice_t1"],
            100 * plaus["outside_t1_fraction"],
            plaus["mask_tiv_ratio"],
        )
    for k in (
        "vsharp_radii_mm",
        "lbv_rim_dropped",
        "msmv",
        "inversion_iterations",
        "echo_fit_iterations",
    ):
        if k in res.info:
            sidecar[k] = res.info[k]
    # BIDS derivative fields (Description, SkullStripped, SpatialReference: the first echo's magnitude)
    sidecar = image_sidecar("chi", spatial_reference=sidecar["Sources"][0], **sidecar)
    save_json(sidecar, out["chi_json"])
    mosaic_png(
        [
            (
                "magnitude, echo 1 (a.u.)",
                gre.mag[..., 0],
                "gray",
                (0.0, float(np.percentile(gre.mag[..., 0][res.mask], 99.5))),
            ),
            ("local field (ppm)", res.local_field, "RdBu_r", (-0.03, 0.03)),
            ("chi (ppm)", res.chi, "gray", (-0.1, 0.2)),
        ],
        out["qc"],
        f"{subject}: QSM ({sidecar['Methods']['inversion']}), final mask outlined",
        mask=res.final_mask,
        affine=gre.affine,
    )
    log.info("%s: done in %s", subject, res.info["timings_s"])
    return sidecar


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        bids_dir = dataset_root(smk.input.megre[0])
        inp = dict(smk.input.items())
        tiv = load_json(inp["volumes"])["TIV_ml"] if "volumes" in inp else None
        run(
            bids_dir,
            smk.wildcards.subject,
            dict(smk.params.qsm),
            dict(smk.output.items()),
            log,
            inp.get("t1_mask"),
            inp.get("gre_xfm"),
            dict(smk.params.megre_filters),
            tiv,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
