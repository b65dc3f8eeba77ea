"""Mass-univariate general linear model for two-group designs with covariates.

The model for every voxel v is ``y_v = x b_v + Z g_v + e_v`` with ``x`` the tested regressor (group
indicator, patient = 1) and ``Z`` the nuisance regressors (intercept and mean-centred covariates).
The tested contrast is the coefficient of ``x``; this t equals SPM's two-sample t for the contrast
[1 -1] of a cell-means design with the same covariates.

Data is streamed one subject (one image) at a time into sufficient statistics (``X'Y`` and ``Y'Y``),
so memory is O(p x voxels), independent of the number of subjects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def design_matrix(tested: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
    """Full design ``[x, 1, covariates (mean-centred)]``.

    Parameters
    ----------
    tested : (n,) tested regressor, e.g. 1 for patients and 0 for controls.
    covariates : (n, k) nuisance covariates (age in years, TIV in mL, sex as 0/1), or None.

    Returns
    -------
    (n, 2 + k) float64 design; column 0 is the tested regressor.
    """
    x = np.asarray(tested, dtype=np.float64).reshape(-1, 1)
    cols = [x, np.ones_like(x)]
    if covariates is not None and np.size(covariates):
        c = np.asarray(covariates, dtype=np.float64).reshape(len(x), -1)
        if not np.all(np.isfinite(c)):
            raise ValueError("covariates contain NaN or inf")
        cols.append(c - c.mean(axis=0))
    X = np.hstack(cols)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(
            "design matrix is rank deficient (a covariate is constant or collinear with group)"
        )
    return X


@dataclass
class GlmFit:
    """Voxelwise fit. ``beta`` (p, V); ``rss`` (V,); ``t`` (V,) for column 0; ``df`` = n - p."""

    beta: np.ndarray
    rss: np.ndarray
    t: np.ndarray
    df: int
    n: int
    xtx_inv: np.ndarray

    @property
    def sigma(self) -> np.ndarray:
        """Residual standard deviation per voxel (units of the data)."""
        return np.sqrt(self.rss / self.df)


class GlmAccumulator:
    """Stream subjects into ``X'Y`` and ``Y'Y``; ``fit()`` gives betas, RSS and the t of column 0.

    Values are centred on the first subject's image before accumulation, which keeps
    ``Y'Y - b'X'Y`` accurate in float64 (the model has an intercept, so this changes nothing else).
    """

    def __init__(self, X: np.ndarray, n_voxels: int):
        self.X = np.asarray(X, dtype=np.float64)
        self.n, self.p = self.X.shape
        self.xty = np.zeros((self.p, n_voxels))
        self.yty = np.zeros(n_voxels)
        self._shift = None
        self._seen = 0

    def add(self, i: int, y: np.ndarray) -> None:
        """Add subject ``i``'s data ``y`` (V,), in the row order of the design."""
        y = np.asarray(y, dtype=np.float64)
        if self._shift is None:
            self._shift = y.copy()
        yc = y - self._shift
        self.xty += np.outer(self.X[i], yc)
        self.yty += yc * yc
        self._seen += 1

    def fit(self) -> GlmFit:
        if self._seen != self.n:
            raise ValueError(f"{self._seen} subjects added, design has {self.n}")
        xtx_inv = np.linalg.inv(self.X.T @ self.X)
        beta = xtx_inv @ self.xty
        rss = np.maximum(self.yty - np.einsum("pv,pv->v", beta, self.xty), 0.0)
        df = self.n - self.p
        # undo the centring: only the intercept-like part changes; column 0 is unaffected
        shift_beta = np.linalg.lstsq(self.X, np.ones(self.n), rcond=None)[0]
        beta = beta + np.outer(shift_beta, self._shift)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.sqrt(rss / df * xtx_inv[0, 0])
            t = np.where(se > 0, beta[0] / se, 0.0)
        return GlmFit(beta=beta, rss=rss, t=t, df=df, n=self.n, xtx_inv=xtx_inv)


def fit_glm(Y: np.ndarray, X: np.ndarray) -> GlmFit:
    """Fit all voxels at once. ``Y`` (n, V), ``X`` (n, p) -> :class:`GlmFit`."""
    acc = GlmAccumulator(X, Y.shape[1])
    for i in range(Y.shape[0]):
        acc.add(i, Y[i])
    return acc.fit()


def residuals(y: np.ndarray, x_row: np.ndarray, fit: GlmFit) -> np.ndarray:
    """Residual of one subject (V,): ``y - x_row @ beta``."""
    return np.asarray(y, dtype=np.float64) - x_row @ fit.beta
