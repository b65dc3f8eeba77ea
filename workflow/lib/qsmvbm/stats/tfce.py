"""Threshold-free cluster enhancement (Smith and Nichols 2009, NeuroImage 44:83) in small volumes.

The TFCE of a voxel ``v`` of a statistic map ``t`` is

    TFCE(v) = sum over h = dh, 2 dh, ... <= t(v) of  e(v, h)^E * h^H * dh

with ``e(v, h)`` the extent (voxels) of the cluster of ``{t >= h}`` that holds ``v``; E = 0.5 and
H = 2 are the published defaults. Clusters are formed inside the search volume only (a voxel
outside it never joins a cluster), so the score of an ROI does not depend on the map around it.
Family-wise error p-values come from the maximum TFCE of each permuted map
(:func:`max_tfce_batch`, many permutations labelled at once).

nilearn's ``calculate_tfce`` (as fslmaths) leaves out the factor ``dh`` and places its steps at
``max(t) / 100`` of each map; here ``dh`` is one fixed step for every map (observed and permuted),
so that the statistic is the same function of the data in each permutation. With the same steps
the two agree up to the factor ``dh`` (tests/test_stats.py).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .clusters import structure


def _steps(top: float, dh: float) -> np.ndarray:
    """Heights dh, 2 dh, ... up to ``top`` (empty when ``top < dh``)."""
    n = int(np.floor(top / dh + 1e-9)) if np.isfinite(top) and top > 0 else 0
    return dh * np.arange(1, n + 1)


def tfce(
    tmap: np.ndarray,
    search: np.ndarray,
    E: float = 0.5,
    H: float = 2.0,
    dh: float = 0.1,
    connectivity: int = 18,
) -> np.ndarray:
    """TFCE of ``tmap`` within ``search`` (one-sided: only positive values contribute).

    Parameters
    ----------
    tmap : (X, Y, Z) float
        Statistic map (t).
    search : (X, Y, Z) bool
        Search volume; clusters are formed inside it only.
    E, H : float
        Extent and height exponents (default 0.5, 2).
    dh : float
        Height step in units of ``tmap`` (default 0.1).
    connectivity : int
        6, 18 or 26.

    Returns
    -------
    (X, Y, Z) float64, 0 outside ``search`` and where ``tmap < dh``.
    """
    search = np.asarray(search, bool)
    return max_tfce_batch(
        np.asarray(tmap, np.float64)[search][None, :], search, E, H, dh, connectivity, True
    )[1][0]


def max_tfce_batch(
    values: np.ndarray,
    search: np.ndarray,
    E: float = 0.5,
    H: float = 2.0,
    dh: float = 0.1,
    connectivity: int = 18,
    return_maps: bool = False,
    max_voxels: int = 4_000_000,
):
    """Maximum TFCE of each of B maps given by their values in ``search``.

    Parameters
    ----------
    values : (B, V) float
        Statistic of each map at the V voxels of ``search`` (C order).
    search : (X, Y, Z) bool
        The search volume (V voxels).
    E, H, dh, connectivity : as :func:`tfce`.
    return_maps : bool
        Also return the TFCE maps (B, X, Y, Z).
    max_voxels : int
        The B maps are labelled together, as one 4D array with no connection between maps, in
        chunks of at most this many voxels (memory: about 20 bytes per voxel).

    Returns
    -------
    maxima : (B,) float64, the maximum TFCE of each map in ``search``.
    maps : (B, X, Y, Z) float64, only when ``return_maps``.
    """
    search = np.asarray(search, bool)
    values = np.atleast_2d(np.asarray(values, np.float64))
    B = values.shape[0]
    idx = np.argwhere(search)
    maxima = np.zeros(B)
    maps = np.zeros((B, *search.shape)) if return_maps else None
    if idx.size == 0:
        return (maxima, maps) if return_maps else maxima
    lo, hi = idx.min(0), idx.max(0) + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = search[crop]
    st3 = structure(connectivity)
    st4 = np.zeros((3, 3, 3, 3), bool)
    st4[1] = st3  # no connection between maps
    # maps in decreasing order of their maximum: the maps still above a height are a prefix (a view)
    order = np.argsort(-values.max(axis=1), kind="stable")
    chunk = max(1, int(max_voxels // max(sub.size, 1)))
    for start in range(0, B, chunk):
        rows = order[start : start + chunk]
        v = values[rows]
        b = v.shape[0]
        arr = np.full((b, *sub.shape), -np.inf)
        arr[:, sub] = v
        tops = v.max(axis=1)
        if return_maps:
            score = np.zeros(arr.shape)
        else:
            # the maximum TFCE of a map is reached at a local maximum of the map: from any voxel a
            # path that never descends leads to one, and it shares the voxel's cluster at every
            # height up to the voxel's value; so only the local maxima are scored
            peak = arr >= ndimage.maximum_filter(arr, footprint=st4, mode="constant", cval=-np.inf)
            peak &= arr >= dh
            peak_idx = np.flatnonzero(peak)
            peak_map = peak_idx // sub.size
            peak_score = np.zeros(peak_idx.size)
        for h in _steps(float(tops.max()), dh):
            k = int(np.count_nonzero(tops >= h))  # maps with a voxel still above h: a prefix
            if k == 0:  # the last step can exceed the top by _steps' rounding tolerance
                break
            lab, _ = ndimage.label(arr[:k] >= h, structure=st4)
            ext = np.bincount(lab.ravel()).astype(np.float64)
            ext[0] = 0
            w = ext**E * (h**H * dh)
            if return_maps:
                score[:k] += w[lab]
            else:
                live = peak_idx < k * sub.size
                peak_score[live] += w[lab.ravel()[peak_idx[live]]]
        if return_maps:
            maxima[rows] = score.reshape(b, -1).max(axis=1)
            maps[(rows, *crop)] = score
        elif peak_idx.size:
            best = np.zeros(b)
            np.maximum.at(best, peak_map, peak_score)
            maxima[rows] = best
    return (maxima, maps) if return_maps else maxima
