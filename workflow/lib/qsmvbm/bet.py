"""Brain extraction by a deformable surface (BET; Smith 2002, Hum Brain Mapp 17:143).

A tessellated sphere, started inside the head at its centre of gravity, is moved vertex by vertex
for about a thousand iterations by three terms: a tangential term that keeps the vertices evenly
spread, a smoothness term along the normal that grows with the local curvature, and an intensity
term that pushes the surface outward while the image along the inward normal stays above a local
threshold (bright brain) and pulls it inward where it falls below (dark skull and CSF). The
threshold is set by the fractional intensity threshold ``f``: lower values give larger brains.

Works on any image in which the brain is brighter than the skull around it: a T1w, or the first-echo
magnitude of a GRE (what the reference study gave FSL BET). Positions are in mm along the voxel axes
(the affine's rotation is not needed: BET is rotation-invariant); intensities in any unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from .transforms import voxel_axis_along

#: BET's curvature limits (mm): the smoothness term is weak above RMAX, strong below RMIN
RMIN_MM, RMAX_MM = 3.33, 10.0
#: how far inward (mm) the intensity term looks for the local minimum (D1) and maximum (D2), starting
#: 1 mm inside the surface (FSL bet2's values; the paper gives 20 and 10 mm)
D1_MM, D2_MM = 7.0, 3.0
#: FSL bet2 maps the fractional threshold f to f ** F_POWER before use (0.5 -> 0.83)
F_POWER = 0.275
#: recovery passes with stronger smoothing when the surface folds onto itself
MAX_PASSES = 10


@lru_cache(maxsize=4)
def icosphere(subdivisions: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere tessellated from an icosahedron.

    Returns ``(vertices, faces)``: float (N, 3) on the unit sphere and int (M, 3), faces ordered so
    that their normals point outward. ``subdivisions=4`` gives 2,562 vertices and 5,120 faces.
    """
    p = (1 + 5**0.5) / 2
    v = [(-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0), (0, -1, p), (0, 1, p)]
    v += [(0, -1, -p), (0, 1, -p), (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4)]
    faces += [(11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8)]
    faces += [(3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.asarray(x, float) / np.linalg.norm(x) for x in v]
    for _ in range(subdivisions):
        mid: dict[tuple[int, int], int] = {}
        new = []
        for face in faces:
            corners = []
            for a, b in ((face[0], face[1]), (face[1], face[2]), (face[2], face[0])):
                key = (min(a, b), max(a, b))
                if key not in mid:
                    m = verts[a] + verts[b]
                    verts.append(m / np.linalg.norm(m))
                    mid[key] = len(verts) - 1
                corners.append(mid[key])
            (a, b, c), (ab, bc, ca) = face, corners
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    vertices, faces = np.array(verts), np.array(faces, dtype=np.int64)
    vertices.setflags(write=False)
    faces.setflags(write=False)
    return vertices, faces


def _neighbours(faces: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded neighbour table ``(idx (n, 6), valid (n, 6))`` of a closed triangle mesh."""
    sets: list[set[int]] = [set() for _ in range(n)]
    for a, b, c in faces:
        sets[a] |= {b, c}
        sets[b] |= {a, c}
        sets[c] |= {a, b}
    width = max(len(s) for s in sets)
    idx = np.zeros((n, width), dtype=np.int64)
    valid = np.zeros((n, width), dtype=bool)
    for i, s in enumerate(sets):
        idx[i, : len(s)] = sorted(s)
        valid[i, : len(s)] = True
    return idx, valid


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit outward normal of each vertex: the area-weighted mean of its faces' normals."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class BetStart:
    """Robust intensities and the starting sphere (BET's first step)."""

    t2: float  # 2nd percentile (intensity units)
    t98: float  # 98th percentile
    t: float  # brain/background threshold: t2 + 10 % of (t98 - t2)
    tm: float  # median within the starting sphere of radius ``radius_mm``
    centre_mm: np.ndarray  # centre of gravity, mm along the voxel axes
    radius_mm: float  # radius of a sphere holding the voxels above t


def robust_range(img: np.ndarray) -> tuple[float, float, float]:
    """BET's robust intensity range of an image: the 2nd and 98th percentiles of its non-zero voxels
    and the brain/background threshold ``t = t2 + 10 % of (t98 - t2)``."""
    nonzero = img[img > 0] if (img > 0).any() else img.ravel()
    t2, t98 = np.percentile(nonzero, [2, 98])
    return float(t2), float(t98), float(t2 + 0.1 * (t98 - t2))


def bet_start(image: np.ndarray, voxel_size) -> BetStart:
    """BET's robust intensity range, centre of gravity and head radius of ``image``.

    Percentiles over the non-zero voxels; centre of gravity of the voxels above ``t`` weighted by
    ``min(I - t2, t98 - t2)``; ``tm`` the median of the voxels between t2 and t98 within the sphere.
    """
    img = np.asarray(image, float)
    vs = np.asarray(voxel_size, float)
    t2, t98, t = robust_range(img)
    above = img > t
    w = np.where(above, np.minimum(img - t2, t98 - t2), 0.0)
    grid = np.indices(img.shape, dtype=float).reshape(3, -1)
    centre = (grid @ w.ravel()) / w.sum() * vs
    radius = (3 * above.sum() * np.prod(vs) / (4 * np.pi)) ** (1 / 3)
    d2 = sum(
        ((np.arange(n) * v - c) ** 2).reshape([-1 if i == k else 1 for i in range(3)])
        for k, (n, v, c) in enumerate(zip(img.shape, vs, centre))
    )
    tm = float(np.median(img[(img > t2) & (img < t98) & (d2 < radius**2)]))
    return BetStart(float(t2), float(t98), float(t), tm, centre, float(radius))


def _mean_edge(v: np.ndarray, nb: np.ndarray, valid: np.ndarray) -> float:
    return float(np.linalg.norm(v[nb] - v[:, None], axis=2)[valid].mean())


def folded(vertices: np.ndarray, nb: np.ndarray, valid: np.ndarray) -> bool:
    """Has the surface folded onto itself? True when two vertices that are not neighbours come
    closer than a quarter of the mean edge length (a fold or a self-intersection brings far-apart
    parts of the mesh together)."""
    from scipy.spatial import cKDTree

    lim = 0.25 * _mean_edge(vertices, nb, valid)
    pairs = cKDTree(vertices).query_pairs(lim, output_type="ndarray")
    if not len(pairs):
        return False
    is_nb = (nb[pairs[:, 0]] == pairs[:, 1:2]) & valid[pairs[:, 0]]
    return bool((~is_nb.any(1)).any())


def _evolve(img, vs, st: BetStart, v, faces, nb, valid, bt, smoothness, iterations, boost):
    """One BET pass: ``iterations`` updates of the vertices ``v`` (mm). ``boost`` > 1 strengthens the
    smoothing of concave vertices (a recovery pass), tapering to 1 over the last quarter."""
    count = valid.sum(1, keepdims=True)
    rmin, rmax = RMIN_MM * smoothness, RMAX_MM * smoothness
    e = (1 / rmin + 1 / rmax) / 2
    f = 6 / (1 / rmin - 1 / rmax)
    step = float(min(vs.min(), 1.0))
    depths = np.concatenate([[1.0, D1_MM - 1.0], np.arange(2.0, D1_MM, step)])
    near = np.concatenate([[True, False], np.arange(2.0, D1_MM, step) < D2_MM])
    upper = np.asarray(img.shape) - 1
    l_mean = _mean_edge(v, nb, valid)
    for it in range(iterations):
        n = vertex_normals(v, faces)
        s = (v[nb] * valid[..., None]).sum(1) / count - v
        sn_len = (s * n).sum(1)
        sn = sn_len[:, None] * n
        # curvature 1/r = 2 |s_n| / l^2 through a sigmoid: smoothing along the normal
        f2 = 0.5 * (1 + np.tanh(f * (2 * np.abs(sn_len) / l_mean**2 - e)))
        if boost > 1:
            inc = boost
            if it > 0.75 * iterations:
                inc = 4 * (1 - it / iterations) * (boost - 1) + 1
            f2 = np.where(sn_len > 0, np.minimum(f2 * inc, 1.0), f2)
        pts = (v[:, None, :] - depths[None, :, None] * n[:, None, :]) / vs
        vals = ndimage.map_coordinates(img, pts.reshape(-1, 3).T, order=1, mode="nearest")
        vals = vals.reshape(pts.shape[:2])
        inside = np.all((pts >= 0) & (pts <= upper), axis=2)
        ok = (
            inside[:, 0] & inside[:, 1]
        )  # bet2: no intensity force where the probe leaves the image
        i_min = np.maximum(st.t2, np.minimum(st.tm, np.where(inside, vals, np.inf).min(1)))
        i_max = np.minimum(st.tm, np.maximum(st.t, np.where(inside & near, vals, -np.inf).max(1)))
        tl = (i_max - st.t2) * bt + st.t2
        f3 = np.where(ok, 2 * (i_min - tl) / np.maximum(i_max - st.t2, 1e-12), 0.0)
        v = v + 0.5 * (s - sn) + f2[:, None] * sn + (0.05 * l_mean * f3)[:, None] * n
        if it % 100 == 0:
            l_mean = _mean_edge(v, nb, valid)
    return v


def bet_surface(
    image: np.ndarray,
    voxel_size,
    fractional_threshold: float = 0.5,
    iterations: int = 1000,
    subdivisions: int = 4,
    smoothness: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """BET's surface on ``image``.

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
        Brain brighter than the skull (T1w, GRE magnitude); any units.
    voxel_size : sequence of 3 floats (mm)
    fractional_threshold : float, default 0.5
        BET's ``f`` (0..1): smaller gives a larger brain outline.
    iterations : int, default 1000
    subdivisions : int, default 4
        Icosphere subdivisions (4: 2,562 vertices).
    smoothness : float, default 1.0
        Scales BET's curvature limits (3.33 and 10 mm), as bet2's smoothness factor: larger values
        give a smoother surface that follows sulci and leaks less.

    Returns
    -------
    vertices : ndarray, shape (N, 3)
        In mm along the voxel axes (voxel index times voxel size).
    faces : ndarray, shape (M, 3)

    Notes
    -----
    When the surface folds onto itself (:func:`folded`), the evolution is rerun from the sphere with
    the smoothing of concave vertices raised 100-fold, then 1,000-fold, and so on (as bet2 does).
    """
    img = np.asarray(image, np.float32)
    vs = np.asarray(voxel_size, float)
    st = bet_start(img, vs)
    unit, faces = icosphere(subdivisions)
    nb, valid = _neighbours(faces, len(unit))
    start = st.centre_mm + 0.5 * st.radius_mm * unit
    bt = float(fractional_threshold) ** F_POWER
    for p in range(MAX_PASSES + 1):
        boost = 1.0 if p == 0 else 10.0 ** (p + 1)
        v = _evolve(img, vs, st, start, faces, nb, valid, bt, smoothness, iterations, boost)
        if not folded(v, nb, valid):
            break
    return v, faces


def surface_to_mask(vertices: np.ndarray, faces: np.ndarray, shape, voxel_size) -> np.ndarray:
    """Voxels inside a closed surface (vertices in mm along the voxel axes): the surface drawn into
    the grid densely enough to be watertight, then its inside filled."""
    vs = np.asarray(voxel_size, float)
    tri = vertices[faces] / vs  # in voxels
    longest = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max()
    k = max(2, int(np.ceil(longest * 3)))
    a, b = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
    keep = a + b <= k
    w1, w2 = (a[keep] / k), (b[keep] / k)
    w0 = 1 - w1 - w2
    pts = (
        w0[None, :, None] * tri[:, None, 0]
        + w1[None, :, None] * tri[:, None, 1]
        + w2[None, :, None] * tri[:, None, 2]
    ).reshape(-1, 3)
    # parts of the surface beyond the field of view are drawn on its border, which closes the shell
    idx = np.clip(np.round(pts).astype(int), 0, np.asarray(shape) - 1)
    shell = np.zeros(shape, bool)
    shell[tuple(idx.T)] = True
    filled = ndimage.binary_fill_holes(shell)
    # a shell voxel belongs to the inside when its centre lies behind the nearest vertex's tangent plane
    from scipy.spatial import cKDTree

    centres = np.argwhere(shell) * vs
    _, near = cKDTree(vertices).query(centres)
    normals = vertex_normals(vertices, faces)
    outside = ((centres - vertices[near]) * normals[near]).sum(1) > 0
    filled[tuple(np.argwhere(shell)[outside].T)] = False
    return filled


def head_field_of_view(image: np.ndarray, affine: np.ndarray, keep_mm: float = 170.0) -> tuple:
    """Slices of ``image`` that keep the head from its top down ``keep_mm`` along the world's
    inferior-superior axis (as FSL's robustfov): the neck and shoulders of a large field of view
    drag BET's centre of gravity and radius down and let its surface leak, and they hold no brain.

    The top of the head is the most superior slice whose voxels above BET's threshold ``t`` cover at
    least 2 % of the largest such slice area. Returns a tuple of 3 slices (the whole image when the
    field of view is shorter than ``keep_mm``).
    """
    img = np.asarray(image, float)
    lin = np.asarray(affine, float)[:3, :3]
    axis = voxel_axis_along(affine, 2)
    step_mm = float(np.linalg.norm(lin[:, axis]))
    up = lin[2, axis] > 0  # index increases towards superior
    fg = img > robust_range(img)[2]
    if not fg.any():  # a constant image
        fg = img > 0
    area = fg.sum(axis=tuple(k for k in range(3) if k != axis))
    rows = np.flatnonzero(area >= 0.02 * area.max())
    keep = int(np.ceil(keep_mm / step_mm))
    out = [slice(None)] * 3
    if up:
        top = rows.max()
        out[axis] = slice(max(0, top + 1 - keep), img.shape[axis])
    else:
        top = rows.min()
        out[axis] = slice(0, min(img.shape[axis], top + keep))
    return tuple(out)


def bet_mask(
    image: np.ndarray,
    voxel_size,
    fractional_threshold: float = 0.5,
    iterations: int = 1000,
    smoothness: float = 1.0,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """BET brain mask (bool, the image's grid): :func:`bet_surface`, then :func:`surface_to_mask`.

    With ``affine`` (voxel -> mm, RAS), BET runs on :func:`head_field_of_view` (the neck cut off)
    and the mask is put back into the full grid.
    """
    img = np.asarray(image)
    fov = head_field_of_view(img, affine) if affine is not None else (slice(None),) * 3
    sub = img[fov]
    verts, faces = bet_surface(
        sub, voxel_size, fractional_threshold, iterations, smoothness=smoothness
    )
    mask = np.zeros(img.shape, bool)
    mask[fov] = surface_to_mask(verts, faces, sub.shape, voxel_size)
    return mask
