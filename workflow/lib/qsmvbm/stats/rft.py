"""Random field theory for peak-level FWE correction, as SPM12 does it.

- smoothness from standardized residuals (Kiebel et al. 1999; SPM ``spm_est_smoothness``):
  Lambda = (n/df) * mean_j(grad r_j grad r_j^T), r_j = e_j / sqrt(RSS/df); resels per voxel
  sqrt(det(Lambda) / (4 ln 2)^D); a global FWHM whose axis ratios follow mean(sqrt(diag Lambda))
  and whose product matches the mean resels per voxel;
- resel counts of a search volume from its voxel lattice (``spm_resels_vol``: points, edges, faces
  and cubes);
- Euler-characteristic densities of a t field (Worsley et al. 1996) and
  P_FWE(t) = 1 - exp(-sum_d R_d rho_d(t)), reported as min(P_RFT, Bonferroni) like SPM.

Units: FWHM in voxels unless stated (``fwhm_mm`` = FWHM x voxel size); resels are dimensionless.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

FOUR_LN2 = 4.0 * np.log(2.0)


class SmoothnessAccumulator:
    """Accumulate outer products of finite differences of standardized residual images.

    Parameters
    ----------
    mask : (X, Y, Z) bool analysis mask.
    n, df : number of images and residual degrees of freedom of the model.

    Derivatives are forward differences; a voxel enters the estimate only if its three forward
    neighbours are in the mask (SPM drops edge voxels whose derivatives are undefined).
    """

    def __init__(self, mask: np.ndarray, n: int, df: int):
        self.mask = np.asarray(mask, bool)
        self.n, self.df = n, df
        valid = self.mask.copy()
        for ax in range(3):
            nb = np.zeros_like(valid)
            sl = [slice(None)] * 3
            sl[ax] = slice(0, -1)
            src = [slice(None)] * 3
            src[ax] = slice(1, None)
            nb[tuple(sl)] = self.mask[tuple(src)]
            valid &= nb
        self.valid = valid
        self.L = np.zeros((int(valid.sum()), 6))  # xx, yy, zz, xy, xz, yz
        self._count = 0

    def add(self, r: np.ndarray) -> None:
        """Add one standardized residual image ``r`` (X, Y, Z), unit variance over subjects."""
        r = np.asarray(r, dtype=np.float64)
        d = []
        for ax in range(3):
            g = np.zeros_like(r)
            sl = [slice(None)] * 3
            sl[ax] = slice(0, -1)
            hi = [slice(None)] * 3
            hi[ax] = slice(1, None)
            g[tuple(sl)] = r[tuple(hi)] - r[tuple(sl)]
            d.append(g[self.valid])
        dx, dy, dz = d
        self.L[:, 0] += dx * dx
        self.L[:, 1] += dy * dy
        self.L[:, 2] += dz * dz
        self.L[:, 3] += dx * dy
        self.L[:, 4] += dx * dz
        self.L[:, 5] += dy * dz
        self._count += 1

    def estimate(self) -> dict:
        """Global FWHM (voxels, per axis) and mean resels per voxel."""
        if self._count == 0 or len(self.L) == 0:
            raise ValueError("no residual images or no interior voxels for the smoothness estimate")
        L = self.L / self._count * (self.n / self.df)
        xx, yy, zz, xy, xz, yz = L.T
        det = xx * yy * zz + 2 * xy * yz * xz - xx * yz * yz - xy * xy * zz - xz * yy * xz
        det = np.maximum(det, 0.0)
        rpv = np.sqrt(det / FOUR_LN2**3)
        resel_xyz = np.sqrt(np.stack([xx, yy, zz], axis=1) / FOUR_LN2).mean(axis=0)
        rpv_mean = float(rpv.mean())
        resel = rpv_mean ** (1 / 3) * resel_xyz / np.prod(resel_xyz) ** (1 / 3)
        fwhm = 1.0 / resel
        return {"fwhm_vox": fwhm, "resels_per_voxel": rpv_mean, "n_voxels_used": int(len(L))}


def estimate_smoothness(residual_images, mask: np.ndarray, n: int, df: int) -> dict:
    """FWHM (voxels) of standardized residual images (iterable of (X, Y, Z) arrays)."""
    acc = SmoothnessAccumulator(mask, n, df)
    for r in residual_images:
        acc.add(r)
    return acc.estimate()


def _lattice_counts(mask: np.ndarray) -> dict:
    """Points, edges, faces and cubes of the voxel lattice of ``mask`` (all corners in the mask)."""
    m = np.pad(np.asarray(mask, bool), 1)
    x0, x1 = m[:-1, :, :], m[1:, :, :]
    ex = x0 & x1
    ey = m[:, :-1, :] & m[:, 1:, :]
    ez = m[:, :, :-1] & m[:, :, 1:]
    fxy = ex[:, :-1, :] & ex[:, 1:, :]
    fxz = ex[:, :, :-1] & ex[:, :, 1:]
    fyz = ey[:, :, :-1] & ey[:, :, 1:]
    c = fxy[:, :, :-1] & fxy[:, :, 1:]
    return {
        "P": int(m.sum()),
        "Ex": int(ex.sum()),
        "Ey": int(ey.sum()),
        "Ez": int(ez.sum()),
        "Fxy": int(fxy.sum()),
        "Fxz": int(fxz.sum()),
        "Fyz": int(fyz.sum()),
        "C": int(c.sum()),
    }


def resel_counts(mask: np.ndarray, fwhm_vox) -> np.ndarray:
    """Resel counts R0..R3 of a search volume (SPM ``spm_resels_vol``).

    Parameters
    ----------
    mask : (X, Y, Z) bool search volume.
    fwhm_vox : FWHM per axis in voxels.

    Returns
    -------
    (4,) float64: R0 (Euler characteristic), R1, R2, R3 (resels).
    """
    k = _lattice_counts(mask)
    rx, ry, rz = 1.0 / np.asarray(fwhm_vox, dtype=np.float64)
    P, Ex, Ey, Ez, Fxy, Fxz, Fyz, C = (
        k[s] for s in ("P", "Ex", "Ey", "Ez", "Fxy", "Fxz", "Fyz", "C")
    )
    R0 = P - (Ex + Ey + Ez) + (Fxy + Fxz + Fyz) - C
    R1 = (Ex - Fxy - Fxz + C) * rx + (Ey - Fxy - Fyz + C) * ry + (Ez - Fxz - Fyz + C) * rz
    R2 = (Fxy - C) * rx * ry + (Fxz - C) * rx * rz + (Fyz - C) * ry * rz
    R3 = C * rx * ry * rz
    return np.array([R0, R1, R2, R3], dtype=np.float64)


def ec_densities_t(t, df: float) -> np.ndarray:
    """EC densities rho_0..rho_3 (per resel^d) of a t field with ``df`` degrees of freedom.

    ``t`` scalar or (m,) array -> (4, m) array.
    """
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    v = float(df)
    a = FOUR_LN2
    c = (1.0 + t * t / v) ** (-(v - 1.0) / 2.0)
    rho0 = stats.t.sf(t, v)
    rho1 = np.sqrt(a) / (2 * np.pi) * c
    g = np.exp(special.gammaln((v + 1) / 2) - special.gammaln(v / 2)) / np.sqrt(v / 2)
    rho2 = a / (2 * np.pi) ** 1.5 * c * t * g
    rho3 = a**1.5 / (2 * np.pi) ** 2 * c * ((v - 1) * t * t / v - 1.0)
    return np.vstack([rho0, rho1, rho2, rho3])


def p_fwe_rft(t, df: float, resels: np.ndarray) -> np.ndarray:
    """Peak-level FWE p-value of height ``t`` by random field theory (no Bonferroni bound)."""
    ec = np.asarray(resels, dtype=np.float64) @ ec_densities_t(t, df)
    return np.clip(1.0 - np.exp(-ec), 0.0, 1.0)


def p_fwe_peak(t, df: float, resels: np.ndarray, n_voxels: int) -> np.ndarray:
    """SPM's corrected peak p: min(RFT, Bonferroni over the ``n_voxels`` of the search volume)."""
    p_unc = stats.t.sf(np.atleast_1d(np.asarray(t, dtype=np.float64)), df)
    return np.minimum(p_fwe_rft(t, df, resels), np.minimum(1.0, p_unc * n_voxels))


def t_threshold(p_unc: float, df: float) -> float:
    """One-sided t height for an uncorrected p (e.g. 0.005 -> cluster-forming threshold)."""
    return float(stats.t.isf(p_unc, df))
