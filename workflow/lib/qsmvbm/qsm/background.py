"""Background-field removal: V-SHARP (default) and PDF."""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.sparse.linalg import LinearOperator, cg

from ..dipole import dipole_kernel, fft_workers
from .grid import Padded


def smv_kernel_k(shape, voxel_size, radius_mm: float, workers=None) -> np.ndarray:
    """k-space (rfft layout) of the normalised spherical-mean-value kernel of ``radius_mm``.

    The sphere is sampled on the voxel grid (ellipsoid in index space for
    anisotropic voxels) around index 0 with wrap-around, and normalised to sum 1,
    so the result is real and even. Returns float32 of the rfftn shape.
    """
    idx = [
        np.fft.fftfreq(n, 1.0 / n).astype(np.float32) * float(d) for n, d in zip(shape, voxel_size)
    ]
    x, y, z = np.meshgrid(*idx, indexing="ij", sparse=True)
    sphere = ((x * x + y * y + z * z) <= radius_mm * radius_mm).astype(np.float32)
    sphere /= sphere.sum()
    return np.real(sfft.rfftn(sphere, workers=fft_workers(workers))).astype(np.float32)


def default_radii(voxel_size, r_max_mm: float = 12.0) -> list[float]:
    """V-SHARP radii [mm]: from ``r_max_mm`` down to the largest voxel dimension, step one voxel."""
    step = float(max(voxel_size))
    radii = list(np.arange(r_max_mm, step - 1e-6, -step))
    return [float(r) for r in radii] or [step]


def vsharp(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size,
    radii_mm=None,
    tsvd: float = 0.05,
    workers=None,
) -> tuple[np.ndarray, np.ndarray]:
    """V-SHARP: variable-radius sophisticated harmonic artifact reduction.

    For each radius ``r`` (largest first), ``local_r = field - SMV_r * field``; a voxel
    takes ``local_r`` of the largest radius whose sphere fits in the mask
    (``SMV_r * mask = 1``). The result is deconvolved with ``1 / (1 - S_rmax)`` in
    k-space, zeroed where ``|1 - S_rmax| < tsvd`` (truncated SVD).

    field : (X, Y, Z) unwrapped total field (any unit; the output has the same).
    mask : (X, Y, Z) bool. Returns (local field, eroded mask); local is 0 outside the mask.
    """
    radii = sorted(radii_mm or default_radii(voxel_size), reverse=True)
    pad = int(np.ceil(max(radii) / min(voxel_size))) + 2
    g = Padded(mask, pad=pad)
    w = fft_workers(workers)
    m = g.embed(mask.astype(np.float32))
    f = g.embed(field * mask)
    fk = sfft.rfftn(f, workers=w)
    mk = sfft.rfftn(m, workers=w)
    acc = np.zeros(g.shape, np.float32)
    done = np.zeros(g.shape, bool)
    s_max = None
    for r in radii:
        sk = smv_kernel_k(g.shape, voxel_size, r, workers=w)
        if s_max is None:
            s_max = sk
        inside = sfft.irfftn(sk * mk, s=g.shape, workers=w) > 0.999
        new = inside & ~done
        if new.any():
            local_r = sfft.irfftn((1.0 - sk) * fk, s=g.shape, workers=w)
            acc[new] = local_r[new]
            done |= new
    dk = 1.0 - s_max
    keep = np.abs(dk) >= tsvd
    ak = sfft.rfftn(acc * done, workers=w)
    ak[keep] /= dk[keep]
    ak[~keep] = 0
    local = sfft.irfftn(ak, s=g.shape, workers=w) * done
    return g.extract(local), g.extract(done.astype(np.float32)) > 0.5


def pdf(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size,
    b0_dir=(0, 0, 1),
    weights: np.ndarray | None = None,
    tol: float = 1e-3,
    max_iter: int = 50,
    pad: int = 40,
    workers=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Projection onto dipole fields (Liu et al. 2011).

    Fits the field inside ``mask`` with dipoles outside it,
    ``min_x || W (field - M_in D M_out x) ||^2`` by conjugate gradients on the
    normal equations, and returns ``field - M_in D M_out x`` in the mask.
    ``weights`` (e.g. 1 / noise SD) default to 1. Returns (local field, mask).
    """
    g = Padded(mask, pad=pad)
    w = fft_workers(workers)
    m_in = g.embed(mask.astype(np.float32)) > 0.5
    m_out = ~m_in
    d = dipole_kernel(g.shape, voxel_size, b0_dir)[..., : g.shape[2] // 2 + 1]
    wt = g.embed((weights if weights is not None else np.ones(mask.shape, np.float32)) * mask)
    wt2 = wt * wt
    f = g.embed(field * mask)

    def conv(x):
        return sfft.irfftn(sfft.rfftn(x, workers=w) * d, s=g.shape, workers=w)

    def normal(xv):
        x = np.zeros(g.shape, np.float32)
        x[m_out] = xv
        y = wt2 * conv(x) * m_in
        return conv(y)[m_out]

    n_out = int(m_out.sum())
    op = LinearOperator((n_out, n_out), matvec=normal, dtype=np.float32)
    rhs = conv(wt2 * f * m_in)[m_out]
    xv, _ = cg(op, rhs, rtol=tol, maxiter=max_iter)
    x = np.zeros(g.shape, np.float32)
    x[m_out] = xv
    local = (f - conv(x)) * m_in
    return g.extract(local), mask.astype(bool)
