"""Voxelwise two-group GLM of one modality (qsm or gm) with small-volume correction in AAL3 ROIs."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from qsmvbm import __version__  # noqa: E402
from qsmvbm.bids import subject_of  # noqa: E402
from qsmvbm.atlas import aal3_on_grid, label_name, region_mask  # noqa: E402
from qsmvbm.io import save_json, save_nifti, save_tsv  # noqa: E402
from qsmvbm.smk import logged, set_threads  # noqa: E402
from qsmvbm.stats.design import covariate_matrix  # noqa: E402
from qsmvbm.stats.glm import design_matrix  # noqa: E402
from qsmvbm.stats.voxelwise import SvcParams, voxelwise_svc  # noqa: E402
from qsmvbm.templates import TEMPLATE_SPACE, load_template  # noqa: E402

CLUSTER_COLUMNS = ["modality", "roi", "cluster_id", "peak_x", "peak_y", "peak_z", "peak_t", "p_unc",
                   "p_fwe_rft", "p_fwe_perm", "n_voxels", "volume_mm3", "peak_label", "significant",
                   "search_voxels", "search_resels"]


def by_subject(files) -> dict:
    """participant_id -> file (ids parsed from BIDS names)."""
    return {subject_of(f): str(f) for f in files}


def svc_params(group: dict) -> SvcParams:
    return SvcParams(cluster_p=group["cluster_forming_p"], min_cluster_mm3=group["min_cluster_mm3"],
                     alpha=group["fwe_alpha"], svc_volume=group["svc_volume"],
                     sphere_radius_mm=group["sphere_radius_mm"], significance=group["significance"],
                     n_perm=group["n_perm"], seed=group["seed"], connectivity=group["connectivity"],
                     fwe_family=group["fwe_family"], n_modalities=len(group["modalities"]),
                     rft_min_df=group["rft_min_df"])


def run(design_tsv, maps, valid_maps, modality: str, group: dict, patient: str, control: str,
        resolution: int, out: dict, log) -> pd.DataFrame:
    mcfg = group["modalities"][modality]
    design = pd.read_csv(design_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    design = design[design["included"].astype(str) == "True"].reset_index(drop=True)
    excluded = sorted(set(by_subject(maps)) - set(design["participant_id"]))
    files, vfiles = by_subject(maps), by_subject(valid_maps) if valid_maps else {}
    missing = [p for p in design["participant_id"] if p not in files]
    if missing:
        raise FileNotFoundError(f"{design_tsv}: no {modality} map for included subjects {missing}")
    ng = design["group"].value_counts()
    if ng.get(patient, 0) < 2 or ng.get(control, 0) < 2:
        raise ValueError(f"{design_tsv}: need at least 2 included subjects per group, have {dict(ng)}")
    x = (design["group"] == patient).to_numpy(float)
    X = design_matrix(x, covariate_matrix(design, mcfg["covariates"], str(design_tsv)))
    sign = 1.0 if mcfg["direction"] == "greater" else -1.0
    tpl = load_template(resolution)
    first = nib.load(files[design["participant_id"][0]])
    if not np.allclose(first.affine, tpl.affine, atol=1e-3) or first.shape[:3] != tpl.mask.shape:
        raise ValueError(f"{files[design['participant_id'][0]]}: not on the {TEMPLATE_SPACE} {resolution} mm grid")
    labels = aal3_on_grid(tpl.mask.shape, tpl.affine)
    rois = {name: region_mask(labels, [name]) for name in group["rois"]}
    thr = mcfg.get("absolute_threshold")

    def load(i):
        pid = design["participant_id"][i]
        img = nib.load(files[pid])
        if img.shape[:3] != tpl.mask.shape:
            raise ValueError(f"{files[pid]}: shape {img.shape} differs from the template grid {tpl.mask.shape}")
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
    table = pd.DataFrame(res.clusters, columns=[c for c in CLUSTER_COLUMNS if c not in ("modality", "peak_label")])
    table.insert(0, "modality", modality)
    if len(table):
        ijk = np.round(np.linalg.solve(tpl.affine, np.c_[table[["peak_x", "peak_y", "peak_z"]].to_numpy(),
                                                          np.ones(len(table))].T)[:3].T).astype(int)
        table["peak_label"] = [label_name(int(labels[tuple(v)])) for v in ijk]
    else:
        table["peak_label"] = []
    table = table[CLUSTER_COLUMNS]
    save_tsv(table, out["table"])
    contrast = f"{patient} > {control}" if sign > 0 else f"{patient} < {control}"
    save_json({"modality": modality, "contrast": contrast,
               "tstat_sign": "positive t = effect in the tested direction (" + contrast + ")",
               "covariates": mcfg["covariates"], "included": list(design["participant_id"]),
               "excluded": excluded, **res.info,
               "cluster_forming_p": group["cluster_forming_p"], "svc_volume": group["svc_volume"],
               "sphere_radius_mm": group["sphere_radius_mm"], "significance": group["significance"],
               "min_cluster_mm3": group["min_cluster_mm3"], "fwe_alpha": group["fwe_alpha"],
               "connectivity": group["connectivity"], "absolute_threshold": thr,
               "TemplateSpace": TEMPLATE_SPACE,
               "TemplateResolution_mm": resolution, "qsmvbm": __version__}, out["json"])
    for s in excluded:
        log.warning("EXCLUDED from the %s GLM: %s (normalization QC)", modality, s)
    log.info("%s: %d clusters, %d significant", modality, len(table), int(table["significant"].sum()))
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        set_threads(smk.threads)
        run(smk.input.design, list(smk.input.maps), list(smk.input.get("valid", [])), smk.wildcards.modality,
            dict(smk.params.group), smk.params.patient, smk.params.control, int(smk.params.resolution),
            dict(smk.output), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
