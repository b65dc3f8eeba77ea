"""Study power for the analysis actually run: Monte Carlo over group sizes and effect sizes.

A map-level model of a modality in one small volume, calibrated from a finished run (a simulated
cohort or a user's pilot study):

* the between-subject residual standard deviation of every voxel (``<modality>_residsd.nii.gz``,
  units of the data: ppm for QSM, GM probability for modulated GM),
* the smoothness of the residuals (the GLM's FWHM estimate, mm),
* ``survival``: the share of a true effect that reaches the template-space maps (QSM background
  removal and inversion, partial volume, normalization; measured end to end on the simulator).

Each simulated study draws ``n`` patients and ``n`` controls as stationary Gaussian noise of that
smoothness scaled by the SD map, adds ``survival x effect`` to the patients in a sphere, and runs the
project's own small-volume inference (:func:`qsmvbm.stats.voxelwise.voxelwise_svc`: clusters at
the cluster-forming threshold, RFT, permutation max-T and TFCE FWE p). RFT uses the model's
smoothness: the real analysis estimates it from the whole brain's residuals, far more precisely
than the residuals of a crop around the ROI would. An effect is detected when a
significant cluster of the ROI (by the method's rule, with the extent criterion) peaks within
``detect_mm`` of the sphere's centre (default: inside the sphere; with a uniform effect the peak
falls anywhere in it). Power is the detection rate, with Clopper-Pearson 95% bands.

The permutation nulls (max-T and TFCE) come either from each study's own ``n_perm`` permutations
(``null="per_study"``, the analysis exactly as run, slow: a 34 + 34 study with 500 permutations
takes seconds) or, by default, from one pooled null per group size (``null="pooled"``,
:func:`pooled_null`): ``n_perm`` permutations spread over ``null_studies`` null studies of the same
model. Every study of the model has the same null distribution of the maxima, so the pooled one is
the distribution each study's permutations estimate, without their Monte Carlo error; the studies
then run without permutations. The studies of one run share their noise across the effect sizes
(common random numbers), so the curves over the effect are smooth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import fft, ndimage, stats

from ..anat.normalize import FWHM_TO_SIGMA
from ..dipole import voxel_sizes
from ..qsm.grid import bbox_slices, crop_affine
from . import clusters as cl
from .glm import design_matrix
from .permutation import permutation_maxt
from .tfce import max_tfce_batch
from .voxelwise import SvcParams, is_significant, voxelwise_svc

METHODS = ("rft", "perm", "tfce")
NULLS = ("pooled", "per_study")


@dataclass
class PilotModel:
    """One modality in one ROI, on a crop of the template grid around the ROI.

    roi, mask : (X, Y, Z) bool, the ROI and the analysis mask on the crop.
    sd : (X, Y, Z) float, residual SD (units of the data); used where ``mask``.
    fwhm_mm : float or (3,) float, residual smoothness (mm). affine : 4x4 voxel -> MNI mm of the crop.
    basis : (k, X, Y, Z) float32 or None (default): the pilot's residuals as unit-variance images
        (:func:`residual_basis`); when given, the model's noise is drawn from them (each simulated
        map a random combination, with the pilot's spatial covariance in the crop: its local
        smoothness and any component shared over the ROI), not as stationary Gaussian noise of
        ``fwhm_mm``. RFT still uses ``fwhm_mm``, as the analysis does.
    """

    roi: np.ndarray
    mask: np.ndarray
    sd: np.ndarray
    fwhm_mm: np.ndarray
    affine: np.ndarray
    basis: np.ndarray | None = None

    @classmethod
    def from_maps(cls, roi, mask, sd, fwhm_mm, affine, margin: int = 6, basis=None) -> PilotModel:
        """Crop full-grid maps (and ``basis``, (k, X, Y, Z) on the same grid, or already cropped to
        this crop) to the ROI's bounding box grown by ``margin`` voxels."""
        roi = np.asarray(roi, bool)
        if not roi.any():
            raise ValueError("empty ROI")
        sl = bbox_slices(roi, margin)
        aff = crop_affine(affine, sl)
        mask = np.asarray(mask, bool)[sl] & (np.asarray(sd)[sl] > 0)
        sd_c = np.where(mask, np.asarray(sd, float)[sl], 0.0)
        if basis is not None:
            basis = np.asarray(basis, np.float32)
            if basis.shape[1:] == np.asarray(sd).shape:
                basis = basis[(slice(None), *sl)]
            if basis.shape[1:] != mask.shape:
                raise ValueError(f"basis shape {basis.shape[1:]} fits neither grid nor crop")
            basis = np.where(mask[None], basis, np.float32(0))
        return cls(roi[sl] & mask, mask, sd_c, np.asarray(fwhm_mm, float), aff, basis)

    @property
    def voxel_mm(self) -> np.ndarray:
        return voxel_sizes(self.affine)

    def effect_centre(self, centre_mm=None) -> np.ndarray:
        """An effect's centre (MNI mm): ``centre_mm`` when given, else :meth:`centroid_mm`."""
        return np.asarray(self.centroid_mm() if centre_mm is None else centre_mm, float)

    def centroid_mm(self) -> np.ndarray:
        """The ROI's centre of mass (MNI mm), moved to the nearest ROI voxel."""
        idx = np.argwhere(self.roi)
        c = idx.mean(axis=0)
        near = idx[np.argmin(((idx - c) ** 2).sum(axis=1))]
        return cl.vox_to_mm(near, self.affine)


def smooth_noise(rng, n: int, shape, fwhm_vox, chunk: int = 32) -> np.ndarray:
    """n images (n, X, Y, Z) float32 of unit-variance stationary Gaussian noise of smoothness
    ``fwhm_vox`` (voxels, scalar or per axis).

    White noise on a periodic grid larger than ``shape`` by 3 sqrt(2) (4.2) SDs of the Gaussian per axis
    (capped at the crop's size),
    filtered in the Fourier domain and cropped: the wrap-around correlation between opposite faces
    of the crop is at most exp(-4.5) = 1.1% of the peak. The variance is made exactly 1 by the
    discrete filter's power (the mean of its squared transfer function). In batches of ``chunk``
    images (memory about 12 bytes per padded voxel and image).
    """
    sigma = np.broadcast_to(np.asarray(fwhm_vox, float), (len(shape),)) / np.sqrt(8 * np.log(2))
    # the autocorrelation of the filtered noise is a Gaussian of SD sqrt(2) sigma; a margin of
    # 3 sqrt(2) sigma leaves exp(-(3 sqrt 2 sigma)^2 / (4 sigma^2)) = exp(-4.5) at the wrap
    # (at most the crop's own size: a field smoother than the crop is nearly constant over it, and
    # the grid stays bounded for any FWHM, e.g. a pilot of a few subjects with a degenerate estimate)
    pads = np.minimum(np.ceil(3 * np.sqrt(2) * np.minimum(sigma, 1e6)).astype(int) + 1, shape)
    # (grown to sizes whose FFT is fast: a larger periodic grid only moves the wrap further away)
    full = tuple(fft.next_fast_len(int(s + p), real=True) for s, p in zip(shape, pads))
    # the Gaussian's transfer function along each axis (even in the frequency, so the rfft half of
    # the last axis is its first m // 2 + 1 values); the variance of periodic filtering of unit
    # white noise is the mean of |H|^2 over the full spectrum, a product over the axes
    h = [np.exp(-0.5 * (2 * np.pi * np.fft.fftfreq(m) * sg) ** 2) for m, sg in zip(full, sigma)]
    power = np.prod([np.mean(hi * hi) for hi in h])
    h[-1] = h[-1][: full[-1] // 2 + 1]
    H = (h[0][:, None, None] * h[1][None, :, None] * h[2][None, None, :]) / np.sqrt(power)
    H = H.astype(np.complex64)
    inner = (slice(None), *(slice(0, s) for s in shape))
    out = np.empty((n, *shape), np.float32)
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        F = fft.rfftn(rng.standard_normal((k, *full), np.float32), axes=(1, 2, 3))
        F *= H
        out[start : start + k] = fft.irfftn(F, s=full, axes=(1, 2, 3))[inner]
    return out


def residual_basis(studies) -> np.ndarray:
    """Unit-variance noise images from pilot studies' GLM residuals.

    studies : iterable of (maps, X): maps (n, X, Y, Z) float, a study's analysed maps (units of the
        data), X (n, p) its design (:func:`qsmvbm.stats.glm.design_matrix`). Several studies of the
        same pipeline pool their residuals.

    Returns (k, X, Y, Z) float32, k the summed n: every study's residuals (Y - X beta), all divided
    voxelwise by the root of their summed squares, so that sum_j b_j^2 = 1 where any residual is
    not 0. A map ``g @ b`` with g standard normal then has unit variance and the residuals'
    spatial correlation (their sample correlation over the summed degrees of freedom).
    """
    res = []
    for maps, X in studies:
        Y = np.asarray(maps, np.float64)
        n = Y.shape[0]
        flat = Y.reshape(n, -1)
        beta, *_ = np.linalg.lstsq(np.asarray(X, float), flat, rcond=None)
        res.append((flat - np.asarray(X, float) @ beta).reshape(Y.shape))
    r = np.concatenate(res)
    norm = np.sqrt((r**2).sum(axis=0))
    return np.where(norm > 0, r / np.where(norm > 0, norm, 1.0), 0.0).astype(np.float32)


def _weighted_gram(maps: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """``G = Y diag(w^2) Y^T`` ((n, n) float64) of the maps ``Y`` (n, V) with the weight's square,
    and the weights' sum: every weighted residual sum of squares of any GLM of any resample of the
    subjects follows from it (:func:`_weighted_variance`), in O(n^2) instead of O(n V)."""
    w2 = np.asarray(weight, float).ravel() ** 2
    sel = w2 > 0
    if not sel.any():
        raise ValueError("the effect's weight is 0 everywhere")
    Y = np.asarray(maps, np.float64).reshape(len(maps), -1)[:, sel]
    return (Y * w2[sel]) @ Y.T, float(w2[sel].sum())


def _weighted_variance(G: np.ndarray, w2_sum: float, X: np.ndarray, rows=None) -> float:
    """The residual variance of the GLM of the subjects ``rows`` (default all; repeats allowed) on
    their design ``X[rows]``, averaged over the voxels with the weights of :func:`_weighted_gram`
    (its ``G``, ``w2_sum``): trace(M G[rows, rows]) / (sum w^2 df), M = I - X X^+ (units of the
    data squared)."""
    rows = np.arange(len(G)) if rows is None else np.asarray(rows)
    Xr = X[rows]
    M = np.eye(len(rows)) - Xr @ np.linalg.pinv(Xr)
    df = len(rows) - np.linalg.matrix_rank(Xr)
    return float(np.sum(M * G[np.ix_(rows, rows)]) / (w2_sum * max(df, 1)))


def effect_noise(maps: np.ndarray, X: np.ndarray, weight: np.ndarray) -> float:
    """A study's noise where an effect lies (units of the data): the residual variance of its GLM
    averaged with the effect's ``weight`` squared, as an SD. maps (n, X, Y, Z), X (n, p) its
    design, weight (X, Y, Z) >= 0 (:func:`effect_weight`)."""
    G, w2_sum = _weighted_gram(maps, weight)
    return float(np.sqrt(_weighted_variance(G, w2_sum, np.asarray(X, float))))


def noise_scale_bootstrap(
    maps: np.ndarray, X: np.ndarray, strata, weight: np.ndarray, n_boot: int = 200, seed: int = 0
) -> np.ndarray:
    """How well a pilot knows its noise where an effect lies: a bootstrap over its subjects.

    The model's noise is the pilot's residual SD map. A pilot of 10 + 10 estimates it with ~17%
    error per voxel, and an error shared over the ROI (the thalami's residuals correlate at
    0.6) does not average out, so a power from one pilot is uncertain beyond its Monte Carlo band.
    Power depends on the effect over the noise only, so noise ``s`` times larger has the power of the
    effect divided by ``s``: this returns the distribution of ``s`` by resampling the subjects.

    maps : (n, X, Y, Z) float, the pilot's analysed maps (units of the data) on the model's crop.
    X : (n, p) float, their design (:func:`qsmvbm.stats.glm.design_matrix`).
    strata : (n,) labels resampled within (the groups): each replicate draws as many subjects of
        each stratum, with replacement.
    weight : (X, Y, Z) float >= 0, where the effect lies (:func:`effect_weight`); the noise is the
        residual variance averaged with weight^2 (the effect's signal power), as an SD.
    n_boot : replicates (default 200). seed : their random seed (default 0).

    Returns (n_boot,) float: each replicate's noise over the pilot's own. Drawing with replacement
    shrinks a stratum's variance by (n_g - 1) / n_g on average; the replicates are corrected for it
    (so their median is about 1). :func:`noise_scale_range` makes a range of them.
    """
    X = np.asarray(X, float)
    strata = np.asarray(strata)
    groups = [np.flatnonzero(strata == g) for g in np.unique(strata)]
    if len(maps) != len(X) or len(maps) != len(strata):
        raise ValueError(f"{len(maps)} maps, {len(X)} design rows and {len(strata)} strata")
    if any(len(g) < 2 for g in groups):
        raise ValueError("noise_scale_bootstrap: every stratum needs 2 or more subjects")
    try:
        G, w2_sum = _weighted_gram(maps, weight)
    except ValueError as e:
        raise ValueError(f"noise_scale_bootstrap: {e}") from None
    # E[within-stratum sum of squares] of a with-replacement draw: (n_g - 1) / n_g of the pilot's
    shrink = sum((len(g) - 1) ** 2 / len(g) for g in groups) / sum(len(g) - 1 for g in groups)
    base = _weighted_variance(G, w2_sum, X)
    rng = np.random.default_rng(seed)
    out = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        rows = np.concatenate([rng.choice(g, len(g)) for g in groups])
        out[b] = _weighted_variance(G, w2_sum, X, rows) / shrink
    return np.sqrt(out / base)


def noise_scale_range(scales, n_subjects: int, n_strata: int = 2, level: float = 0.95):
    """The range of ``g``, the pilot's noise over the true noise where an effect lies, from
    :func:`noise_scale_bootstrap`'s replicates: the true power is the model's power at ``effect x
    g``, so the model's power at ``effect x low`` and ``effect x high`` bound it at ``level``.

    The pilot's noise is taken as a scaled chi (its variance ``sigma^2 chi2_nu / nu``) whose
    degrees of freedom ``nu = 2 / var(log s^2)`` come from the replicates ``s``, their variance
    first raised by ``n_subjects / (n_subjects - n_strata)`` (a with-replacement draw of a
    stratum has the spread of n_g - 1 subjects, not n_g). For Gaussian noise ``nu`` is the
    residual degrees of freedom where the noise is shared over the effect's voxels (measured
    median 18.0 for df 18) and more where it is not (124 for noise independent over the voxels);
    heavy tails lower it. Measured coverage of the true noise
    (benchmarks/results/pilot_noise_simulated.json, ``benchmarks/pilot_noise.py``): 0.91-0.96 for
    Gaussian pilots of 10 and 20 per group, 0.81 with t(4) tails at 10 per group.

    scales : (B,) float replicates. Returns (low, high, nu).
    """
    s = np.asarray(scales, float)
    if s.size < 20 or not np.all(s > 0):
        raise ValueError("noise_scale_range: 20 or more positive replicates needed")
    var = float(np.var(np.log(s * s))) * n_subjects / max(n_subjects - n_strata, 1)
    nu = 2.0 / max(var, 1e-12)
    tail = (1.0 - level) / 2.0
    low, high = np.sqrt(stats.chi2.ppf([tail, 1.0 - tail], nu) / nu)
    return float(low), float(high), float(nu)


def unit_noise(rng, model: PilotModel, n: int) -> np.ndarray:
    """n images (n, X, Y, Z) float32 of the model's unit-variance noise: random combinations of
    ``model.basis`` when it has one, else :func:`smooth_noise` of ``model.fwhm_mm``."""
    if model.basis is None:
        return smooth_noise(rng, n, model.roi.shape, model.fwhm_mm / model.voxel_mm)
    k = model.basis.shape[0]
    g = rng.standard_normal((n, k), np.float32)
    return (g @ model.basis.reshape(k, -1)).reshape(n, *model.basis.shape[1:])


def spread_effect(weight: np.ndarray, voxel_mm, spread_mm: float) -> np.ndarray:
    """``weight`` ((X, Y, Z) float) convolved with a Gaussian of FWHM ``spread_mm`` (mm; voxel
    sizes ``voxel_mm``, mm per axis), zero beyond the grid: an effect's point spread through the
    pipeline. Returned as is when ``spread_mm`` is 0."""
    if spread_mm <= 0:
        return weight
    sigma = spread_mm * FWHM_TO_SIGMA / np.asarray(voxel_mm, float)
    return ndimage.gaussian_filter(weight, sigma, mode="constant")


def effect_weight(
    model: PilotModel,
    centre_mm,
    radius_mm: float,
    profile=None,
    scale=None,
    spread_mm: float = 0.0,
) -> np.ndarray:
    """(X, Y, Z) float: where and how much of an effect the patients carry, inside the model's mask.

    The true effect's shape is ``profile`` (same shape, e.g. a focal gaussian, peak 1) or, when None,
    1 in the sphere of ``radius_mm`` (mm) about ``centre_mm`` (MNI mm). ``spread_mm`` (FWHM, mm;
    default 0): the pipeline's point spread of the effect, a Gaussian the shape is convolved with
    (its integral kept; e.g. a registration that recovers a local volume change only smoothly).
    ``scale`` ((X, Y, Z) float, units of the data; optional): the weight is multiplied by
    ``|scale|``, the reference of a relative effect (e.g. the controls' mean modulated GM, so that an
    effect of 0.05 is 5% of the local mean in every voxel)."""
    if profile is not None:
        weight = np.asarray(profile, float)
        if weight.shape != model.roi.shape:
            raise ValueError(
                f"profile shape {weight.shape} differs from the model's {model.roi.shape}"
            )
    else:
        sphere = cl.sphere_mask(model.roi.shape, model.affine, centre_mm, radius_mm)
        weight = sphere.astype(float)
    weight = np.where(model.mask, spread_effect(weight, model.voxel_mm, spread_mm), 0.0)
    if scale is not None:
        scale = np.asarray(scale, float)
        if scale.shape != model.roi.shape:
            raise ValueError(
                f"scale shape {scale.shape} differs from the model's {model.roi.shape}"
            )
        weight = weight * np.abs(np.nan_to_num(scale))
    return weight


def simulate_study(
    rng,
    model: PilotModel,
    n_per_group: int,
    effect: float,
    centre_mm,
    radius_mm: float,
    profile=None,
) -> np.ndarray:
    """(2n, X, Y, Z) maps: n patients (``effect`` times :func:`effect_weight` added) then n controls."""
    n = 2 * n_per_group
    data = unit_noise(rng, model, n)
    data *= model.sd[None]
    if effect:
        data[:n_per_group] += np.float32(effect) * effect_weight(
            model, centre_mm, radius_mm, profile
        ).astype(np.float32)
    return data


def subset_rows(n_study: int, n_per_group: int) -> np.ndarray:
    """Rows of the first ``n_per_group`` patients and controls of a study of ``n_study`` maps from
    :func:`simulate_study` (patients first, then as many controls): studies of every size nested in
    one draw, read in place."""
    half = n_study // 2
    return np.r_[0:n_per_group, half : half + n_per_group]


def model_design(n_per_group: int, n_covariates: int = 0) -> np.ndarray:
    """The design of a simulated study: ``[group, 1, covariates]`` for ``n_per_group`` patients then
    as many controls, (2n, 2 + n_covariates) float.

    ``n_covariates`` nuisance columns (the analysis' covariates, e.g. TIV for GM) are standard
    normal draws independent of the group (a fixed seed per size): the model's noise is the pilot's
    residual, which has no covariate left in it, so a covariate changes the simulated study only
    through the degrees of freedom it spends (t and RFT thresholds, permutation nulls), as in the
    analysis.
    """
    x = np.r_[np.ones(n_per_group), np.zeros(n_per_group)]
    if n_covariates <= 0:
        return design_matrix(x)
    rng = np.random.default_rng([int(n_per_group), int(n_covariates)])
    return design_matrix(x, rng.standard_normal((2 * n_per_group, int(n_covariates))))


def pooled_null(
    rng,
    model: PilotModel,
    n_per_group: int,
    params: SvcParams,
    null_studies,
    n_covariates: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Null distributions of the maximum t and the maximum TFCE in the ROI for studies of
    ``n_per_group`` patients and controls of ``model``.

    ``params.n_perm`` permutations in all, spread evenly over the null studies (each analysed as
    :func:`qsmvbm.stats.voxelwise.voxelwise_svc` does: the ROI inside the analysis mask, two groups
    and an intercept, TFCE with ``params``' E, H, dh and connectivity). ``null_studies``: their
    number (simulated here), or the null studies themselves, each (2m, X, Y, Z) with m >=
    ``n_per_group`` (:func:`simulate_study`; their first ``n_per_group`` per group are used).
    ``n_covariates``: nuisance columns of the design (:func:`model_design`).

    Returns
    -------
    max_t : (P, 1) float, the maximum t of each permutation.
    max_tfce : (P, 1) float, its maximum TFCE (zeros when ``params.tfce`` is off).
    """
    if np.isscalar(null_studies):
        null_studies = [
            simulate_study(rng, model, n_per_group, 0.0, None, 0.0) for _ in range(null_studies)
        ]
    search = model.roi & model.mask
    X = model_design(n_per_group, n_covariates)
    per = np.diff(np.linspace(0, params.n_perm, len(null_studies) + 1).round().astype(int))
    tfce_args = (params.tfce_E, params.tfce_H, params.tfce_dh, params.connectivity)
    max_t, max_tfce = [], []
    for data, k in zip(null_studies, per):
        if k == 0:
            continue
        Y = data[:, search][subset_rows(len(data), n_per_group)].astype(np.float64)
        out = permutation_maxt(
            Y,
            X[:, 0],
            X[:, 1:],
            [np.ones(Y.shape[1], bool)],
            n_perm=int(k),
            seed=int(rng.integers(1 << 31)),
            batch_stat=(lambda T: max_tfce_batch(T, search, *tfce_args)) if params.tfce else None,
        )
        max_t.append(out[1])
        max_tfce.append(out[2] if params.tfce else np.zeros((int(k), 1)))
    return np.concatenate(max_t), np.concatenate(max_tfce).reshape(-1, 1)


METHOD_P = {"rft": ("p_fwe_rft",), "perm": ("p_fwe_perm",), "tfce": ("p_fwe_tfce",)}
METHOD_P |= {"both": ("p_fwe_rft", "p_fwe_perm"), "either": ("p_fwe_rft", "p_fwe_perm")}


def best_p(clusters: list, roi_name: str, centre_mm, detect_mm: float, params, method) -> float:
    """The smallest FWE p by ``method`` of a cluster of ``roi_name`` that passes the extent rule
    (``params.min_cluster_mm3``) and peaks within ``detect_mm`` (mm) of ``centre_mm`` (anywhere in
    the ROI when ``centre_mm`` is None); 1.0 when there is none. ``method``: rft, perm, tfce, both
    (a cluster's larger p of RFT and max-T) or either (the smaller). The effect is
    :func:`detected` when this p is below ``params.alpha``: it is the continuous outcome of which
    detection is the binary one (to compare whole distributions, not only rates)."""
    keys = METHOD_P[method]
    best = 1.0
    for c in clusters:
        if c["roi"] != roi_name or not c["volume_mm3"] >= params.min_cluster_mm3:
            continue
        if centre_mm is not None:
            peak = np.array([c["peak_x"], c["peak_y"], c["peak_z"]], float)
            if np.linalg.norm(peak - np.asarray(centre_mm, float)) > detect_mm:
                continue
        ps = [float(c[k]) if np.isfinite(float(c[k])) else 1.0 for k in keys]
        best = min(best, min(ps) if method == "either" else max(ps))
    return best


def detected(clusters: list, roi_name: str, centre_mm, detect_mm: float, params, method) -> bool:
    """Is there a cluster of ``roi_name`` significant by ``method`` (with the extent rule) whose
    peak is within ``detect_mm`` of ``centre_mm``? With no planted effect (``centre_mm`` None): any
    significant cluster (a false positive)."""
    rule = replace(params, significance=method)
    for c in clusters:
        if c["roi"] != roi_name:
            continue
        if not is_significant(
            c["p_fwe_rft"], c["p_fwe_perm"], c["volume_mm3"], rule, c["p_fwe_tfce"]
        ):
            continue
        if centre_mm is None:
            return True
        peak = np.array([c["peak_x"], c["peak_y"], c["peak_z"]])
        if np.linalg.norm(peak - np.asarray(centre_mm, float)) <= detect_mm:
            return True
    return False


def power_table(
    model: PilotModel,
    roi_name: str,
    effects,
    n_per_group,
    runs: int = 100,
    params: SvcParams | None = None,
    survival: float = 1.0,
    centre_mm=None,
    radius_mm: float = 9.0,
    detect_mm: float | None = None,
    methods=METHODS,
    seed: int = 0,
    progress=None,
    null: str = "pooled",
    null_studies: int = 10,
    profile=None,
    n_covariates: int = 0,
    record: list | None = None,
    scale=None,
    spread_mm: float = 0.0,
    pilot_range=None,
) -> pd.DataFrame:
    """Detection rate per (effect, n per group, method), ``runs`` simulated studies each.

    effects : true effect sizes (units of the data: ppm, or GM probability), before ``survival``.
    profile : (X, Y, Z) float on the model's crop, optional: the effect's spatial weight (peak 1; e.g.
        a simulator's planted gaussian); the patients carry ``survival x effect x profile``. None
        (default): a uniform sphere of ``radius_mm`` about ``centre_mm``.
    scale : (X, Y, Z) float on the model's crop, optional (units of the data): makes the effects
        relative, fractions of ``|scale|`` at each voxel (:func:`effect_weight`): with the controls'
        mean modulated GM, an effect of 0.05 is a loss of 5% of the grey matter where it lies (an
        atrophy), so voxels of little GM lose little. None (default): absolute effects, the same
        amount in every voxel of the profile.
    spread_mm : the pipeline's point spread of the effect (FWHM, mm; default 0): the profile or
        sphere is convolved with a Gaussian of this FWHM before ``scale`` (:func:`effect_weight`).
    null : ``pooled`` (default; one null per group size from ``params.n_perm`` permutations of
        ``null_studies`` null studies, :func:`pooled_null`) or ``per_study`` (each study's own
        ``params.n_perm`` permutations, as the analysis is run; slow).
    n_covariates : nuisance covariates of the analysed GLM (default 0); each simulated study's
        design carries as many (:func:`model_design`), so it has the analysis' degrees of freedom.
    record : list, optional: each simulated study's outcome is appended to it, a dict with
        ``effect``, ``n_per_group`` and ``p_<method>`` (:func:`best_p`) for every method: the
        distribution of which the power is one point.
    pilot_range : (low, high) float, optional: the pilot's uncertainty about its noise where the
        effect lies (:func:`noise_scale_range`); every effect is also simulated at ``effect x low``
        and ``effect x high`` (the same studies), giving the columns ``pilot_low`` and
        ``pilot_high``: the power if the true noise is at either end of the range (about 3x the
        time of the table without it).
    Returns columns roi, effect, n_per_group, method, detections, runs, power, ci_low, ci_high (and
    pilot_low, pilot_high with ``pilot_range``).
    """
    params = params or SvcParams()
    methods = tuple(methods)
    if null not in NULLS:
        raise ValueError(f"null must be one of {NULLS}, not {null!r}")
    if "tfce" in methods:
        params = replace(params, tfce=True)
    if any(m in ("perm", "tfce") for m in methods) and params.n_perm <= 0:
        raise ValueError("permutation and TFCE power need n_perm > 0")
    centre = model.effect_centre(centre_mm)
    detect_mm = radius_mm if detect_mm is None else detect_mm
    effects = list(effects)
    weight = effect_weight(model, centre, radius_mm, profile, scale, spread_mm).astype(np.float32)
    # the simulated cells: every effect as asked, and at the ends of the pilot's range
    slots = {"power": 1.0}
    if pilot_range is not None:
        low, high = (float(v) for v in pilot_range)
        if not 0 < low <= high:
            raise ValueError(f"pilot_range must be 0 < low <= high, not {pilot_range}")
        slots |= {"pilot_low": low, "pilot_high": high}
    cells = [(i, slot, e * f) for i, e in enumerate(effects) for slot, f in slots.items()]

    def analyse(load, X, p, given_null):
        # the GLM over the ROI only: clusters, their RFT search volumes and TFCE all lie in the
        # ROI inside the mask, and the smoothness is given, so the rest of the crop changes nothing
        return voxelwise_svc(
            load,
            X,
            1.0,
            model.roi,
            {roi_name: model.roi},
            model.affine,
            p,
            null=given_null,
            fwhm_mm=model.fwhm_mm,
        )

    hits = {(i, slot, n): dict.fromkeys(methods, 0) for i, slot, _ in cells for n in n_per_group}

    def count(res, cell, n, p):
        i, slot, effect = cell
        where = centre if effect else None
        for m in methods:
            hits[(i, slot, n)][m] += detected(res.clusters, roi_name, where, detect_mm, p, m)
        if record is not None and slot == "power":
            record.append(
                {"effect": effects[i], "n_per_group": int(n)}
                | {
                    f"p_{m}": best_p(res.clusters, roi_name, where, detect_mm, p, m)
                    for m in methods
                }
            )

    designs = {n: model_design(n, n_covariates) for n in n_per_group}
    if null == "per_study":
        for n in n_per_group:
            for cell in cells:
                effect = cell[2]
                rng = np.random.default_rng([seed, int(round(abs(effect) * 1e6)), int(n)])
                for _ in range(runs):
                    data = simulate_study(
                        rng, model, n, survival * effect, centre, radius_mm, weight
                    )
                    p = replace(params, seed=int(rng.integers(1 << 31)))
                    count(
                        analyse(lambda i, d=data: (d[i], model.mask), designs[n], p, None),
                        cell,
                        n,
                        p,
                    )
            if progress:
                progress([{"roi": roi_name, "n_per_group": int(n), "effects": effects}])
    else:
        # one draw of the largest study per run serves every group size (nested) and effect
        # (common random numbers); the pooled nulls likewise come from one set of null studies
        n_max = max(n_per_group)
        rng = np.random.default_rng([seed, int(n_max)])
        pooled = dict.fromkeys(n_per_group)
        if params.n_perm > 0:
            nulls = [simulate_study(rng, model, n_max, 0.0, None, 0.0) for _ in range(null_studies)]
            pooled = {
                n: pooled_null(rng, model, n, params, nulls, n_covariates) for n in n_per_group
            }
            del nulls
        for r in range(runs):
            noise = simulate_study(rng, model, n_max, 0.0, None, 0.0)
            for n in n_per_group:
                rows = subset_rows(len(noise), n)  # the patients (first n) get the effect
                for cell in cells:
                    effect = cell[2]
                    shift = np.float32(survival * effect) * weight if effect else None

                    def load(i, noise=noise, rows=rows, n=n, shift=shift):
                        img = noise[rows[i]]
                        return (img + shift if shift is not None and i < n else img), model.mask

                    count(analyse(load, designs[n], params, pooled[n]), cell, n, params)
            if progress and (r + 1) % max(1, runs // 10) == 0:
                progress([{"roi": roi_name, "runs_done": r + 1, "of": runs}])
    rows = []
    for i, effect in enumerate(effects):
        for n in n_per_group:
            for m in methods:
                k = hits[(i, "power", n)][m]
                ci = stats.binomtest(k, runs).proportion_ci(0.95, method="exact")
                rows.append(
                    {
                        "roi": roi_name,
                        "effect": effect,
                        "n_per_group": int(n),
                        "method": m,
                        "detections": int(k),
                        "runs": int(runs),
                        "power": k / runs,
                        "ci_low": ci.low,
                        "ci_high": ci.high,
                    }
                    | {slot: hits[(i, slot, n)][m] / runs for slot in slots if slot != "power"}
                )
    return pd.DataFrame(rows)


def _n_reaching(n: np.ndarray, pw: np.ndarray, target: float) -> float:
    """The smallest n whose power ``pw`` (at the sorted sizes ``n``) reaches ``target``, linear
    between sizes, rounded up; NaN when none does."""
    above = np.flatnonzero(pw >= target)
    if not above.size:
        return np.nan
    j = int(above[0])
    if j == 0:
        return float(n[0])
    return float(np.ceil(n[j - 1] + (target - pw[j - 1]) * (n[j] - n[j - 1]) / (pw[j] - pw[j - 1])))


def n_for_power(table: pd.DataFrame, target: float = 0.8) -> pd.DataFrame:
    """Per (roi, effect, method): the smallest n per group whose power reaches ``target``, by linear
    interpolation between the simulated group sizes (NaN when none reaches it; the largest
    simulated n then bounds it from below). With the table's ``pilot_low`` and ``pilot_high``
    (:func:`power_table`'s ``pilot_range``) also the n at either end of the pilot's range:
    ``n_per_group_pilot_optimistic`` (from ``pilot_high``) and ``n_per_group_pilot_pessimistic``."""
    out = []
    ends = "pilot_low" in table.columns and "pilot_high" in table.columns
    for (roi, effect, method), g in table.groupby(["roi", "effect", "method"], sort=False):
        g = g.sort_values("n_per_group")
        n = g["n_per_group"].to_numpy(float)
        row = {
            "roi": roi,
            "effect": effect,
            "method": method,
            "n_per_group_for_power": _n_reaching(n, g["power"].to_numpy(float), target),
        }
        if ends:
            row["n_per_group_pilot_optimistic"] = _n_reaching(
                n, g["pilot_high"].to_numpy(float), target
            )
            row["n_per_group_pilot_pessimistic"] = _n_reaching(
                n, g["pilot_low"].to_numpy(float), target
            )
        out.append(row | {"target_power": target, "largest_n_simulated": int(n.max())})
    return pd.DataFrame(out)


# the pipeline's point spread of a planted GM loss (Gaussian FWHM, mm) that the simulator's
# full-pipeline cohorts measured (docs/validation.md, "Power against fourteen full-pipeline
# cohorts": 18 mm fitted on eleven cohorts' maps, 22 mm on nine before; benchmarks/power_cohorts.py)
MEASURED_GM_SPREAD_MM = {"Thalamus_L": 18.0, "Thalamus_R": 4.0}


def gm_spread_caveat(spreads: dict) -> str:
    """A caution for the GM sample sizes of the ROIs of ``spreads`` (ROI -> the model's spread_mm)
    modelled without spread, '' when there are none: a GM loss comes out of this pipeline spread
    (:data:`MEASURED_GM_SPREAD_MM`), so an unspread model puts too much of it at its centre."""
    unspread = [roi for roi, mm in spreads.items() if not mm]
    if not unspread:
        return ""
    measured = ", ".join(f"{mm:g} mm in {roi}" for roi, mm in MEASURED_GM_SPREAD_MM.items())
    return (
        f"Caution ({', '.join(unspread)}): these sample sizes assume the maps carry a grey-matter loss "
        "in its true shape. Through this pipeline the simulator's full-pipeline cohorts measured it "
        f"spread by a Gaussian of {measured} (FWHM), which lowers power; an unspread model "
        "predicted half of 10 + 10 studies to find a left-thalamic loss that 1 in 10 cohorts found. "
        "Set power.modalities.gm.spread_mm."
    )


def rft_caveat(methods) -> str:
    """A caution for RFT sample sizes ('' when ``methods`` has no ``rft``): against the simulator's
    full-pipeline cohorts the model's RFT power was optimistic in the thalami, max-T and TFCE not
    (docs/validation.md, "Power against fourteen full-pipeline cohorts")."""
    if "rft" not in methods:
        return ""
    return (
        "Caution (RFT): against 14 full-pipeline cohorts of 10 + 10 on the simulator, this model's RFT "
        "power was optimistic in the thalami (right thalamus 0.64 predicted, 5 of 14 found; in the same "
        "direction in all three calibrations), while its max-T and TFCE power agreed (0.76 and 0.75 "
        "against 10 and 11 of 14): read an RFT sample size there as a lower bound."
    )


def effect_text(effect: float, unit: str, relative: bool = False) -> str:
    """An effect as the text reports it: ``0.01 ppm``, or for a relative effect (a fraction of the
    controls' mean map, :func:`effect_weight`) ``5% of the controls' mean GM probability``."""
    if relative:
        return f"{100 * effect:.3g}% of the controls' mean {unit}"
    return f"{effect:g} {unit}"


def _n_text(n: float, largest: int) -> str:
    return f"{int(n)}" if np.isfinite(n) else f"more than {largest}"


def justification(
    need: pd.DataFrame,
    modality: str,
    unit: str,
    model_note: str,
    radius_mm: float = 9.0,
    relative: bool = False,
    pilot_ranges: dict | None = None,
    pilot_n: int | None = None,
) -> str:
    """A sample-size justification paragraph for a grant, from :func:`n_for_power`'s table;
    ``relative``: its effects are fractions of the controls' mean map (:func:`effect_text`).
    ``pilot_ranges`` (ROI -> (low, high), :func:`noise_scale_range`) and ``pilot_n`` (the pilot's
    subjects): how well the pilot knows its noise; with the table's pilot columns each n gets its
    range, else a sentence gives the factors."""
    ends = "n_per_group_pilot_optimistic" in need.columns
    parts = []
    for r in need.itertuples():
        central = _n_text(r.n_per_group_for_power, r.largest_n_simulated)
        n = central + " per group"
        if ends:
            low = _n_text(r.n_per_group_pilot_optimistic, r.largest_n_simulated)
            high = _n_text(r.n_per_group_pilot_pessimistic, r.largest_n_simulated)
            if low != high:
                n += f" ({low} to {high} over the pilot's noise range)"
            elif low == central:  # e.g. the smallest size simulated reaches it throughout
                n += " (the same over the pilot's noise range)"
            else:
                n += f" ({low} at either end of the pilot's noise range)"
        parts.append(
            f"{effect_text(r.effect, unit, relative)} in {r.roi} ({r.method.upper()}): {n}"
        )
    target = int(round(100 * float(need["target_power"].iloc[0]))) if len(need) else 80
    text = (
        f"Sample size ({modality}). Power was estimated by Monte Carlo simulation of the planned analysis "
        f"(qsmvbm: voxelwise two-sample t-test, small-volume family-wise error correction at 0.05 with the "
        f"cluster extent rule) on maps whose voxelwise between-subject variability and smoothness were "
        f"measured in {model_note}. To detect a group difference in a {radius_mm:g} mm sphere with {target}% "
        f"power (a significant cluster peaking inside it), the study needs: "
        + "; ".join(parts)
        + "."
    )
    if pilot_ranges:
        ranges = ", ".join(f"{roi} {lo:.2f}-{hi:.2f}" for roi, (lo, hi) in pilot_ranges.items())
        who = f"its {pilot_n} subjects" if pilot_n else "its subjects"
        text += (
            f" The pilot knows its noise where the effect lies only to a factor of {ranges} (95%, "
            f"a bootstrap over {who}); at either end the true power is that of an effect this many "
            "times as large"
        )
        text += (
            ": the ranges above."
            if ends
            else " (power.pilot_bands: true gives the sample sizes over this range)."
        )
    return text
