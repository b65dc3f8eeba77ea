"""Conversion between (numpy array, RAS affine) and ANTsImage (ITK, LPS physical space)."""

from __future__ import annotations

import numpy as np

LPS = np.diag([-1.0, -1.0, 1.0])


def to_ants(data: np.ndarray, affine: np.ndarray):
    """ANTsImage of a 3D array with a NIfTI (RAS) voxel->mm affine."""
    import ants

    a = np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    direction = LPS @ (a[:3, :3] / spacing)
    origin = LPS @ a[:3, 3]
    return ants.from_numpy(
        np.asarray(data, dtype=np.float32),
        origin=tuple(origin),
        spacing=tuple(spacing),
        direction=direction,
    )


def from_ants(img) -> tuple[np.ndarray, np.ndarray]:
    """(array, RAS affine) of an ANTsImage."""
    direction = np.asarray(img.direction).reshape(3, 3)
    spacing = np.asarray(img.spacing)
    aff = np.eye(4)
    aff[:3, :3] = LPS @ direction @ np.diag(spacing)
    aff[:3, 3] = LPS @ np.asarray(img.origin)
    return img.numpy(), aff


def load_ants(path):
    """A NIfTI file as a float32 ANTsImage (world geometry from its affine)."""
    import nibabel as nib

    img = nib.load(path)
    return to_ants(img.get_fdata(dtype=np.float32), img.affine)
