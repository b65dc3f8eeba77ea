"""Spatial phase unwrapping: Laplacian (STI Suite style) and exact quality-guided."""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ..dipole import fft_workers, kspace_grid


def _pad_even(a: np.ndarray, pad: int) -> tuple[np.ndarray, tuple[slice, ...]]:
    shape = tuple(n + (n % 2) + 2 * pad for n in a.shape)
    out = np.zeros(shape, dtype=np.float32)
    sl = tuple(slice(pad, pad + n) for n in a.shape)
    out[sl] = a
    return out, sl


def laplacian_unwrap(
    phase: np.ndarray, voxel_size, mask=None, pad: int = 12, workers=None
) -> np.ndarray:
    """Laplacian-based unwrapping [rad].

    ``lap(phi) = cos(phi) lap(sin phi) - sin(phi) lap(cos phi)`` and
    ``phi_u = lap^-1(lap(phi))``, with the Laplacian in k-space as ``k^2``
    (the same constant forward and inverse, so it cancels) and the inverse's DC set
    to 0. The phase is zeroed outside ``mask``; odd dimensions are padded to even,
    then ``pad`` voxels of zeros per side. The result equals the true phase up to a
    harmonic function (removed later by background-field removal), not exactly.

    phase : (X, Y, Z) wrapped phase [rad]. Returns float32 (X, Y, Z), 0 outside ``mask``.
    """
    ph = np.asarray(phase, dtype=np.float32)
    if mask is not None:
        ph = ph * mask
    p, sl = _pad_even(ph, pad)
    w = fft_workers(workers)
    kx, ky, kz = kspace_grid(p.shape, voxel_size)
    kz = kz[..., : p.shape[2] // 2 + 1]
    k2 = (kx * kx + ky * ky + kz * kz).astype(np.float32)

    def lap(f):
        return sfft.irfftn(sfft.rfftn(f, workers=w) * k2, s=p.shape, workers=w)

    s, c = np.sin(p), np.cos(p)
    lap_phi = c * lap(s) - s * lap(c)
    del s, c
    f = sfft.rfftn(lap_phi, workers=w)
    k2[0, 0, 0] = 1.0
    f /= k2
    f[0, 0, 0] = 0.0
    out = sfft.irfftn(f, s=p.shape, workers=w)[sl].astype(np.float32)
    if mask is not None:
        out *= mask
    return out


def path_unwrap(phase: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exact quality-guided unwrapping [rad] (reliability-sorted path following,
    Herraez et al. 2002, as in scikit-image's ``unwrap_phase``), within ``mask``.

    Unlike Laplacian unwrapping it changes the phase only by multiples of 2 pi.
    The overall 2 pi multiple is chosen so that the masked median lies in [-pi, pi).
    """
    from skimage.restoration import unwrap_phase

    ph = np.ma.masked_array(np.asarray(phase, dtype=np.float64), mask=~mask.astype(bool))
    un = unwrap_phase(ph, wrap_around=False)
    out = np.where(mask, un.filled(0.0), 0.0)
    k = np.round(np.median(out[mask]) / (2 * np.pi))
    out[mask] -= 2 * np.pi * k
    return out.astype(np.float32)
