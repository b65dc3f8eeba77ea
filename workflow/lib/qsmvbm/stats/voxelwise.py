"""Voxelwise two-group analysis with small-volume correction (RFT and permutation) in ROIs.

One call of :func:`voxelwise_svc` runs one modality (QSM or modulated GM):

1. pass 1 over subjects: analysis mask (implicit: every subject valid and, for GM, above the
   absolute threshold), GLM sufficient statistics, and the data of the ROI voxels;
2. pass 2: standardized residuals -> smoothness (FWHM) for random field theory;
3. clusters of ``t > t(p_cluster)`` inside each ROI, each with its peak, RFT FWE p in the SVC
   search volume (the ROI, or as the study a sphere around the peak x ROI), permutation max-T FWE p
   over the ROI, volume in mm^3 and the significance rule.

Images come from ``load(i) -> (values, valid)`` so that the caller owns the file I/O; arrays are
(X, Y, Z) on the template grid. Memory is O(voxels x regressors) plus the ROI data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from . import clusters as cl
from .glm import GlmAccumulator
from .permutation import p_fwe_from_null, permutation_maxt
from .rft import SmoothnessAccumulator, p_fwe_peak, resel_counts, t_threshold
from .tfce import max_tfce_batch, tfce

SIGNIFICANCE = ("rft", "perm", "both", "either", "tfce")
FWE_FAMILIES = ("roi", "modality", "analysis")


@dataclass
class SvcParams:
    """Inference settings (see the ``group`` section of the config schema)."""

    cluster_p: float = 0.005
    min_cluster_mm3: float = 100.0
    alpha: float = 0.05
    svc_volume: str = "sphere"
    sphere_radius_mm: float = 20.0
    significance: str = "rft"
    n_perm: int = 5000
    seed: int = 0
    connectivity: int = 18
    fwe_family: str = "roi"
    n_modalities: int = 1
    rft_min_df: int = 10
    tfce: bool = False
    tfce_E: float = 0.5
    tfce_H: float = 2.0
    tfce_dh: float = 0.1


def tfce_on(group: dict) -> bool:
    """Does the workflow's ``group`` config compute TFCE? (``tfce.enabled``, or TFCE decides
    significance.)"""
    return bool(group["tfce"]["enabled"] or group["significance"] == "tfce")


@dataclass
class VoxelwiseResult:
    tmap: np.ndarray
    effect: np.ndarray
    mask: np.ndarray
    sd: np.ndarray  # residual standard deviation (units of the data), 0 outside ``mask``
    cluster_labels: np.ndarray
    clusters: list = field(default_factory=list)
    tfce: np.ndarray | None = None  # TFCE score in the search volumes (when tfce is on)
    tfce_pfwe: np.ndarray | None = None  # voxelwise TFCE FWE p (1 outside the search volumes)
    info: dict = field(default_factory=dict)


def _progress_logger(say: Callable, what: str, every: float = 0.1) -> Callable:
    """A ``progress(done, total)`` for :func:`permutation_maxt` that logs through ``say`` at every
    ``every`` share of the permutations (and the last), with the time spent and an estimate of the
    time left (a 1 mm TFCE analysis runs its permutations for tens of minutes)."""
    t0 = time.perf_counter()
    state = {"next": every}

    def progress(done: int, total: int) -> None:
        if done < total and done / total < state["next"]:
            return
        state["next"] = done / total + every
        spent = time.perf_counter() - t0
        left = spent / done * (total - done)
        say(f"{what} permutations: {done} of {total} in {spent:.0f} s (about {left:.0f} s left)")

    return progress


def is_significant(
    p_rft: float, p_perm: float, volume_mm3: float, p: SvcParams, p_tfce: float = np.nan
) -> bool:
    """The configured rule: peak FWE-SVC p < alpha (by RFT, permutation max-T, both, either, or
    the cluster's best TFCE FWE p) and the cluster at the cluster-forming threshold at least
    ``min_cluster_mm3``."""
    ok = {
        "rft": p_rft < p.alpha,
        "perm": p_perm < p.alpha,
        "both": p_rft < p.alpha and p_perm < p.alpha,
        "either": p_rft < p.alpha or p_perm < p.alpha,
        "tfce": p_tfce < p.alpha,
    }[p.significance]
    return bool(ok and volume_mm3 >= p.min_cluster_mm3)


def voxelwise_svc(
    load: Callable[[int], tuple[np.ndarray, np.ndarray]],
    X: np.ndarray,
    sign: float,
    base_mask: np.ndarray,
    rois: dict[str, np.ndarray],
    affine: np.ndarray,
    params: SvcParams,
    log=None,
    null: tuple[np.ndarray, np.ndarray] | None = None,
    fwhm_mm=None,
) -> VoxelwiseResult:
    """Run one modality.

    Parameters
    ----------
    load : ``load(i)`` returns subject i's image (X, Y, Z) and its validity mask (bool).
    X : (n, p) design from :func:`qsmvbm.stats.glm.design_matrix` (column 0 tested).
    sign : +1 to test ``column 0 > 0`` (patients > controls), -1 for ``< 0``.
    base_mask : (X, Y, Z) bool, e.g. the template brain mask.
    rois : name -> (X, Y, Z) bool ROI masks (AAL3 regions on the grid).
    affine : 4x4 voxel -> MNI mm.
    null : (max_t (P, n_rois), max_tfce (P, n_tfce_sets)), optional
        Null distributions of the maximum t in each ROI and of the maximum TFCE in each TFCE search
        volume, known beforehand (e.g. pooled over null studies of a power analysis,
        :func:`qsmvbm.stats.power.pooled_null`); the permutations are then not run and the FWE p
        of max-T and TFCE come from these. None (default): ``params.n_perm`` permutations of the data.
    fwhm_mm : float or (3,) float, optional
        The residuals' smoothness (mm), known beforehand: the pass over the residuals that estimates
        it is skipped. For a power analysis on a crop of a pilot's maps, whose smoothness the real
        analysis estimates from the whole brain, far more precisely than a crop could. None
        (default): estimated from the standardized residuals.
    """
    if params.significance == "tfce" and not (params.tfce and params.n_perm > 0):
        raise ValueError("significance 'tfce' needs tfce on and n_perm > 0")
    if params.fwe_family not in FWE_FAMILIES:
        raise ValueError(f"fwe_family must be one of {FWE_FAMILIES}, not {params.fwe_family!r}")
    say = log.info if log else (lambda *a: None)
    n = X.shape[0]
    base_mask = np.asarray(base_mask, bool)
    vox = np.flatnonzero(base_mask)
    roi_union = np.zeros(base_mask.shape, bool)
    for m in rois.values():
        roi_union |= m
    roi_in_base = roi_union.ravel()[vox]
    acc = GlmAccumulator(X, len(vox))
    valid_count = np.zeros(len(vox), np.int32)
    Yroi = np.empty((n, int(roi_in_base.sum())), np.float64)
    for i in range(n):
        img, valid = load(i)
        y = sign * np.asarray(img, np.float64).ravel()[vox]
        ok = np.asarray(valid, bool).ravel()[vox] & np.isfinite(y)
        y = np.where(ok, y, 0.0)
        valid_count += ok
        acc.add(i, y)
        Yroi[i] = y[roi_in_base]
    in_mask = valid_count == n  # SPM's implicit mask: valid in every subject
    mask = np.zeros(base_mask.shape, bool)
    mask.ravel()[vox[in_mask]] = True
    if not mask.any():
        raise ValueError("the analysis mask is empty (no voxel is valid in enough subjects)")
    fit = acc.fit()
    df = fit.df
    tmap = np.zeros(base_mask.shape)
    tmap.ravel()[vox[in_mask]] = fit.t[in_mask]
    effect = np.zeros(base_mask.shape)
    effect.ravel()[vox[in_mask]] = fit.beta[0][in_mask]
    resid_sd = np.zeros(base_mask.shape)
    resid_sd.ravel()[vox[in_mask]] = fit.sigma[in_mask]
    say(f"GLM: n={n}, p={X.shape[1]}, df={df}, mask {int(mask.sum())} voxels")

    vsize = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    if fwhm_mm is None:
        # pass 2: smoothness from standardized residuals
        sm = SmoothnessAccumulator(mask, n, df)
        sd = np.sqrt(fit.rss / df)
        sd = np.where(sd > 0, sd, np.inf)
        for i in range(n):
            img, _ = load(i)
            y = sign * np.asarray(img, np.float64).ravel()[vox]
            r = np.zeros(base_mask.shape)
            e = (y - X[i] @ fit.beta) / sd
            r.ravel()[vox[in_mask]] = e[in_mask]
            sm.add(r)
        smooth = sm.estimate()
        fwhm_vox = smooth["fwhm_vox"]
    else:
        fwhm_vox = np.broadcast_to(np.asarray(fwhm_mm, float), (3,)) / vsize
        smooth = {"resels_per_voxel": float(1.0 / np.prod(fwhm_vox))}
    say(f"smoothness FWHM {np.round(fwhm_vox * vsize, 2)} mm")
    # with few residual degrees of freedom the smoothness estimate (and so the resel count) is too
    # unreliable for random field theory: no RFT p-values then, loudly (SPM only warns)
    rft_ok = df >= params.rft_min_df
    rft_note = (
        ""
        if rft_ok
        else (
            f"random field theory not applied: {int(df)} residual degrees of freedom < rft_min_df "
            f"{params.rft_min_df} (the smoothness estimate, FWHM {np.round(fwhm_vox * vsize, 1).tolist()} mm, is "
            "unreliable with so few subjects); only permutation p-values are given"
        )
    )
    if not rft_ok:
        (log.warning if log else say)(f"WARNING: {rft_note}")

    # clusters in each ROI
    thr = t_threshold(params.cluster_p, df)
    found = []
    for name, roi in rois.items():
        search_roi = roi & mask
        for c in cl.find_clusters(tmap, search_roi, thr, affine, params.connectivity):
            sv = cl.svc_volume(
                search_roi, affine, params.svc_volume, c.peak_mm, params.sphere_radius_mm
            )
            found.append((name, c, sv))
    # permutation: max-T over the whole ROI. A sphere chosen around the observed peak cannot be
    # permuted consistently (in every permutation the sphere around that permutation's own peak
    # holds the ROI maximum), so the permutation family is the ROI whatever ``svc_volume`` says.
    roi_vox = vox[roi_in_base]
    roi_ok = in_mask[roi_in_base]
    names = list(rois)
    subsets = [rois[nm].ravel()[roi_vox] & roi_ok for nm in names]
    # wider families: permutation max-T over the union of the ROIs (the maximum of the ROI maxima of each
    # permutation, exact); TFCE over the union (clusters may cross from one ROI into a touching one);
    # RFT Bonferroni over the ROIs; and over the modalities, Bonferroni for all three
    joint = params.fwe_family != "roi"
    k_rft = len(rois) if joint else 1
    k_mod = params.n_modalities if params.fwe_family == "analysis" else 1
    use_tfce = params.tfce and params.n_perm > 0
    tfce_sets = {}  # family name -> (3D search volume, its columns among the ROI voxels)
    if use_tfce:
        if joint:
            tfce_sets["union"] = (roi_union & mask, np.logical_or.reduce(subsets))
        else:
            tfce_sets = {nm: (rois[nm] & mask, subsets[j]) for j, nm in enumerate(names)}
    tfce_args = (params.tfce_E, params.tfce_H, params.tfce_dh, params.connectivity)

    def tfce_maxima(T):
        return np.stack(
            [max_tfce_batch(T[:, c], sv, *tfce_args) for sv, c in tfce_sets.values()], axis=1
        )

    tfce_null = np.zeros((0, len(tfce_sets)))
    if null is not None:  # nulls known beforehand (a power analysis): no permutations
        max_null = np.asarray(null[0], float).reshape(len(null[0]), -1)
        if max_null.shape[1] != len(names):
            raise ValueError(f"null max-T has {max_null.shape[1]} columns for {len(names)} ROIs")
        if use_tfce:
            tfce_null = np.asarray(null[1], float).reshape(len(null[1]), -1)
    elif (found or use_tfce) and params.n_perm > 0:
        # permutations when a cluster needs a p-value, and always with TFCE (voxelwise FWE p maps)
        Z = X[:, 1:]
        out = permutation_maxt(
            Yroi,
            X[:, 0],
            Z,
            subsets,
            n_perm=params.n_perm,
            seed=params.seed,
            batch_stat=tfce_maxima if use_tfce else None,
            progress=_progress_logger(say, "TFCE and max-T" if use_tfce else "max-T"),
        )
        max_null = out[1]
        if use_tfce:
            tfce_null = out[2]
    else:
        max_null = np.zeros((0, len(names)))
    tfce_map = np.zeros(base_mask.shape)
    tfce_pfwe = np.ones(base_mask.shape)
    for j, (sv, _c) in enumerate(tfce_sets.values()):
        score = tfce(tmap, sv, *tfce_args)
        tfce_map[sv] = score[sv]
        if len(tfce_null):
            tfce_pfwe[sv] = np.minimum(1.0, p_fwe_from_null(score[sv], tfce_null[:, j]) * k_mod)
    union_null = max_null.max(axis=1)
    nulls = {nm: union_null if joint else max_null[:, j] for j, nm in enumerate(names)}
    labels = np.zeros(base_mask.shape, np.int32)
    rows = []
    for k, (name, c, sv) in enumerate(found, start=1):
        resels = resel_counts(sv, fwhm_vox)
        p_rft = (
            min(1.0, float(p_fwe_peak(c.peak_t, df, resels, int(sv.sum()))[0]) * k_rft * k_mod)
            if rft_ok
            else np.nan
        )
        p_perm = (
            min(1.0, float(p_fwe_from_null(c.peak_t, nulls[name])[0]) * k_mod)
            if len(max_null)
            else np.nan
        )
        if use_tfce and len(tfce_null):
            peak_tfce = float(tfce_map[c.mask].max())
            p_tfce = float(tfce_pfwe[c.mask].min())
        else:
            peak_tfce, p_tfce = np.nan, np.nan
        rows.append(
            {
                "roi": name,
                "cluster_id": k,
                "peak_x": c.peak_mm[0],
                "peak_y": c.peak_mm[1],
                "peak_z": c.peak_mm[2],
                "peak_t": c.peak_t,
                "p_unc": float(stats.t.sf(c.peak_t, df)),
                "p_fwe_rft": p_rft,
                "p_fwe_perm": p_perm,
                "n_voxels": c.n_voxels,
                "volume_mm3": c.volume_mm3,
                "peak_tfce": peak_tfce,
                "p_fwe_tfce": p_tfce,
                "significant": is_significant(p_rft, p_perm, c.volume_mm3, params, p_tfce),
                "search_voxels": int(sv.sum()),
                "search_resels": float(resels[3]),
            }
        )
        labels[c.mask & (labels == 0)] = k
    info = {
        "n": n,
        "df": int(df),
        "n_regressors": int(X.shape[1]),
        "mask_voxels": int(mask.sum()),
        "fwhm_vox": [float(v) for v in fwhm_vox],
        "fwhm_mm": [float(v) for v in fwhm_vox * vsize],
        "resels_per_voxel": smooth["resels_per_voxel"],
        "fwhm_from": "residuals" if fwhm_mm is None else "given",
        "cluster_forming_t": thr,
        "n_perm": int(len(max_null)) if null is not None else int(params.n_perm),
        "null": "given" if null is not None else "permutations of the data",
        "fwe_family": params.fwe_family,
        "fwe_bonferroni_factor": {"rft": k_rft * k_mod, "perm": k_mod},
        "rft_applied": bool(rft_ok),
        "rft_min_df": int(params.rft_min_df),
        "rft_note": rft_note,
        "roi_voxels": {k: int((v & mask).sum()) for k, v in rois.items()},
        "tfce": (
            {
                "E": params.tfce_E,
                "H": params.tfce_H,
                "dh": params.tfce_dh,
                "search": "union of the ROIs" if joint else "each ROI",
                "permutations": int(len(tfce_null)),
            }
            if use_tfce
            else None
        ),
    }
    return VoxelwiseResult(
        tmap=tmap,
        effect=effect,
        mask=mask,
        sd=resid_sd,
        cluster_labels=labels,
        clusters=rows,
        info=info,
        tfce=tfce_map if use_tfce else None,
        tfce_pfwe=tfce_pfwe if use_tfce else None,
    )
