"""Group figures of the report: SVC t-maps (Figure 1), group boxes (2), QSM vs GM (3), clinical (4)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from qsmvbm.atlas import aal3_on_grid, region_mask
from qsmvbm.io import read_tsv
from qsmvbm.report import figures
from qsmvbm.smk import logged
from qsmvbm.templates import load_template


def read(path):
    return read_tsv(path)


def run(
    inp: dict,
    patient: str,
    control: str,
    clinical: list,
    rois_names: list,
    resolution: int,
    out: dict,
    log,
) -> None:
    tpl = load_template(resolution)
    template_img = nib.Nifti1Image(tpl.t1, tpl.affine)
    clusters = read(inp["clusters"])
    rois = region_mask(aal3_on_grid(tpl.mask.shape, tpl.affine), rois_names)
    roi_img = nib.Nifti1Image(rois.astype(np.float32), tpl.affine)
    for mod in ("qsm", "gm"):
        info = json.loads(Path(inp[f"{mod}_glm"]).read_text())
        figures.svc_figure(
            nib.load(inp[f"{mod}_tstat"]),
            nib.load(inp[f"{mod}_clusters"]),
            roi_img,
            template_img,
            clusters[clusters.modality == mod],
            info["cluster_forming_t"],
            f"{mod.upper()}: {info['contrast']}",
            [out[f"{mod}_svc"], out[f"{mod}_svc_svg"]],
        )
    values = read(inp["values"])
    design = read(inp["design"])
    values = values.merge(
        design[["participant_id"] + [c for c in design.columns if c not in values.columns]],
        on="participant_id",
        how="left",
    )
    regions = list(json.loads(Path(inp["columns"]).read_text())["regions"])
    stats, corr = read(inp["stats"]), read(inp["correlations"])
    figures.roi_group_figure(
        values, stats, regions, patient, control, [out["roi_groups"], out["roi_groups_svg"]]
    )
    figures.qsm_gm_figure(
        values, corr, regions, patient, control, [out["qsm_vs_gm"], out["qsm_vs_gm_svg"]]
    )
    figures.clinical_figure(
        values, corr, regions, clinical, patient, [out["clinical"], out["clinical_svg"]]
    )
    log.info("figures for %d regions", len(regions))


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            dict(smk.input),
            smk.params.patient,
            smk.params.control,
            list(smk.params.clinical),
            list(smk.params.rois),
            int(smk.params.resolution),
            dict(smk.output),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
