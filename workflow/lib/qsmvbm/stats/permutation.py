"""Permutation inference for the tested regressor of a GLM: Freedman-Lane, max-T.

Freedman & Lane (1983), as FSL randomise (Winkler et al. 2014): residuals of the reduced model
(nuisance only) are permuted and added back to its fitted values; the full model is refitted and the
t of the tested regressor recomputed. Because the fitted values of the reduced model lie in the span
of the design, the permuted t only depends on the permuted residuals, which gives a closed form:
with ``xr`` the tested regressor residualized on the nuisance ``Z`` and ``R`` the reduced-model
residuals, for permutation matrix P

    b = xr' P R / (xr' xr),      RSS = ||R||^2 - ||Qz' P R||^2 - (xr' P R)^2 / (xr' xr),

(``Qz`` an orthonormal basis of ``Z``), so a batch of permutations costs a few matrix products.
The first permutation is the identity (the observed data), so p >= 1 / n_perm.
"""

from __future__ import annotations

import numpy as np


def _prepare(Y: np.ndarray, x: np.ndarray, Z: np.ndarray):
    Y = np.asarray(Y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).ravel()
    Z = np.asarray(Z, dtype=np.float64).reshape(len(x), -1)
    Qz, _ = np.linalg.qr(Z)
    R = Y - Qz @ (Qz.T @ Y)
    xr = x - Qz @ (Qz.T @ x)
    # a constant basis vector q (the intercept) is permutation invariant, so q' P R = q' R = 0:
    # only the other nuisance directions need projecting in every permutation
    varying = Qz.std(axis=0) > 1e-12 * np.abs(Qz).max(axis=0)
    return R, xr, Qz[:, varying], Qz.shape[1]


def _t_batch(
    R: np.ndarray, rss_total: np.ndarray, xr: np.ndarray, Qz: np.ndarray, perms: np.ndarray, df: int
) -> np.ndarray:
    """t of the tested regressor for each permutation in ``perms`` (B, n) -> (B, V)."""
    xx = xr @ xr
    # P R for row-permutation index p is R[p]; xr' R[p] = (xr[argsort p])' R, same for Qz:
    # one matrix product for the tested regressor and the nuisance basis together
    inv = np.argsort(perms, axis=1)
    B, k = len(perms), Qz.shape[1]
    A = np.concatenate([xr[inv]] + [Qz[:, j][inv] for j in range(k)], axis=0)  # ((1+k) B, n)
    M = A @ R
    num = M[:B]  # (B, V): xr' P R
    proj2 = sum(M[B * (j + 1) : B * (j + 2)] ** 2 for j in range(k)) if k else 0.0
    rss = rss_total[None, :] - proj2 - num**2 / xx
    rss = np.maximum(rss, 1e-300)
    return (num / xx) / np.sqrt(rss / df / xx)


def permutation_maxt(
    Y: np.ndarray,
    x: np.ndarray,
    Z: np.ndarray,
    subsets: list[np.ndarray],
    n_perm: int = 5000,
    seed: int = 0,
    two_sided: bool = False,
    batch: int = 256,
    batch_stat=None,
    progress=None,
):
    """Observed t and the permutation distribution of max t within each subset of voxels.

    Parameters
    ----------
    Y : (n, V) data (subjects x voxels of all search volumes together).
    x : (n,) tested regressor.
    Z : (n, k) nuisance regressors including the intercept.
    subsets : list of (V,) bool arrays, one per search volume.
    n_perm : number of permutations including the identity.
    seed : random seed (numpy default_rng).
    two_sided : use |t| for the maxima.
    batch_stat : optional ``f(T) -> (B, m)``, more maximum statistics of each permuted t map
        ``T`` (B, V) (e.g. the maximum TFCE of each search volume); same permutations.
    progress : optional ``f(done, n_perm)``, called after each batch of ``batch`` permutations.

    Returns
    -------
    t_obs : (V,) observed t.
    max_null : (n_perm, n_subsets) max t in each subset for each permutation (row 0 = observed).
    extra_null : (n_perm, m) the ``batch_stat`` of each permutation; only when ``batch_stat``.
    """
    R, xr, Qz, k = _prepare(Y, x, Z)
    n = R.shape[0]
    df = n - k - 1
    rss_total = (R**2).sum(axis=0)
    rng = np.random.default_rng(seed)
    subsets = [np.asarray(s, bool) for s in subsets]
    max_null = np.empty((n_perm, len(subsets)))
    extra = [] if batch_stat is not None else None
    t_obs = None
    done = 0
    while done < n_perm:
        b = min(batch, n_perm - done)
        perms = np.array([rng.permutation(n) for _ in range(b)])
        if done == 0:
            perms[0] = np.arange(n)
        T = _t_batch(R, rss_total, xr, Qz, perms, df)
        if done == 0:
            t_obs = T[0].copy()
        if extra is not None:
            extra.append(np.asarray(batch_stat(T), np.float64).reshape(b, -1))
        if two_sided:
            T = np.abs(T)
        for j, s in enumerate(subsets):
            max_null[done : done + b, j] = T[:, s].max(axis=1) if s.any() else -np.inf
        done += b
        if progress is not None:
            progress(done, n_perm)
    if extra is not None:
        return t_obs, max_null, np.concatenate(extra, axis=0)
    return t_obs, max_null


def p_fwe_from_null(t: np.ndarray, max_null: np.ndarray) -> np.ndarray:
    """FWE p of heights ``t`` (m,) against a max-statistic null (n_perm,): (#{max >= t}) / n_perm."""
    t = np.atleast_1d(t)
    srt = np.sort(max_null)
    return (len(srt) - np.searchsorted(srt, t - 1e-10, side="left")) / len(srt)
