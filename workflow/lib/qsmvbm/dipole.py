"""The magnetic dipole model: kernel, B0 direction and forward field.

Conventions: susceptibility ``chi`` in ppm (SI, relative to a reference), fields
in ppm of B0, voxel sizes in mm, the B0 direction as a unit vector in the
voxel axes of the array (taken from the NIfTI affine for oblique slabs).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft


def fft_workers(workers: int | None = None) -> int:
    """Worker count for scipy.fft: ``workers`` or $QSMVBM_THREADS or the CPU count."""
    if workers:
        return int(workers)
    env = os.environ.get("QSMVBM_THREADS")
    return int(env) if env else (os.cpu_count() or 1)


def b0_direction_from_affine(affine: np.ndarray, b0_world=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Unit B0 direction in the voxel axes of an image.

    ``affine`` (4x4) maps voxel indices to scanner (RAS) mm; the main field is
    along scanner z. For an affine ``A = R @ diag(voxel_size)`` with ``R``
    orthonormal (rotations and flips), the B0 direction in voxel axes is
    ``R.T @ z``. Shears are not supported (raises ``ValueError``).
    """
    m = np.asarray(affine, dtype=float)[:3, :3]
    vs = np.linalg.norm(m, axis=0)
    r = m / vs
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-3):
        raise ValueError("affine has a shear: the B0 direction in voxel axes is undefined")
    b = r.T @ np.asarray(b0_world, dtype=float)
    return b / np.linalg.norm(b)


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) from a 4x4 affine: the column norms of its 3x3 part."""
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def kspace_grid(shape, voxel_size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spatial frequencies (cycles/mm) along each axis, broadcastable to ``shape``."""
    ks = []
    for ax, (n, d) in enumerate(zip(shape, voxel_size)):
        k = sfft.fftfreq(n, d=float(d)).astype(np.float32)
        sh = [1, 1, 1]
        sh[ax] = n
        ks.append(k.reshape(sh))
    return ks[0], ks[1], ks[2]


def dipole_kernel(shape, voxel_size=(1.0, 1.0, 1.0), b0_dir=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Unit dipole response in k-space, ``D(k) = 1/3 - (k.b)^2 / |k|^2``, ``D(0) = 0``.

    Parameters
    ----------
    shape : 3-tuple, the (padded) grid shape.
    voxel_size : mm per voxel along each array axis.
    b0_dir : B0 direction in voxel axes (normalised here).

    Returns a float32 array of ``shape`` in FFT order (DC at index 0).
    """
    b = np.asarray(b0_dir, dtype=np.float64)
    b = (b / np.linalg.norm(b)).astype(np.float32)
    kx, ky, kz = kspace_grid(shape, voxel_size)
    k2 = kx * kx + ky * ky + kz * kz
    kb = kx * b[0] + ky * b[1] + kz * b[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.float32(1.0 / 3.0) - kb * kb / k2
    d[0, 0, 0] = 0.0
    return d.astype(np.float32, copy=False)


def padded_shape(shape, pad) -> tuple[int, ...]:
    """Shape after adding ``pad`` voxels per side, rounded up to a fast FFT length."""
    if np.isscalar(pad):
        pad = (pad,) * len(shape)
    return tuple(sfft.next_fast_len(int(n + 2 * p), real=True) for n, p in zip(shape, pad))


def pad_to(a: np.ndarray, shape) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero-pad ``a`` centrally to ``shape``; returns the array and the slices that crop it back."""
    out = np.zeros(shape, dtype=a.dtype)
    lo = [(s - n) // 2 for s, n in zip(shape, a.shape)]
    sl = tuple(slice(b, b + n) for b, n in zip(lo, a.shape))
    out[sl] = a
    return out, sl


def forward_field(
    chi: np.ndarray,
    voxel_size=(1.0, 1.0, 1.0),
    b0_dir=(0.0, 0.0, 1.0),
    pad=None,
    workers: int | None = None,
) -> np.ndarray:
    """Field perturbation (ppm of B0) of a susceptibility distribution ``chi`` (ppm).

    ``field = IFFT(D * FFT(chi))`` on a grid zero-padded by ``pad`` voxels per
    side (default: half the array size, which keeps the periodic images far
    enough away that wrap-around is negligible). Output has ``chi``'s shape, float32.
    """
    chi = np.asarray(chi, dtype=np.float32)
    if pad is None:
        pad = tuple(n // 2 for n in chi.shape)
    pshape = padded_shape(chi.shape, pad)
    big, sl = pad_to(chi, pshape)
    d = dipole_kernel(pshape, voxel_size, b0_dir)
    w = fft_workers(workers)
    f = sfft.rfftn(big, workers=w)
    f *= d[..., : f.shape[-1]]
    out = sfft.irfftn(f, s=pshape, workers=w)
    return np.ascontiguousarray(out[sl], dtype=np.float32)
