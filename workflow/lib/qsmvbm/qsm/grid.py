"""Cropping to the brain and zero padding for FFT-based steps."""

from __future__ import annotations

import numpy as np

from ..dipole import padded_shape


def bbox_slices(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels (clipped to the array)."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        raise ValueError("empty mask")
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def crop_affine(affine: np.ndarray, slices: tuple[slice, ...]) -> np.ndarray:
    """The 4x4 voxel -> world affine of the crop ``array[slices]`` of an array with ``affine``."""
    aff = np.asarray(affine, float).copy()
    lo = np.array([s.start or 0 for s in slices[:3]])
    aff[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
    return aff


class Padded:
    """A crop of a volume to the brain's bounding box, zero-padded to a fast FFT shape.

    ``pad`` voxels are added on each side (then rounded up to fast FFT lengths).
    ``embed`` puts an array of the full shape into the padded grid; ``extract``
    returns a padded-grid array to the full shape (zeros outside the crop).
    """

    def __init__(self, mask: np.ndarray, pad: int = 16):
        self.full_shape = mask.shape
        self.crop = bbox_slices(mask)
        cshape = tuple(s.stop - s.start for s in self.crop)
        self.shape = padded_shape(cshape, pad)
        lo = [(p - c) // 2 for p, c in zip(self.shape, cshape)]
        self.inner = tuple(slice(b, b + c) for b, c in zip(lo, cshape))

    def embed(self, a: np.ndarray, dtype=np.float32) -> np.ndarray:
        out = np.zeros(self.shape, dtype=dtype)
        out[self.inner] = a[self.crop]
        return out

    def extract(self, a: np.ndarray, dtype=np.float32) -> np.ndarray:
        out = np.zeros(self.full_shape, dtype=dtype)
        out[self.crop] = a[self.inner]
        return out
