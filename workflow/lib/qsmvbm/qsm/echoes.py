"""Echo combination: nonlinear complex fit and weighted least squares over unwrapped echoes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def equally_spaced(te_s, rtol: float = 1e-3) -> bool:
    """True when the echo times [s] are equally spaced (relative tolerance ``rtol``)."""
    d = np.diff(np.asarray(te_s, dtype=float))
    return d.size > 0 and bool(np.allclose(d, d[0], rtol=rtol))


def check_uniform_echoes(te_s, rtol: float = 1e-3) -> float:
    """Echo spacing [s] of equally spaced echoes; raises ValueError otherwise."""
    te = np.asarray(te_s, dtype=float)
    if te.size < 2:
        raise ValueError("at least two echoes are needed to estimate a field")
    d = np.diff(te)
    if not np.allclose(d, d[0], rtol=rtol):
        raise ValueError(f"echo times {te.tolist()} are not equally spaced: use combination 'wls'")
    return float(d[0])


def complex_noise_variance(s: np.ndarray, mask: np.ndarray) -> float:
    """Variance of complex white noise in image ``s`` (X, Y, Z), estimated in ``mask``: the median of
    ``|s - mean of its 6 neighbours|^2`` (exponentially distributed for complex Gaussian noise, so
    median = ln 2 x mean), over the 7/6 that the neighbour mean adds. Smooth signal cancels; edges
    and vessels only reach the upper tail that the median ignores. Same units as ``s`` squared."""
    s = np.asarray(s, np.complex64)
    nb = np.zeros_like(s)
    for ax in range(3):
        nb += np.roll(s, 1, ax) + np.roll(s, -1, ax)
    inner = ndimage.binary_erosion(mask, iterations=1)
    r2 = np.abs(s - nb / 6)[inner if inner.any() else mask] ** 2
    return float(np.median(r2) / np.log(2) / (7 / 6))


def fit_complex(
    mag: np.ndarray, phase: np.ndarray, mask: np.ndarray, max_iter: int = 30, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Nonlinear complex fit of ``S_n = |S_n| exp(i (p0 + n p1))`` (MEDI ``Fit_ppm_complex``-style).

    Gauss-Newton on the complex residual, magnitude-weighted through the model,
    started from the magnitude-weighted mean phase difference of adjacent echoes;
    stops when ``||dp1|| < tol ||p1||`` or after ``max_iter`` iterations.

    Parameters
    ----------
    mag, phase : (X, Y, Z, E) magnitude and wrapped phase [rad], equally spaced echoes.
    mask : (X, Y, Z) bool; voxels outside are returned as 0.

    Returns
    -------
    p1 : field as phase per echo spacing [rad], wrapped into (-pi, pi] (needs spatial unwrapping).
    p0 : phase offset at the first echo [rad].
    n_std : standard error of ``p1`` [rad] from the fit residual (a noise map usable as data weight).
    iterations : Gauss-Newton iterations run.
    """
    m = mask.astype(bool)
    s = (mag[m] * np.exp(1j * phase[m])).astype(np.complex64)  # (N, E)
    amp = np.abs(s)
    n_e = s.shape[1]
    n = np.arange(n_e, dtype=np.float32)
    # start: weighted mean phase step between adjacent echoes, then the matching offset
    p1 = np.angle((s[:, 1:] * np.conj(s[:, :-1])).sum(1)).astype(np.float32)
    p0 = np.angle((s * np.exp(-1j * n[None, :] * p1[:, None])).sum(1)).astype(np.float32)
    a2 = amp * amp
    a11 = a2.sum(1)
    a12 = (a2 * n).sum(1)
    a22 = (a2 * n * n).sum(1)
    det = np.maximum(a11 * a22 - a12 * a12, 1e-20)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported after the loop)
        model = amp * np.exp(1j * (p0[:, None] + n[None, :] * p1[:, None]))
        r = s - model
        g = np.real(np.conj(1j * model) * r)  # (N, E)
        b1 = g.sum(1)
        b2 = (g * n).sum(1)
        dp0 = (a22 * b1 - a12 * b2) / det
        dp1 = (a11 * b2 - a12 * b1) / det
        p0 += dp0
        p1 += dp1
        if np.linalg.norm(dp1) < tol * max(np.linalg.norm(p1), 1e-12):
            break
    model = amp * np.exp(1j * (p0[:, None] + n[None, :] * p1[:, None]))
    # The model's amplitude is the measured magnitude, which absorbs the radial noise:
    # the residual is tangential only, with E - 2 degrees of freedom (p0, p1).
    if n_e > 2:
        sigma2 = (np.abs(s - model) ** 2).sum(1) / (n_e - 2)
    else:
        # two echoes are fitted exactly (no residual): the noise of p1 follows from the magnitudes
        # (Cramer-Rao: var = sigma^2 (1/|S1|^2 + 1/|S2|^2), which a11/det is) with sigma^2 the noise
        # variance per component (tangential), half the complex noise variance estimated from the
        # first echo (:func:`complex_noise_variance`)
        sigma2 = complex_noise_variance(mag[..., 0] * np.exp(1j * phase[..., 0]), m) / 2
    se = np.sqrt(sigma2 * a11 / det)
    out = [np.zeros(mask.shape, np.float32) for _ in range(3)]
    out[0][m] = np.angle(np.exp(1j * p1))
    out[1][m] = np.angle(np.exp(1j * p0))
    out[2][m] = se
    return out[0], out[1], out[2], it


def fit_wls(
    unwrapped: np.ndarray, te_s, mask: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares line through unwrapped echo phases: ``phi_n = p0 + omega * TE_n``.

    Parameters
    ----------
    unwrapped : (X, Y, Z, E) spatially unwrapped phase [rad].
    te_s : (E,) echo times [s]. weights : (X, Y, Z, E), e.g. ``|M|^2`` (default uniform).

    Returns ``omega`` [rad/s], ``p0`` [rad] and the standard error of ``omega`` [rad/s]
    (from the weighted residual, ``E - 2`` degrees of freedom), 0 outside ``mask``.
    """
    m = mask.astype(bool)
    y = unwrapped[m].astype(np.float64)
    w = np.ones_like(y) if weights is None else weights[m].astype(np.float64)
    t = np.asarray(te_s, dtype=np.float64)[None, :]
    sw = w.sum(1)
    tm = (w * t).sum(1) / sw
    ym = (w * y).sum(1) / sw
    stt = np.maximum((w * (t - tm[:, None]) ** 2).sum(1), 1e-30)
    omega = (w * (t - tm[:, None]) * (y - ym[:, None])).sum(1) / stt
    p0 = ym - omega * tm
    dof = max(y.shape[1] - 2, 1)
    res = y - (p0[:, None] + omega[:, None] * t)
    sigma2 = (w * res * res).sum(1) / sw * (y.shape[1] / dof)
    se = np.sqrt(sigma2 * sw / y.shape[1] / stt)
    out = [np.zeros(mask.shape, np.float32) for _ in range(3)]
    out[0][m], out[1][m], out[2][m] = omega, p0, se
    return out[0], out[1], out[2]


def align_echo_offsets(unwrapped: np.ndarray, te_s, mask: np.ndarray) -> np.ndarray:
    """Remove per-echo global 2 pi offsets left by unwrapping each echo on its own.

    Echo 2's offset is set so that the echo-1-to-2 difference matches its wrapped value
    in the median; each later echo's so that it matches the line through echoes 1 and 2.
    """
    te = np.asarray(te_s, dtype=float)
    out = unwrapped.copy()
    m = mask.astype(bool)
    two_pi = 2 * np.pi
    d = out[..., 1][m] - out[..., 0][m]
    k = np.round(np.median(d - np.angle(np.exp(1j * d))) / two_pi)
    out[..., 1][m] -= two_pi * k
    slope = (out[..., 1][m] - out[..., 0][m]) / (te[1] - te[0])
    for e in range(2, out.shape[-1]):
        pred = out[..., 0][m] + slope * (te[e] - te[0])
        k = np.round(np.median(out[..., e][m] - pred) / two_pi)
        out[..., e][m] -= two_pi * k
    return out


def r2star_loglinear(mag: np.ndarray, te_s, mask: np.ndarray) -> np.ndarray:
    """R2* [1/s] from a magnitude-weighted log-linear fit over echoes (0 outside ``mask``)."""
    m = mask.astype(bool)
    a = np.maximum(mag[m].astype(np.float64), 1e-6)
    w = a * a
    y = np.log(a)
    t = np.asarray(te_s, dtype=np.float64)[None, :]
    sw = w.sum(1)
    tm = (w * t).sum(1) / sw
    ym = (w * y).sum(1) / sw
    slope = (w * (t - tm[:, None]) * (y - ym[:, None])).sum(1) / np.maximum(
        (w * (t - tm[:, None]) ** 2).sum(1), 1e-30
    )
    out = np.zeros(mask.shape, np.float32)
    out[m] = np.clip(-slope, 0, 1000)
    return out
