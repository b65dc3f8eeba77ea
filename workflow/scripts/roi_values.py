"""roi_values.tsv: each included subject's mean QSM (ppm) and modulated GM in every significant cluster."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from qsmvbm.bids import subject_of  # noqa: E402
from qsmvbm.io import save_json, save_tsv  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402
from qsmvbm.stats.roi import cluster_regions, region_means  # noqa: E402


def run(clusters_tsv, cluster_maps, design_tsv, qsm_maps, gm_maps, group: dict, out: dict, log) -> pd.DataFrame:
    clusters = pd.read_csv(clusters_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    labels = {Path(f).name.split("_")[0]: np.asarray(nib.load(f).dataobj) for f in cluster_maps}
    source = ["qsm", "gm"] if group["roi_source"] == "both" else [group["roi_source"]]
    regions = cluster_regions(clusters, labels, source, group["combine"])
    design = pd.read_csv(design_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    design = design[design["included"].astype(str) == "True"].reset_index(drop=True)
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
    cols = ["participant_id", "group"] + [f"{m}_{n}" for n in regions for m in ("qsm", "gm")] + ["tiv_ml"]
    table = pd.DataFrame(rows, columns=cols)
    save_tsv(table, out["tsv"])
    vvol = None
    for f in cluster_maps:
        vvol = float(abs(np.linalg.det(nib.load(f).affine[:3, :3])))
    meta = {"regions": {n: {"from_modality": r["modality"], "rois": r["rois"], "cluster_ids": r["cluster_ids"],
                            "n_voxels": int(r["mask"].sum()), "volume_mm3": float(r["mask"].sum() * vvol)}
                        for n, r in regions.items()},
            "columns": {**{f"qsm_{n}": {"Description": f"mean susceptibility in region {n}", "Units": "ppm"}
                           for n in regions},
                        **{f"gm_{n}": {"Description": f"mean Jacobian-modulated, smoothed GM in region {n}",
                                       "Units": "mL GM per mL template volume"} for n in regions},
                        "tiv_ml": {"Description": "total intracranial volume", "Units": "mL"}}}
    save_json(meta, out["json"])
    log.info("%d regions, %d subjects", len(regions), len(table))
    if not regions:
        log.warning("no significant cluster: roi_values.tsv has no region columns")
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(smk.input.clusters, list(smk.input.cluster_maps), smk.input.design, list(smk.input.qsm_maps),
            list(smk.input.gm_maps), dict(smk.params.group), dict(smk.output), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
