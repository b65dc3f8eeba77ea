"""The configured QSM chain, from a multi-echo GRE to a referenced chi map (ppm).

``DEFAULTS`` is the reference study's chain (STI Suite as described by Li et al.
2022): magnitude-weighted echo combination, magnitude brain mask, Laplacian
unwrapping, V-SHARP, STAR-QSM-like inversion, whole-brain-mean reference (``background: tfi`` inverts the total field in one step, Liu et al.
2017, instead of background removal + inversion); except
that the background removal is LBV, after a test that drops the mask's boundary
voxels whose field is not smooth (``background: vsharp`` is the study's; why: docs/validation.md,
benchmarks/qsm_background.py).
``CONSENSUS`` follows the 2024 ISMRM QSM consensus: exact unwrapping, echoes
combined before background removal, sparsity-regularised (TV) inversion and a
whole-brain reference. The workflow's config schema carries the same defaults.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .. import GAMMA_HZ_PER_T
from ..dipole import b0_direction_from_affine, voxel_sizes
from ..timing import Stopwatch
from . import background, echoes, inversion, reference, unwrap
from . import mask as masking

DEFAULTS: dict = {
    "mask": {
        "method": "bet",
        "bet_f": 0.5,
        "threshold_scale": 1.0,
        "open_mm": 3.0,
        "close_mm": 3.0,
        "erode_mm": 0.0,
        "phase_quality": True,
        "quality_factor": 5.0,
    },
    "combination": "complex_fit",
    "unwrapping": "laplacian",
    "background": "lbv",
    "vsharp": {"max_radius_mm": 12.0, "tsvd": 0.02},
    "pdf": {"max_iter": 50, "tol": 1e-3},
    "lbv": {"tol": 1e-6, "max_iter": 2000, "peel": 1, "erode": 0, "rim_k": 10.0, "rim_layers": 3},
    "ismv": {"radius_mm": 5.0, "tol": 1e-4, "max_iter": 1000},
    "resharp": {"radius_mm": 5.0, "lam": 1e-4, "tol": 1e-4, "max_iter": 500},
    "tfi": {
        "lam": 2e-4,
        "precond_out": 30.0,
        "max_iter": 5,
        "cg_iter": 100,
        "cg_tol": 1e-4,
        "tol": 0.01,
        "eps": 1e-3,
    },
    "edge_refinement": "none",
    "msmv": {"radius_mm": 5.0, "prefilter": False, "vessel_sigmas_mm": [1.0, 2.0, 3.0]},
    "inversion": "star",
    "star": {"lam_strong": 5e-3, "lam_weak": 1e-4, "max_iter": 60, "tol": 1e-3},
    "tvadmm": {"lam": 2e-4, "max_iter": 250, "tol": 1e-3},
    "ilsqr": {"max_iter": 50, "tol": 0.01},
    "tkd": {"threshold": 0.15},
    "reference": "mean",
}

CONSENSUS: dict = {**copy.deepcopy(DEFAULTS), "unwrapping": "path", "inversion": "tvadmm"}


def merge(params: dict | None, base: dict = DEFAULTS) -> dict:
    """``base`` updated by ``params`` (nested dicts merged one level deep)."""
    out = copy.deepcopy(base)
    for k, v in (params or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


@dataclass
class QSMResult:
    """Outputs of :func:`reconstruct`; arrays (X, Y, Z) float32 unless stated."""

    chi: np.ndarray  # ppm, referenced, 0 outside final_mask
    total_field: np.ndarray  # ppm, unwrapped (Laplacian: up to a harmonic term), 0 outside mask
    local_field: np.ndarray  # ppm, 0 outside final_mask
    noise: np.ndarray  # SD of the field estimate, ppm
    mask: np.ndarray  # bool, brain mask used for unwrapping/background removal
    final_mask: np.ndarray  # bool, after background removal erosion
    r2star: np.ndarray  # 1/s
    info: dict = field(default_factory=dict)


def field_to_ppm(b0_t: float) -> float:
    """Factor turning a field in rad/s into ppm of B0 (``b0_t`` tesla)."""
    return 1e6 / (2 * np.pi * GAMMA_HZ_PER_T * b0_t)


def field_from_phase(
    mag: np.ndarray,
    phase: np.ndarray,
    mask: np.ndarray,
    te: np.ndarray,
    vs,
    to_ppm: float,
    p: dict,
    info: dict,
    tick,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Echo combination and spatial unwrapping: the total field and its noise SD (ppm) in the
    (possibly phase-quality-refined) mask. Returns (total, noise, mask); records in ``info``."""
    combination = p["combination"]
    if combination == "complex_fit" and not echoes.equally_spaced(te):
        # the complex fit's model steps the phase by one spacing per echo; unevenly spaced echoes
        # (some vendors' protocols, a dropped echo) take the weighted fit of unwrapped echoes
        combination = "wls"
        info["combination_used"] = "wls (echo times not equally spaced)"
    if combination == "complex_fit":
        dte = echoes.check_uniform_echoes(te)
        p1, _, n_std, iters = echoes.fit_complex(mag, phase, mask)
        info["echo_fit_iterations"] = iters
        tick("echo_combination")
        if p["mask"]["phase_quality"]:  # on top of either mask: drops the unreliable-phase rim
            info["mask_voxels_before_quality"] = int(mask.sum())
            mask = masking.refine_by_quality(mask, n_std, p["mask"]["quality_factor"])
            p1 *= mask
        if p["unwrapping"] == "laplacian":
            un = unwrap.laplacian_unwrap(p1, vs, mask)
        elif p["unwrapping"] == "path":
            un = unwrap.path_unwrap(p1, mask)
        else:
            raise ValueError(f"unknown unwrapping {p['unwrapping']!r}")
        tick("unwrapping")
        scale = to_ppm / dte  # rad per echo spacing -> ppm
        total = un * np.float32(scale)
        noise = n_std * np.float32(scale)
    elif combination == "wls":
        n_e = phase.shape[-1]
        un = np.empty(phase.shape, np.float32)
        for e in range(n_e):
            if p["unwrapping"] == "laplacian":
                un[..., e] = unwrap.laplacian_unwrap(phase[..., e], vs, mask)
            elif p["unwrapping"] == "path":
                un[..., e] = unwrap.path_unwrap(phase[..., e], mask)
            else:
                raise ValueError(f"unknown unwrapping {p['unwrapping']!r}")
        if p["unwrapping"] == "path":
            un = echoes.align_echo_offsets(un, te, mask)
        tick("unwrapping")
        w = mag.astype(np.float32) ** 2
        omega, _, se = echoes.fit_wls(un, te, mask, w)
        total = omega * np.float32(to_ppm)
        noise = se * np.float32(to_ppm)
        tick("echo_combination")
    else:
        raise ValueError(f"unknown echo combination {p['combination']!r}")
    return total, noise, mask


def noise_weights(noise: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Data weights from the field's noise SD (ppm): ``1 / max(noise, its 5th percentile in the
    mask)`` in ``mask``, 0 outside (float32), so a few near-noiseless voxels do not dominate."""
    return np.where(mask, 1.0 / np.maximum(noise, np.percentile(noise[mask], 5)), 0).astype(
        np.float32
    )


def total_field_inversion(
    total: np.ndarray, noise: np.ndarray, mask: np.ndarray, vs, b0, p: dict, info: dict
) -> tuple[np.ndarray, np.ndarray]:
    """``background: tfi``: susceptibility (ppm, not referenced) and the local field it implies
    (ppm) from the total field in one step (:func:`inversion.tfi`, noise weights); no background
    removal, so the whole mask is kept."""
    if p["edge_refinement"] != "none":
        raise ValueError("edge_refinement applies to a background-removed field, not to tfi")
    tp = p["tfi"]
    chi, local, tinfo = inversion.tfi(
        total,
        mask,
        vs,
        b0,
        noise_weights(noise, mask),
        tp["lam"],
        tp["precond_out"],
        tp["max_iter"],
        tp["cg_iter"],
        tp["cg_tol"],
        tp["tol"],
        tp["eps"],
    )
    info["inversion_iterations"] = [tinfo["outer_iterations"], tinfo["cg_iterations"]]
    return chi, local


def remove_background(
    total: np.ndarray,
    noise: np.ndarray,
    mask: np.ndarray,
    vs,
    b0,
    p: dict,
    info: dict,
    r2star: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The local field (ppm) and the mask it is valid in, by ``p["background"]``, then the
    ``p["edge_refinement"]`` (``msmv``: :func:`background.msmv`, vessels spared by ``r2star``)."""
    if p["background"] == "vsharp":
        vp = p["vsharp"]
        radii = background.default_radii(vs, vp["max_radius_mm"])
        local, final_mask = background.vsharp(total, mask, vs, radii, vp["tsvd"])
        info["vsharp_radii_mm"] = radii
    elif p["background"] == "pdf":
        local, final_mask = background.pdf(
            total, mask, vs, b0, noise_weights(noise, mask), p["pdf"]["tol"], p["pdf"]["max_iter"]
        )
    elif p["background"] == "lbv":
        lp = p["lbv"]
        linfo: dict = {}
        local, final_mask = background.lbv(
            total,
            mask,
            vs,
            lp["tol"],
            lp["max_iter"],
            lp["peel"],
            lp["erode"],
            lp["rim_k"],
            lp["rim_layers"],
            linfo,
        )
        info["lbv_rim_dropped"] = linfo["rim_dropped"]
    elif p["background"] == "ismv":
        ip = p["ismv"]
        local, final_mask = background.ismv(
            total, mask, vs, ip["radius_mm"], ip["tol"], ip["max_iter"]
        )
    elif p["background"] == "resharp":
        rp = p["resharp"]
        local, final_mask = background.resharp(
            total, mask, vs, rp["radius_mm"], rp["lam"], rp["tol"], rp["max_iter"]
        )
    else:
        raise ValueError(f"unknown background removal {p['background']!r}")
    if p["edge_refinement"] == "msmv":
        mp = p["msmv"]
        local, minfo = background.msmv(
            local, final_mask, vs, r2star, mp["radius_mm"], mp["prefilter"], mp["vessel_sigmas_mm"]
        )
        info["msmv"] = minfo
    elif p["edge_refinement"] != "none":
        raise ValueError(f"unknown edge refinement {p['edge_refinement']!r}")
    return local, final_mask


def invert_dipole(
    local: np.ndarray, final_mask: np.ndarray, noise: np.ndarray, vs, b0, p: dict, info: dict
) -> np.ndarray:
    """Susceptibility (ppm, not yet referenced) from the local field, by ``p["inversion"]``."""
    inv = p["inversion"]
    if inv == "star":
        sp = p["star"]
        chi, its = inversion.star(
            local, final_mask, vs, b0, sp["lam_strong"], sp["lam_weak"], sp["max_iter"], sp["tol"]
        )
        info["inversion_iterations"] = list(its)
    elif inv == "tvadmm":
        tp = p["tvadmm"]
        chi, its = inversion.tv_admm(
            local, final_mask, vs, b0, tp["lam"], None, tp["max_iter"], tp["tol"]
        )
        info["inversion_iterations"] = its
    elif inv == "ilsqr":
        ip = p["ilsqr"]
        chi, its = inversion.ilsqr(
            local,
            final_mask,
            vs,
            b0,
            ip["tol"],
            ip["max_iter"],
            weights=noise_weights(noise, final_mask),
        )
        info["inversion_iterations"] = list(its)
    elif inv == "tkd":
        chi = inversion.tkd(local, final_mask, vs, b0, p["tkd"]["threshold"])
    else:
        raise ValueError(f"unknown dipole inversion {inv!r}")
    return chi


def reconstruct(
    mag: np.ndarray,
    phase: np.ndarray,
    affine: np.ndarray,
    te_s,
    b0_t: float,
    params: dict | None = None,
    mask: np.ndarray | None = None,
) -> QSMResult:
    """Run the QSM chain.

    Parameters
    ----------
    mag, phase : (X, Y, Z, E) magnitude and wrapped phase [rad].
    affine : (4, 4) voxel -> scanner mm (gives voxel size and the B0 direction).
    te_s : (E,) echo times [s]. b0_t : field strength [T].
    params : overrides of :data:`DEFAULTS`. mask : optional brain mask (e.g. from the T1w);
    otherwise computed from the root-sum-of-squares magnitude over echoes: BET after N4 (``mask.method:
    bet``, :func:`qsmvbm.qsm.mask.bet_magnitude_mask`, fractional threshold ``mask.bet_f``) or an Otsu mask
    (``otsu``, :func:`qsmvbm.qsm.mask.brain_mask_from_magnitude`). With the complex fit, ``mask.phase_quality`` refines either
    mask by the fit's noise (voxels above ``quality_factor`` x the median are dropped).
    """
    p = merge(params)
    vs = voxel_sizes(affine)
    b0 = b0_direction_from_affine(affine)
    te = np.asarray(te_s, dtype=float)
    watch = Stopwatch()
    tick = watch.tick
    timings = watch.timings

    if mask is None:
        mp = p["mask"]
        if mp["method"] == "bet":
            mask = masking.bet_magnitude_mask(mag, affine, mp["bet_f"])
        else:
            mask = masking.brain_mask_from_magnitude(
                mag, vs, mp["threshold_scale"], mp["open_mm"], mp["close_mm"], mp["erode_mm"]
            )
        mask_source = f"magnitude ({mp['method']})"
    else:
        mask = mask.astype(bool)
        mask_source = "given"
    tick("mask")
    to_ppm = field_to_ppm(b0_t)
    info: dict = {
        "voxel_size_mm": vs.tolist(),
        "b0_direction_voxel": b0.tolist(),
        "mask_source": mask_source,
    }
    total, noise, mask = field_from_phase(mag, phase, mask, te, vs, to_ppm, p, info, tick)
    r2s = echoes.r2star_loglinear(mag, te, mask)

    if p["background"] == "tfi":  # one step: no background removal, the whole mask kept
        tick("background")
        chi, local = total_field_inversion(total, noise, mask, vs, b0, p, info)
        final_mask = mask.copy()
        tick("inversion")
    else:
        local, final_mask = remove_background(total, noise, mask, vs, b0, p, info, r2s)
        tick("background")
        chi = invert_dipole(local, final_mask, noise, vs, b0, p, info)
        tick("inversion")

    csf = None
    if p["reference"] == "csf":
        csf = reference.csf_mask_from_r2star(r2s, final_mask, vs)
    chi, ref = reference.reference(chi, final_mask, p["reference"], csf)
    tick("reference")
    info.update(
        {
            "reference": p["reference"],
            "reference_value_ppm": ref,
            "reference_voxels": int(csf.sum()) if csf is not None else int(final_mask.sum()),
            "mask_voxels": int(mask.sum()),
            "final_mask_voxels": int(final_mask.sum()),
            "timings_s": timings,
            "parameters": p,
        }
    )
    return QSMResult(chi, total * mask, local, noise, mask, final_mask, r2s, info)
