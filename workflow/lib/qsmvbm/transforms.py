"""Spatial transforms: rotations, affines, diffeomorphic deformations, resampling.

All coordinates are in mm (world / scanner RAS) unless a name says ``vox``.
Images are sampled by *pulling*: for each output voxel we compute where it comes
from and interpolate there (``scipy.ndimage.map_coordinates``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def rotation_matrix(angles_deg) -> np.ndarray:
    """3x3 rotation from angles (degrees) about x, y then z (applied in that order)."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine_matrix(linear: np.ndarray, translation) -> np.ndarray:
    """4x4 homogeneous matrix from a 3x3 linear part and a translation (mm)."""
    m = np.eye(4)
    m[:3, :3] = linear
    m[:3, 3] = translation
    return m


def grid_affine(shape, voxel_size, center_mm, rotation=None) -> np.ndarray:
    """Voxel->world affine of a grid of ``shape`` whose centre sits at ``center_mm``.

    The grid's axes are the columns of ``rotation`` (3x3; default identity: RAS-oriented).
    """
    lin = np.asarray(np.eye(3) if rotation is None else rotation, dtype=float) @ np.diag(
        np.asarray(voxel_size, dtype=float)
    )
    centre_vox = (np.asarray(shape, dtype=float) - 1) / 2
    t = np.asarray(center_mm, dtype=float) - lin @ centre_vox
    return affine_matrix(lin, t)


def voxel_axis_along(affine: np.ndarray, world_axis: int) -> int:
    """Index of the voxel axis of ``affine`` (voxel -> mm) that runs closest to the world axis
    ``world_axis`` (0 x left-right, 1 y, 2 z inferior-superior), whatever the voxel sizes."""
    lin = np.asarray(affine, float)[:3, :3]
    return int(np.argmax(np.abs(lin[world_axis]) / np.linalg.norm(lin, axis=0)))


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to points of shape (..., 3)."""
    return pts @ m[:3, :3].T + m[:3, 3]


def world_coords(shape, affine: np.ndarray, dtype=np.float32) -> np.ndarray:
    """World coordinates (mm) of every voxel of a grid: array of shape (3, X, Y, Z)."""
    idx = [np.arange(n, dtype=np.float64) for n in shape]
    out = np.empty((3, *shape), dtype=dtype)
    a = affine[:3, :3]
    t = affine[:3, 3]
    for r in range(3):
        out[r] = (
            a[r, 0] * idx[0][:, None, None]
            + a[r, 1] * idx[1][None, :, None]
            + a[r, 2] * idx[2][None, None, :]
            + t[r]
        )
    return out


def sample(
    image: np.ndarray,
    image_affine: np.ndarray,
    coords_mm: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
    output=np.float32,
) -> np.ndarray:
    """Interpolate ``image`` at world points ``coords_mm`` (3, ...) -> array (...).

    ``order`` 0 = nearest (labels), 1 = trilinear, 3 = cubic spline. Points
    outside the image take ``cval``.
    """
    inv = np.linalg.inv(image_affine)
    vox = np.empty(coords_mm.shape, dtype=np.float32)
    for r in range(3):
        vox[r] = (
            inv[r, 0] * coords_mm[0]
            + inv[r, 1] * coords_mm[1]
            + inv[r, 2] * coords_mm[2]
            + inv[r, 3]
        )
    return ndimage.map_coordinates(
        image, vox, order=order, mode="constant", cval=cval, output=output, prefilter=order > 1
    )


class StationaryVelocityDeformation:
    """A smooth diffeomorphism ``psi(y) = y + u(y)``, the exponential of a velocity field.

    The velocity is Gaussian-smoothed white noise on a coarse grid of spacing
    ``spacing_mm`` covering ``bbox_mm``, scaled so its largest magnitude is
    ``max_velocity_mm``; the displacement ``u`` is obtained by scaling and
    squaring (``n_steps`` squarings), which keeps the map invertible.

    Parameters
    ----------
    rng : numpy Generator. bbox_mm : ((xmin, ymin, zmin), (xmax, ymax, zmax)).
    max_velocity_mm : peak velocity (about the peak displacement), mm.
    smoothness_mm : Gaussian sigma of the velocity field, mm.
    """

    def __init__(
        self, rng, bbox_mm, max_velocity_mm=4.0, smoothness_mm=20.0, spacing_mm=4.0, n_steps=6
    ):
        lo = np.asarray(bbox_mm[0], dtype=float)
        hi = np.asarray(bbox_mm[1], dtype=float)
        shape = tuple(int(np.ceil((h - b) / spacing_mm)) + 1 for b, h in zip(lo, hi))
        self.affine = affine_matrix(np.eye(3) * spacing_mm, lo)
        self.spacing = float(spacing_mm)
        v = rng.standard_normal((3, *shape))
        sigma = smoothness_mm / spacing_mm
        v = np.stack([ndimage.gaussian_filter(c, sigma, mode="nearest") for c in v])
        peak = np.sqrt((v**2).sum(0)).max()
        v *= max_velocity_mm / peak if peak > 0 else 0.0
        # Scaling and squaring in voxel units of the coarse grid.
        u = v / self.spacing / 2**n_steps
        grid = np.indices(shape, dtype=float)
        for _ in range(n_steps):
            warped = np.stack(
                [ndimage.map_coordinates(c, grid + u, order=1, mode="nearest") for c in u]
            )
            u = u + warped
        self.disp_mm = (u * self.spacing).astype(np.float32)

    def __call__(self, pts_mm: np.ndarray) -> np.ndarray:
        """Map points (3, ...) in mm through ``psi``; returns an array of the same shape."""
        disp = np.stack(
            [sample(c, self.affine, pts_mm, order=1, cval=np.nan) for c in self.disp_mm]
        )
        # outside the velocity box the map is the identity
        disp = np.nan_to_num(disp, nan=0.0)
        return (pts_mm + disp).astype(np.float32)

    def min_jacobian(self) -> float:
        """Smallest Jacobian determinant of ``psi`` on its coarse grid (> 0 = diffeomorphic)."""
        return float(jacobian_determinant(self.disp_mm, self.spacing).min())


def jacobian_determinant(disp_mm: np.ndarray, spacing_mm) -> np.ndarray:
    """det(I + grad u) of a displacement field ``disp_mm`` (3, X, Y, Z) on a grid of ``spacing_mm``."""
    if np.isscalar(spacing_mm):
        spacing_mm = (spacing_mm,) * 3
    j = np.empty((3, 3, *disp_mm.shape[1:]), dtype=np.float64)
    for i in range(3):
        grads = np.gradient(disp_mm[i].astype(np.float64), *spacing_mm)
        for k in range(3):
            j[i, k] = grads[k] + (1.0 if i == k else 0.0)
    return (
        j[0, 0] * (j[1, 1] * j[2, 2] - j[1, 2] * j[2, 1])
        - j[0, 1] * (j[1, 0] * j[2, 2] - j[1, 2] * j[2, 0])
        + j[0, 2] * (j[1, 0] * j[2, 1] - j[1, 1] * j[2, 0])
    )
