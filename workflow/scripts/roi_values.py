"""roi_values.tsv: each included subject's mean QSM (ppm) and modulated GM in every significant cluster."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmvbm.bids import subject_of
from qsmvbm.io import read_tsv, save_json, save_tsv
from qsmvbm.smk import logged
from qsmvbm.stats.design import included_rows
from qsmvbm.stats.roi import cluster_regions, region_means


def run(
    clusters_tsv, cluster_maps, design_tsv, qsm_maps, gm_maps, group: dict, out: dict, log
) -> pd.DataFrame:
    clusters = read_tsv(clusters_tsv)
    labels = {Path(f).name.split("_")[0]: np.asarray(nib.load(f).dataobj) for f in cluster_maps}
    source = ["qsm", "gm"] if group["roi_source"] == "both" else [group["roi_source"]]
    regions = cluster_regions(clusters, labels, source, group["combine"])
    design = read_tsv(design_tsv)
    design = included_rows(design)
    files = {"qsm": {subject_of(f): f for f in qsm_maps}, "gm": {subject_of(f): f for f in gm_maps}}
    rows = []
    for _, s in design.iterrows():
        row = {"participant_id": s.participant_id, "group": s.group}
        for mod in ("qsm", "gm"):
            img = np.asarray(nib.load(files[mod][s.participant_id]).dataobj, dtype=np.float64)
            for name, v in region_means(img, regions).items():
                row[f"{mod}_{name}"] = v
        row["tiv_ml"] = s.tiv_ml
        rows.append(row)
    cols = (
        ["participant_id", "group"]
        + [f"{m}_{n}" for n in regions for m in ("qsm", "gm")]
        + ["tiv_ml"]
    )
    table = pd.DataFrame(rows, columns=cols)
    save_tsv(table, out["tsv"])
    vvol = None
    for f in cluster_maps:
        vvol = float(abs(np.linalg.det(nib.load(f).affine[:3, :3])))
    meta = {
        "regions": {
            n: {
                "from_modality": r["modality"],
                "rois": r["rois"],
                "cluster_ids": r["cluster_ids"],
                "n_voxels": int(r["mask"].sum()),
                "volume_mm3": float(r["mask"].sum() * vvol),
            }
            for n, r in regions.items()
        },
        "columns": {
            **{
                f"qsm_{n}": {"Description": f"mean susceptibility in region {n}", "Units": "ppm"}
                for n in regions
            },
            **{
                f"gm_{n}": {
                    "Description": f"mean Jacobian-modulated, smoothed GM in region {n}",
                    "Units": "mL GM per mL template volume",
                }
                for n in regions
            },
            "tiv_ml": {"Description": "total intracranial volume", "Units": "mL"},
        },
    }
    save_json(meta, out["json"])
    log.info("%d regions, %d subjects", len(regions), len(table))
    if not regions:
        log.warning("no significant cluster: %s has no region columns", Path(out["tsv"]).name)
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            smk.input.clusters,
            list(smk.input.cluster_maps),
            smk.input.design,
            list(smk.input.qsm_maps),
            list(smk.input.gm_maps),
            dict(smk.params.group),
            dict(smk.output),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
