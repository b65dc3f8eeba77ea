"""ROIs from significant clusters and the subject values inside them."""

from __future__ import annotations

import numpy as np
import pandas as pd


def cluster_regions(
    clusters: pd.DataFrame,
    label_maps: dict[str, np.ndarray],
    source: list[str],
    combine: dict[str, list[str]],
) -> dict[str, dict]:
    """Regions for value extraction: each significant cluster of the ``source`` modalities, and for each
    ``combine`` entry (name -> AAL3 ROI names) the union of those clusters when there are two or more.

    Parameters
    ----------
    clusters : clusters.tsv (``modality, roi, cluster_id, significant, ...``).
    label_maps : modality -> (X, Y, Z) int cluster label image (values = cluster_id).

    Returns
    -------
    name -> {"mask": bool array, "modality", "rois", "cluster_ids"}.
    """
    sig = clusters[clusters["significant"].astype(str) == "True"]
    sig = sig[sig["modality"].isin(source)]
    regions = {}
    for _, r in sig.iterrows():
        name = f"{r.modality}{int(r.cluster_id)}_{r.roi}"
        regions[name] = {
            "mask": label_maps[r.modality] == int(r.cluster_id),
            "modality": r.modality,
            "rois": [r.roi],
            "cluster_ids": [int(r.cluster_id)],
        }
    for cname, rois in combine.items():
        parts = [k for k, v in regions.items() if v["rois"][0] in rois and len(v["rois"]) == 1]
        if len(parts) >= 2:
            mask = np.zeros_like(regions[parts[0]]["mask"])
            for k in parts:
                mask |= regions[k]["mask"]
            regions[cname] = {
                "mask": mask,
                "modality": "+".join(sorted({regions[k]["modality"] for k in parts})),
                "rois": [r for k in parts for r in regions[k]["rois"]],
                "cluster_ids": [c for k in parts for c in regions[k]["cluster_ids"]],
            }
    return regions


def region_means(image: np.ndarray, regions: dict[str, dict]) -> dict[str, float]:
    """Mean of ``image`` (X, Y, Z) inside each region mask."""
    return {
        name: float(np.mean(image[r["mask"]])) if r["mask"].any() else np.nan
        for name, r in regions.items()
    }
