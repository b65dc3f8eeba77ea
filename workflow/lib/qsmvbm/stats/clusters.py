"""Suprathreshold clusters, peaks in MNI mm and search volumes for small-volume correction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CONNECTIVITY = {6: 1, 18: 2, 26: 3}


def structure(connectivity: int = 18) -> np.ndarray:
    """(3, 3, 3) bool neighbourhood of 6-, 18- (SPM's default) or 26-connectivity."""
    if connectivity not in CONNECTIVITY:
        raise ValueError(f"connectivity must be 6, 18 or 26, not {connectivity}")
    return ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])


def label_clusters(supra: np.ndarray, connectivity: int = 18) -> tuple[np.ndarray, int]:
    """Connected components of a boolean map (6-, 18- (SPM's default) or 26-connectivity)."""
    labels, n = ndimage.label(np.asarray(supra, bool), structure=structure(connectivity))
    return labels.astype(np.int32), int(n)


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel (mm^3) from a 4x4 affine."""
    return float(abs(np.linalg.det(np.asarray(affine)[:3, :3])))


def vox_to_mm(ijk, affine: np.ndarray) -> np.ndarray:
    """Voxel indices (..., 3) -> world (MNI) coordinates in mm."""
    ijk = np.asarray(ijk, dtype=np.float64)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def sphere_mask(shape, affine: np.ndarray, centre_mm, radius_mm: float) -> np.ndarray:
    """Boolean ball of ``radius_mm`` around ``centre_mm`` (MNI mm) on a grid."""
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = vox_to_mm(ijk, affine)
    d2 = ((xyz - np.asarray(centre_mm, dtype=np.float64)) ** 2).sum(axis=1)
    return (d2 <= radius_mm**2).reshape(shape)


@dataclass
class Cluster:
    """One suprathreshold cluster: voxel mask, size and its peak (voxel index and MNI mm)."""

    mask: np.ndarray
    n_voxels: int
    volume_mm3: float
    peak_ijk: tuple
    peak_mm: tuple
    peak_t: float


def find_clusters(
    tmap: np.ndarray,
    search: np.ndarray,
    threshold: float,
    affine: np.ndarray,
    connectivity: int = 18,
) -> list[Cluster]:
    """Clusters of ``tmap > threshold`` inside ``search``, largest peak first.

    Parameters
    ----------
    tmap : (X, Y, Z) t statistic (positive = effect in the tested direction).
    search : (X, Y, Z) bool search volume (ROI x analysis mask).
    threshold : cluster-forming t height.
    affine : 4x4 voxel -> MNI mm.
    """
    supra = (tmap > threshold) & search
    labels, n = label_clusters(supra, connectivity)
    vvol = voxel_volume_mm3(affine)
    out = []
    for lab in range(1, n + 1):
        m = labels == lab
        idx = np.flatnonzero(m)
        best = idx[np.argmax(tmap.ravel()[idx])]
        ijk = np.unravel_index(best, tmap.shape)
        out.append(
            Cluster(
                mask=m,
                n_voxels=int(m.sum()),
                volume_mm3=float(m.sum() * vvol),
                peak_ijk=tuple(int(i) for i in ijk),
                peak_mm=tuple(float(v) for v in vox_to_mm(ijk, affine)),
                peak_t=float(tmap[ijk]),
            )
        )
    out.sort(key=lambda c: -c.peak_t)
    return out


def svc_volume(
    roi: np.ndarray, affine: np.ndarray, mode: str, peak_mm=None, radius_mm: float = 20.0
) -> np.ndarray:
    """Search volume of a small-volume correction.

    ``mode='roi'``: the whole ROI; ``mode='sphere'``: a ``radius_mm`` ball around ``peak_mm``
    intersected with the ROI (the reference study's choice, 20 mm).
    """
    if mode == "roi":
        return roi.copy()
    if mode == "sphere":
        if peak_mm is None:
            raise ValueError("a sphere search volume needs the peak coordinate")
        return roi & sphere_mask(roi.shape, affine, peak_mm, radius_mm)
    raise ValueError(f"unknown SVC volume mode {mode!r} (roi or sphere)")
