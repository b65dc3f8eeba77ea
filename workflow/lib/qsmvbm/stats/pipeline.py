"""The group stage's voxelwise GLM as one library call (the workflow's ``group_glm`` rule)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from ..atlas import aal3_on_grid, label_name, region_mask
from ..bids import subject_of
from ..io import read_tsv, save_json, save_nifti, save_tsv
from ..templates import TEMPLATE_SPACE, load_template
from ..version import full_version
from .design import group_design, included_rows
from .voxelwise import SvcParams, tfce_on, voxelwise_svc

CLUSTER_COLUMNS = [
    "modality",
    "roi",
    "cluster_id",
    "peak_x",
    "peak_y",
    "peak_z",
    "peak_t",
    "p_unc",
    "p_fwe_rft",
    "p_fwe_perm",
    "peak_tfce",
    "p_fwe_tfce",
    "n_voxels",
    "volume_mm3",
    "peak_label",
    "significant",
    "search_voxels",
    "search_resels",
]


def by_subject(files) -> dict:
    """participant_id -> file (ids parsed from BIDS names)."""
    return {subject_of(f): str(f) for f in files}


def svc_params(group: dict) -> SvcParams:
    return SvcParams(
        cluster_p=group["cluster_forming_p"],
        min_cluster_mm3=group["min_cluster_mm3"],
        alpha=group["fwe_alpha"],
        svc_volume=group["svc_volume"],
        sphere_radius_mm=group["sphere_radius_mm"],
        significance=group["significance"],
        n_perm=group["n_perm"],
        seed=group["seed"],
        connectivity=group["connectivity"],
        fwe_family=group["fwe_family"],
        n_modalities=len(group["modalities"]),
        rft_min_df=group["rft_min_df"],
        tfce=tfce_on(group),
        tfce_E=group["tfce"]["E"],
        tfce_H=group["tfce"]["H"],
        tfce_dh=group["tfce"]["dh"],
    )


def group_glm(
    design_tsv,
    maps,
    valid_maps,
    modality: str,
    group: dict,
    patient: str,
    control: str,
    resolution: int,
    out: dict,
    log,
) -> pd.DataFrame:
    """Voxelwise two-group GLM of one modality with small-volume correction, files in and out.

    Parameters
    ----------
    design_tsv : path
        The group design (``group/design.tsv``); its ``included`` rows enter the model.
    maps : list of paths
        Every subject's template-space map of ``modality`` (BIDS names: the subject is read from
        the file name); subjects not included in the design are left out and logged.
    valid_maps : list of paths
        Per-subject validity masks (the template-space QSM masks) or an empty list.
    modality : str
        ``"qsm"`` (ppm) or ``"gm"`` (modulated GM probability).
    group : dict
        The ``group`` section of the workflow config.
    patient, control : str
        Group labels (participants.tsv values).
    resolution : int
        Template grid, mm (the maps must be on it).
    out : dict
        Output paths: ``tstat``, ``effect``, ``clusters``, ``mask``, ``sd`` (residual standard
        deviation, units of the data: SPM's ResMS as an SD; NIfTI), ``table`` (TSV of
        clusters, columns :data:`CLUSTER_COLUMNS`), ``json`` (model and inference record); with
        TFCE on, ``tfce`` (score) and ``tfce_pfwe`` (voxelwise FWE p, 1 outside the ROIs).
    log : logging.Logger

    Returns
    -------
    pandas.DataFrame
        The cluster table.
    """
    mcfg = group["modalities"][modality]
    design = read_tsv(design_tsv)
    design = included_rows(design)
    excluded = sorted(set(by_subject(maps)) - set(design["participant_id"]))
    files, vfiles = by_subject(maps), by_subject(valid_maps) if valid_maps else {}
    missing = [p for p in design["participant_id"] if p not in files]
    if missing:
        raise FileNotFoundError(f"{design_tsv}: no {modality} map for included subjects {missing}")
    ng = design["group"].value_counts()
    if ng.get(patient, 0) < 2 or ng.get(control, 0) < 2:
        raise ValueError(
            f"{design_tsv}: need at least 2 included subjects per group, have {dict(ng)}"
        )
    X = group_design(design, patient, mcfg["covariates"], str(design_tsv))
    sign = 1.0 if mcfg["direction"] == "greater" else -1.0
    tpl = load_template(resolution)
    first = nib.load(files[design["participant_id"][0]])
    if not np.allclose(first.affine, tpl.affine, atol=1e-3) or first.shape[:3] != tpl.mask.shape:
        raise ValueError(
            f"{files[design['participant_id'][0]]}: not on the {TEMPLATE_SPACE} {resolution} mm grid"
        )
    labels = aal3_on_grid(tpl.mask.shape, tpl.affine)
    rois = {name: region_mask(labels, [name]) for name in group["rois"]}
    thr = mcfg.get("absolute_threshold")

    def load(i):
        pid = design["participant_id"][i]
        img = nib.load(files[pid])
        if img.shape[:3] != tpl.mask.shape:
            raise ValueError(
                f"{files[pid]}: shape {img.shape} differs from the template grid {tpl.mask.shape}"
            )
        data = np.asarray(img.dataobj, dtype=np.float32)
        if np.isnan(data[tpl.mask]).any():
            raise ValueError(f"{files[pid]}: NaN values inside the brain mask")
        valid = np.isfinite(data)
        if pid in vfiles:
            valid &= np.asarray(nib.load(vfiles[pid]).dataobj) > 0
        if thr is not None:
            valid &= data > thr
        return data, valid

    res = voxelwise_svc(load, X, sign, tpl.mask, rois, tpl.affine, svc_params(group), log)
    save_nifti(res.tmap.astype(np.float32), tpl.affine, out["tstat"])
    save_nifti(res.effect.astype(np.float32), tpl.affine, out["effect"])
    save_nifti(res.cluster_labels, tpl.affine, out["clusters"], dtype=np.int16)
    save_nifti(res.mask, tpl.affine, out["mask"], dtype=np.uint8)
    save_nifti(res.sd.astype(np.float32), tpl.affine, out["sd"])
    if res.tfce is not None and "tfce" in out:
        save_nifti(res.tfce.astype(np.float32), tpl.affine, out["tfce"])
        save_nifti(res.tfce_pfwe.astype(np.float32), tpl.affine, out["tfce_pfwe"])
    table = pd.DataFrame(
        res.clusters, columns=[c for c in CLUSTER_COLUMNS if c not in ("modality", "peak_label")]
    )
    table.insert(0, "modality", modality)
    if len(table):
        ijk = np.round(
            np.linalg.solve(
                tpl.affine,
                np.c_[table[["peak_x", "peak_y", "peak_z"]].to_numpy(), np.ones(len(table))].T,
            )[:3].T
        ).astype(int)
        table["peak_label"] = [label_name(int(labels[tuple(v)])) for v in ijk]
    else:
        table["peak_label"] = []
    table = table[CLUSTER_COLUMNS]
    save_tsv(table, out["table"])
    contrast = f"{patient} > {control}" if sign > 0 else f"{patient} < {control}"
    save_json(
        {
            "modality": modality,
            "contrast": contrast,
            "tstat_sign": "positive t = effect in the tested direction (" + contrast + ")",
            "covariates": mcfg["covariates"],
            "included": list(design["participant_id"]),
            "excluded": excluded,
            **res.info,
            "cluster_forming_p": group["cluster_forming_p"],
            "svc_volume": group["svc_volume"],
            "sphere_radius_mm": group["sphere_radius_mm"],
            "significance": group["significance"],
            "min_cluster_mm3": group["min_cluster_mm3"],
            "fwe_alpha": group["fwe_alpha"],
            "connectivity": group["connectivity"],
            "absolute_threshold": thr,
            "TemplateSpace": TEMPLATE_SPACE,
            "TemplateResolution_mm": resolution,
            "qsmvbm": full_version(),
        },
        out["json"],
    )
    for s in excluded:
        log.warning("EXCLUDED from the %s GLM: %s (normalization QC)", modality, s)
    log.info(
        "%s: %d clusters, %d significant", modality, len(table), int(table["significant"].sum())
    )
    return table
