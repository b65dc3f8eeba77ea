"""One simulated subject: multi-echo GRE magnitude/phase, T1w, and the ground truth.

Model (units in brackets):

* Anatomy is the head model (:mod:`.phantom`) pulled through the subject's
  transform ``m = psi(T_s x)``: ``x`` a scanner-world point of session ``s``
  (GRE or T1w) [mm], ``T_s`` the inverse of the head pose (rotation, per-axis
  scale, translation), ``psi`` a smooth diffeomorphism (stationary velocity
  field, scaling and squaring) and ``m`` the MNI point with the same anatomy.
* Susceptibility [ppm, relative to water]: tissue fractions times per-subject
  tissue values drawn around the tissue table; deep nuclei from AAL3; planted
  effects add ``m_i * chi_delta`` in their region. For the field, everything is
  taken relative to air (air 0, tissue ``chi - chi_air``), so the head/air
  boundary, bone and the cavities make a realistic background field.
* Field [ppm of B0] = dipole convolution (B0 along scanner z, expressed in the
  GRE voxel axes so oblique slabs are handled) on an extended, zero-padded grid.
  The *local* field is that of the brain's susceptibility alone.
* GRE signal: ``S_n = PD exp(-TE_n R2*) exp(i (phi0 + 2 pi gamma B0 field TE_n))``
  plus complex Gaussian noise, per-voxel PD and R2* from the tissue fractions.
* T1w: template intensities inside the brain, tissue values outside, a smooth
  multiplicative bias field and Rician noise.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import GAMMA_HZ_PER_T, __version__
from ..bids import raw_name
from ..dipole import b0_direction_from_affine, forward_field
from ..io import save_json, save_nifti
from ..layout import TRUTH_FILES, truth_file
from ..templates import TEMPLATE_SPACE
from ..transforms import (
    StationaryVelocityDeformation,
    affine_matrix,
    apply_affine,
    grid_affine,
    rotation_matrix,
    sample,
    world_coords,
)
from .phantom import (
    NUCLEI,
    HeadModel,
    build_head_model,
    extra_tissues,
    head_geometry,
    region_weight,
)

#: MNI point placed near the centre of each field of view (mm)
BRAIN_CENTRE_MNI = np.array([0.0, -18.0, 8.0])
#: extension of the GRE grid for the background-field computation (mm): lateral/AP, inferior, superior
FIELD_MARGIN_MM = (40.0, 80.0, 24.0)
#: tissue labels of the truth segmentation, as in qsm-forward's head phantom (read by qsm-ci's scorer)
DSEG_LABELS = {
    "caudate": 1,
    "pallidum": 2,
    "putamen": 3,
    "red_nucleus": 4,
    "substantia_nigra": 6,
    "thalamus": 7,
    "wm": 8,
    "cortical_gm": 9,
    "csf": 10,
}
#: maximum scanner integer of each phase encoding, and its offset
PHASE_SCALING = {"scanner_0_4095": (4095.0, 0.0), "scanner_pm4096": (8191.0, -4096.0)}


def subject_rng(seed: int, participant_id: str) -> np.random.Generator:
    """Generator for one subject, independent of cohort order and size."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, 7, zlib.crc32(participant_id.encode())])
    )


@dataclass
class SubjectTransform:
    """The true map from a subject's scanner space (per session) to MNI.

    ``pose_inv[s]`` (4x4) maps session-``s`` world mm to the undeformed MNI
    frame; ``deformation`` then maps to MNI: ``m = psi(pose_inv[s] @ x)``.
    """

    pose_inv: dict
    deformation: StationaryVelocityDeformation
    atrophy: tuple | None = (
        None  # (affine, displacement (3, X, Y, Z) mm) of the planted local volume changes
    )

    def to_mni(self, session: str, pts_mm: np.ndarray) -> np.ndarray:
        """MNI coordinates (3, ...) of world points (3, ...) of ``session``."""
        m = self.pose_inv[session]
        y = np.empty_like(pts_mm, dtype=np.float32)
        for r in range(3):
            y[r] = m[r, 0] * pts_mm[0] + m[r, 1] * pts_mm[1] + m[r, 2] * pts_mm[2] + m[r, 3]
        y = self.deformation(y)
        if self.atrophy is not None:
            aff, disp = self.atrophy
            y = y + np.stack([sample(c, aff, y, order=1) for c in disp])
        return y


def draw_transform(
    rng: np.random.Generator, anat: dict, sex: str, bbox_mm
) -> tuple[SubjectTransform, dict]:
    """Draw pose, head scale, between-scan motion and the nonlinear deformation."""
    rot = rng.uniform(-1, 1, 3) * anat["max_rotation_deg"]
    trans = rng.uniform(-1, 1, 3) * anat["max_translation_mm"]
    sex_shift = anat["male_scale"] * (1 if sex == "M" else -1 if sex == "F" else 0)
    scale = anat["mean_head_scale"] * (1.0 + sex_shift + rng.normal(0, anat["scale_sd"], 3))
    pose_gre = affine_matrix(rotation_matrix(rot) @ np.diag(scale), trans)
    # between-scan motion: a small rigid about the head centre
    mrot = rotation_matrix(rng.uniform(-1, 1, 3) * anat["between_scan_rotation_deg"])
    centre = apply_affine(pose_gre, BRAIN_CENTRE_MNI)
    mtrans = rng.uniform(-1, 1, 3) * anat["between_scan_translation_mm"]
    motion = affine_matrix(mrot, centre - mrot @ centre + mtrans)
    pose_t1 = motion @ pose_gre
    deformation = StationaryVelocityDeformation(
        rng,
        bbox_mm,
        max_velocity_mm=anat["deformation_mm"],
        smoothness_mm=anat["deformation_smoothness_mm"],
    )
    tf = SubjectTransform(
        {"MEGRE": np.linalg.inv(pose_gre), "T1w": np.linalg.inv(pose_t1)}, deformation
    )
    info = {
        "rotation_deg": rot.tolist(),
        "translation_mm": trans.tolist(),
        "head_scale": scale.tolist(),
        "pose_MEGRE": pose_gre.tolist(),
        "pose_T1w": pose_t1.tolist(),
        "MEGRE_to_T1w_world": motion.tolist(),
        "deformation_min_jacobian": deformation.min_jacobian(),
    }
    return tf, info


#: tissues of the realistic head only: drawn after the others, and not at all when their SD is 0, so
#: that adding them to the table left every layered head's random stream (and the demo) as it was
HEAD_EXTRA_TISSUES = ("fat", "marrow", "vitreous")


def draw_tissue_values(rng: np.random.Generator, tissue: pd.DataFrame, sd_scale: float) -> dict:
    """Per-subject susceptibility of every tissue [ppm], around the table's mean."""
    out = {
        t: float(row.chi_ppm + rng.normal(0, row.chi_sd_ppm * sd_scale))
        for t, row in tissue.iterrows()
        if t not in HEAD_EXTRA_TISSUES
    }
    for t in HEAD_EXTRA_TISSUES:
        if t in tissue.index:
            row = tissue.loc[t]
            sd = float(row.chi_sd_ppm) * sd_scale
            out[t] = float(row.chi_ppm + (rng.normal(0, sd) if sd > 0 else 0.0))
    return out


@lru_cache(maxsize=16)
def _cached_region_weight(resolution: int, region_json: str) -> np.ndarray:
    return region_weight(build_head_model(resolution), json.loads(region_json))


def effect_weight(resolution: int, region: dict) -> np.ndarray:
    """Weight map of a planted effect's region on the head grid (cached)."""
    return _cached_region_weight(resolution, json.dumps(region, sort_keys=True))


#: grid spacing and source smoothing (Gaussian sigma) of the planted-atrophy displacement fields (mm)
ATROPHY_SPACING_MM = 2.0
ATROPHY_SMOOTH_MM = 0.5


@lru_cache(maxsize=16)
def _unit_atrophy_field(resolution: int, region_json: str) -> tuple[np.ndarray, np.ndarray]:
    import scipy.fft as sfft
    from scipy import ndimage

    hm = build_head_model(resolution)
    w = region_weight(hm, json.loads(region_json))
    step = int(round(ATROPHY_SPACING_MM / hm.voxel_size))
    if step > 1:
        w = ndimage.uniform_filter(w, step)[::step, ::step, ::step]
    aff = hm.affine.copy()
    aff[:3, :3] *= step
    src = ndimage.gaussian_filter(w.astype(np.float64), ATROPHY_SMOOTH_MM / ATROPHY_SPACING_MM)
    # pull-map displacement u = grad(phi) with lap(phi) = -src, so div u = -src: the field of a
    # unit volume change g = +1. A subject's field is g * u: div = -g src, pull-map Jacobian
    # about 1 - g, so an MNI region stands for (1 + g) times its volume in the subject.
    pad = [n // 2 for n in src.shape]
    big = np.pad(src, [(p, p) for p in pad])
    k = np.meshgrid(
        *[np.fft.fftfreq(n, ATROPHY_SPACING_MM) for n in big.shape], indexing="ij", sparse=True
    )
    k2 = sum(ki * ki for ki in k)
    k2[0, 0, 0] = 1.0
    phi_k = sfft.fftn(-big) / (-4 * np.pi**2 * k2)
    phi_k[0, 0, 0] = 0
    # the gradient in Fourier space, so that div u = -src holds on the grid: np.gradient of phi
    # (central differences, whose divergence is a Laplacian over 2 voxels) blurred the change and,
    # with a 1 mm source smoothing, realised 89% of the planted weighted volume change (this: 98%)
    inner = tuple(slice(p, p + n) for p, n in zip(pad, src.shape))
    u = np.stack([np.real(sfft.ifftn(2j * np.pi * ki * phi_k))[inner] for ki in k])
    return aff, u.astype(np.float32)


def atrophy_field(resolution: int, effects: list[dict], multipliers: dict):
    """Displacement (pull map, MNI mm) making each effect's region change volume by
    ``multiplier * gm_change`` (e.g. -0.1: the subject's tissue there is 10% smaller).

    Returns ``(affine, (3, X, Y, Z) displacement)`` or None when no effect changes volume.
    """
    total = None
    aff = None
    for e in effects:
        g = multipliers.get(e["name"], 0.0) * e["gm_change"]
        if not g:
            continue
        aff, u = _unit_atrophy_field(resolution, json.dumps(e["region"], sort_keys=True))
        total = g * u if total is None else total + g * u
    return None if total is None else (aff, total.astype(np.float32))


def subject_maps(
    hm: HeadModel,
    tissue: pd.DataFrame,
    chi_values: dict,
    effects: list[dict],
    multipliers: dict,
    age: float,
    age_slope: float,
    resolution: int,
    background: bool,
    head: str = "layered",
) -> dict:
    """The subject's tissue maps on the head grid (MNI space), before warping.

    ``head``: ``layered`` (CSF rim, bone, soft tissue) or ``realistic`` (also scalp and orbital fat,
    fatty marrow in the diploe, the eyes; :func:`.phantom.extra_tissues`).

    Returns float32 maps: ``chi_brain`` (ppm rel. water, brain only), ``chi_total``
    (ppm rel. air, the whole head), ``shift_ppm`` (realistic head only: chemical shift of fat, ppm,
    not a source of field), ``pd``, ``r2s`` (1/s), ``t1`` (T1w intensity), ``gm``, ``wm``, ``csf`` (fractions after
    atrophy) and ``intracranial`` (fraction).
    """
    nuc = hm.nuclei > 0
    age_factor = (
        float(np.clip(1.0 + age_slope * (age - 50.0), 0.5, 1.5)) if np.isfinite(age) else 1.0
    )
    gm = np.where(nuc, hm.gm, hm.gm * age_factor).astype(np.float32)
    chi_brain = np.zeros(hm.shape, np.float32)
    for e in effects:
        m = multipliers.get(e["name"], 0.0)
        if m == 0:
            continue
        w = effect_weight(resolution, e["region"])
        if e["chi_delta_ppm"]:
            chi_brain += np.float32(m * e["chi_delta_ppm"]) * w
    np.clip(gm, 0, 1, out=gm)
    lost = (
        hm.gm - gm
    )  # GM turned into CSF by the age term; local atrophy is a deformation (atrophy_field)
    csf = np.clip(hm.csf + lost, 0, 1)
    wm = hm.wm
    v = chi_values
    chi_tissue = gm * v["cortical_gm"] + wm * v["wm"] + csf * v["csf"]
    pd_t = tissue["proton_density"]
    r2_t = 1000.0 / tissue["t2star_ms"]
    pd = gm * pd_t["cortical_gm"] + wm * pd_t["wm"] + csf * pd_t["csf"]
    pdr2 = (
        gm * pd_t["cortical_gm"] * r2_t["cortical_gm"]
        + wm * pd_t["wm"] * r2_t["wm"]
        + csf * pd_t["csf"] * r2_t["csf"]
    )
    for i, name in enumerate(NUCLEI):
        sel = hm.nuclei == i + 1
        chi_tissue[sel] = v[name]
        pd[sel] = pd_t[name]
        pdr2[sel] = pd_t[name] * r2_t[name]
    chi_brain += chi_tissue * hm.brain
    pd = pd * hm.brain
    pdr2 = pdr2 * hm.brain
    t1 = (
        hm.t1
        + lost * np.float32(tissue.loc["csf", "t1w"] - tissue.loc["cortical_gm", "t1w"]) * hm.brain
    )
    occupancy = hm.brain.copy()
    chi_total = chi_brain.copy()
    fractions = extra_tissues(hm, head)
    for t, f in fractions.items():
        occupancy += f
        pd += f * pd_t[t]
        pdr2 += f * pd_t[t] * r2_t[t]
        t1 += f * np.float32(tissue.loc[t, "t1w"])
        if background:
            chi_total += f * np.float32(v[t])
    if background:
        chi_total -= occupancy * np.float32(v["air"])
    with np.errstate(invalid="ignore", divide="ignore"):
        r2s = np.where(pd > 1e-6, pdr2 / pd, 0.0).astype(np.float32)
    maps = {
        "chi_brain": chi_brain.astype(np.float32),
        "chi_total": chi_total.astype(np.float32),
        "pd": pd.astype(np.float32),
        "r2s": r2s,
        "t1": t1.astype(np.float32),
        "gm": (gm * hm.brain).astype(np.float32),
        "wm": (wm * hm.brain).astype(np.float32),
        "csf": (csf * hm.brain + hm.extra["csf_rim"]).astype(np.float32),
        "intracranial": np.clip(hm.brain + hm.extra["csf_rim"], 0, 1).astype(np.float32),
    }
    if "fat" in fractions:  # the realistic head: fat's chemical shift, in fat and in the marrow
        shift = np.float32(head_geometry()["realistic"]["fat_shift_ppm"])
        maps["shift_ppm"] = ((fractions["fat"] + fractions["marrow"]) * shift).astype(np.float32)
    return maps


def smooth_phase_offset(rng: np.random.Generator, coords: np.ndarray, centre) -> np.ndarray:
    """A smooth receive/transmit phase offset [rad]: random constant, linear and quadratic terms."""
    c = [(coords[i] - centre[i]) / 100.0 for i in range(3)]  # in units of 10 cm
    phi = np.full(coords.shape[1:], rng.uniform(-np.pi, np.pi), dtype=np.float32)
    for i in range(3):
        phi += np.float32(rng.normal(0, 0.6)) * c[i] + np.float32(rng.normal(0, 0.3)) * c[i] * c[i]
    return phi


def bias_field(rng: np.random.Generator, coords: np.ndarray, centre, strength: float) -> np.ndarray:
    """Smooth multiplicative intensity bias ``exp(s * p(x))``, ``p`` a random quadratic with peak |p| about 1."""
    c = [(coords[i] - centre[i]) / 100.0 for i in range(3)]
    p = np.zeros(coords.shape[1:], dtype=np.float32)
    for i in range(3):
        p += np.float32(rng.normal(0, 1)) * c[i] + np.float32(rng.normal(0, 0.5)) * (
            c[i] * c[i] - 0.25
        )
    p += np.float32(rng.normal(0, 0.5)) * c[0] * c[1]
    peak = float(np.percentile(np.abs(p), 99)) or 1.0
    return np.exp(np.float32(strength) * p / peak).astype(np.float32)


def _ext_grid(shape, affine, voxel_size, margins_mm):
    """The GRE grid extended by margins (mm) along its axes; returns shape, affine and the FOV slices."""
    lat, inf, sup = margins_mm
    lo = np.array([lat, lat, inf]) / np.asarray(voxel_size)
    hi = np.array([lat, lat, sup]) / np.asarray(voxel_size)
    lo = np.ceil(lo).astype(int)
    hi = np.ceil(hi).astype(int)
    ext_shape = tuple(int(n + a + b) for n, a, b in zip(shape, lo, hi))
    ext_aff = affine.copy()
    ext_aff[:3, 3] = affine[:3, :3] @ (-lo) + affine[:3, 3]
    sl = tuple(slice(a, a + n) for a, n in zip(lo, shape))
    return ext_shape, ext_aff, sl


def truth_segmentation(hm: HeadModel, maps: dict, mni: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Label map (uint8, :data:`DSEG_LABELS`) of GRE voxels: nuclei, else the largest of GM/WM/CSF."""
    fractions = np.stack([sample(maps[k], hm.affine, mni) for k in ("gm", "wm", "csf")])
    tissue = np.array([DSEG_LABELS["cortical_gm"], DSEG_LABELS["wm"], DSEG_LABELS["csf"]], np.uint8)
    dseg = tissue[np.argmax(fractions, axis=0)]
    nuclei = sample(hm.nuclei.astype(np.float32), hm.affine, mni, order=0).astype(np.int16)
    for i, name in enumerate(NUCLEI):
        dseg[nuclei == i + 1] = DSEG_LABELS[name]
    dseg[~mask] = 0
    return dseg


def phase_to_storage(phase: np.ndarray, units: str) -> tuple[np.ndarray, type]:
    """Wrapped phase [rad, -pi..pi) -> stored values and dtype for ``units``."""
    if units == "radians":
        return phase.astype(np.float32), np.float32
    top, offset = PHASE_SCALING[units]
    vals = np.rint((phase + np.pi) / (2 * np.pi) * (top + 1)) % (top + 1) + offset
    return vals, np.int16


def bids_paths(bids_dir: Path, pid: str, n_echoes: int) -> dict:
    """Paths of one subject's raw files."""
    anat = Path(bids_dir) / pid / "anat"
    out = {"T1w": anat / raw_name(pid, "T1w"), "T1w_json": anat / raw_name(pid, "T1w", ext="json")}
    for n in range(1, n_echoes + 1):
        for part in ("mag", "phase"):
            ents = {"echo": n, "part": part}
            out[f"echo-{n}_{part}"] = anat / raw_name(pid, "MEGRE", ents)
            out[f"echo-{n}_{part}_json"] = anat / raw_name(pid, "MEGRE", ents, ext="json")
    return out


def truth_paths(truth_dir: Path, pid: str) -> dict:
    """Paths of one subject's ground-truth files under ``derivatives/simulation`` (keys:
    :data:`qsmvbm.layout.TRUTH_FILES`); ``truth_dir`` is that folder or the simulated dataset."""
    return {key: truth_file(truth_dir, key, pid) for key in TRUTH_FILES}


def load_true_transform(truth_dir: Path, pid: str) -> SubjectTransform:
    """Rebuild a subject's true transform from its ground-truth files."""
    import nibabel as nib

    p = truth_paths(truth_dir, pid)
    info = json.loads(p["xfm_json"].read_text())
    img = nib.load(p["deformation"])
    deformation = StationaryVelocityDeformation.__new__(StationaryVelocityDeformation)
    deformation.affine = img.affine.copy()
    deformation.spacing = float(abs(img.affine[0, 0]))
    deformation.disp_mm = np.moveaxis(img.get_fdata(dtype=np.float32), -1, 0)
    pose_inv = {s: np.asarray(m) for s, m in info["world_to_unwarped_mni"].items()}
    atrophy = None
    if p["atrophy"].exists():
        a = nib.load(p["atrophy"])
        if a.shape[0] > 2:
            atrophy = (a.affine.copy(), np.moveaxis(a.get_fdata(dtype=np.float32), -1, 0))
    return SubjectTransform(pose_inv, deformation, atrophy)


def simulate_subject(
    cfg: dict,
    participant: dict,
    multipliers: dict,
    tissue: pd.DataFrame,
    bids_dir: Path,
    truth_dir: Path,
) -> dict:
    """Simulate one subject and write its BIDS files and ground truth.

    Parameters
    ----------
    cfg : validated simulation config. participant : a row of participants.tsv
    (dict). multipliers : effect name -> multiplier for this subject.
    tissue : tissue table. bids_dir, truth_dir : output roots.

    Returns the truth summary (also written as ``*_desc-truth.json``).
    """
    pid = participant["participant_id"]
    rng = subject_rng(cfg["seed"], pid)
    anat = cfg["anatomy"]
    res = anat["template_resolution"]
    hm = build_head_model(res)
    lo = apply_affine(hm.affine, np.zeros(3))
    hi = apply_affine(hm.affine, np.asarray(hm.shape) - 1)
    tf, pose_info = draw_transform(rng, anat, participant.get("sex", "n/a"), (lo, hi))
    tf.atrophy = atrophy_field(res, cfg["effects"], multipliers)
    chi_values = draw_tissue_values(rng, tissue, cfg["susceptibility"]["subject_sd_scale"])
    maps = subject_maps(
        hm,
        tissue,
        chi_values,
        cfg["effects"],
        multipliers,
        float(participant.get("age", np.nan)),
        anat["age_gm_slope_per_year"],
        res,
        cfg["susceptibility"]["background"],
        anat["head"],
    )

    # ---------------- GRE ----------------
    g = cfg["gre"]
    vs = np.asarray(g["voxel_size_mm"], dtype=float)
    shape = tuple(g["matrix"])
    pose_gre = np.linalg.inv(tf.pose_inv["MEGRE"])
    centre = apply_affine(pose_gre, BRAIN_CENTRE_MNI) + rng.uniform(-4, 4, 3)
    gre_affine = grid_affine(shape, vs, centre, rotation_matrix([g["oblique_deg"], 0, 0]))
    ext_shape, ext_affine, fov = _ext_grid(shape, gre_affine, vs, FIELD_MARGIN_MM)
    world = world_coords(ext_shape, ext_affine)
    mni = tf.to_mni("MEGRE", world)
    chi_total = sample(maps["chi_total"], hm.affine, mni)
    b0 = b0_direction_from_affine(gre_affine)
    total_field = forward_field(chi_total, vs, b0, pad=16)[fov]
    del chi_total
    if "shift_ppm" in maps:  # fat's chemical shift: a frequency offset, not a field source
        total_field += sample(maps["shift_ppm"], hm.affine, mni[(slice(None),) + fov])
    mni_fov = np.ascontiguousarray(mni[(slice(None),) + fov])
    world_fov = np.ascontiguousarray(world[(slice(None),) + fov])
    del mni, world
    chi_brain = sample(maps["chi_brain"], hm.affine, mni_fov)
    brain_frac = sample(hm.brain, hm.affine, mni_fov)
    gre_mask = brain_frac > 0.5
    # the truth: chi inside the brain mask, and exactly its field (the local field)
    chi_true = np.where(gre_mask, chi_brain, 0).astype(np.float32)
    del chi_brain, brain_frac
    local_field = forward_field(chi_true, vs, b0)
    dseg = truth_segmentation(hm, maps, mni_fov, gre_mask)
    pd = sample(maps["pd"], hm.affine, mni_fov)
    head = pd > 1e-3
    r2s = sample(maps["r2s"], hm.affine, mni_fov)
    phi0 = smooth_phase_offset(rng, world_fov, centre)
    del world_fov, mni_fov
    tes = [g["te1_ms"] + i * g["delta_te_ms"] for i in range(g["n_echoes"])]
    b0_t = g["field_strength_t"]
    field_hz = total_field * np.float32(1e-6 * GAMMA_HZ_PER_T * b0_t)
    s_ref = float(pd[gre_mask].mean() * np.exp(-tes[0] * 1e-3 * np.median(r2s[gre_mask])))
    sigma = s_ref / g["snr"]
    mag_scale = 1000.0 / s_ref  # brain magnitude about 1000 at TE1, as int16 like a scanner
    paths = bids_paths(bids_dir, pid, g["n_echoes"])
    common_json = {
        "MagneticFieldStrength": b0_t,
        "RepetitionTime": g["tr_ms"] / 1000.0,
        "FlipAngle": g["flip_angle_deg"],
        "ImagingFrequency": GAMMA_HZ_PER_T * b0_t / 1e6,
        "Manufacturer": "qsmvbm-simulate",
        "ManufacturersModelName": f"qsmvbm {__version__}",
        "MRAcquisitionType": "3D",
    }
    for n, te in enumerate(tes, start=1):
        te_s = te / 1000.0
        mag = pd * np.exp(-te_s * r2s)
        phase = phi0 + np.float32(2 * np.pi * te_s) * field_hz
        noise = rng.normal(0, sigma, (2, *shape)).astype(np.float32)
        re = mag * np.cos(phase) + noise[0]
        im = mag * np.sin(phase) + noise[1]
        del noise
        mag_n = np.hypot(re, im) * np.float32(mag_scale)
        ph_n = np.arctan2(im, re)
        del re, im
        ph_n = np.where(ph_n >= np.pi, ph_n - 2 * np.pi, ph_n)
        stored, dtype = phase_to_storage(ph_n, g["phase_units"])
        sidecar = dict(common_json, EchoTime=te_s, EchoNumber=n)
        save_nifti(mag_n, gre_affine, paths[f"echo-{n}_mag"], dtype=np.int16)
        save_json(
            dict(sidecar, ImageType=["ORIGINAL", "PRIMARY", "M"]), paths[f"echo-{n}_mag_json"]
        )
        save_nifti(stored, gre_affine, paths[f"echo-{n}_phase"], dtype=dtype)
        phase_json = dict(sidecar, ImageType=["ORIGINAL", "PRIMARY", "P"])
        if g["phase_units"] == "radians":
            phase_json["Units"] = "rad"
        else:
            phase_json["Units"] = "arbitrary"
            phase_json["PhaseEncodingRange"] = g["phase_units"]
        save_json(phase_json, paths[f"echo-{n}_phase_json"])
    del pd, r2s, phi0, field_hz

    # ---------------- T1w ----------------
    t = cfg["t1w"]
    vs1 = np.asarray(t["voxel_size_mm"], dtype=float)
    shape1 = tuple(t["matrix"])
    pose_t1 = np.linalg.inv(tf.pose_inv["T1w"])
    centre1 = apply_affine(pose_t1, BRAIN_CENTRE_MNI) + rng.uniform(-4, 4, 3)
    t1_affine = grid_affine(shape1, vs1, centre1)
    world1 = world_coords(shape1, t1_affine)
    mni1 = tf.to_mni("T1w", world1)
    t1 = sample(maps["t1"], hm.affine, mni1)
    gm1 = sample(maps["gm"], hm.affine, mni1)
    wm1 = sample(maps["wm"], hm.affine, mni1)
    csf1 = sample(maps["csf"], hm.affine, mni1)
    icv1 = sample(maps["intracranial"], hm.affine, mni1)
    brain1 = sample(hm.brain, hm.affine, mni1) > 0.5
    del mni1
    bias = bias_field(rng, world1, centre1, t["bias_field_strength"])
    del world1
    sig1 = float(tissue.loc["wm", "t1w"]) / t["snr"]
    noisy = np.hypot(
        t1 * bias + rng.normal(0, sig1, shape1).astype(np.float32),
        rng.normal(0, sig1, shape1).astype(np.float32),
    )
    save_nifti(noisy * 1000.0, t1_affine, paths["T1w"], dtype=np.int16)
    save_json(
        {
            "MagneticFieldStrength": b0_t,
            "RepetitionTime": 0.00666,
            "EchoTime": 0.00293,
            "InversionTime": 0.45,
            "FlipAngle": 12,
            "Manufacturer": "qsmvbm-simulate",
            "MRAcquisitionType": "3D",
        },
        paths["T1w_json"],
    )

    # ---------------- truth ----------------
    tp = truth_paths(truth_dir, pid)
    save_nifti(chi_true, gre_affine, tp["chi"])
    save_json({"Units": "ppm", "Reference": "water (CSF ~ 0)", "Space": "MEGRE"}, tp["chi_json"])
    save_nifti(local_field * head, gre_affine, tp["local_field"])
    save_json(
        {
            "Units": "ppm",
            "Description": "field of the brain's susceptibility (the Chimap) alone; 0 outside the head",
        },
        tp["local_field_json"],
    )
    save_nifti(total_field * head, gre_affine, tp["total_field"])
    save_json(
        {
            "Units": "ppm",
            "Description": "field of the whole head (brain, bone, air); 0 outside the head",
        },
        tp["total_field_json"],
    )
    save_nifti(gre_mask, gre_affine, tp["gre_mask"], dtype=np.uint8)
    save_nifti(dseg, gre_affine, tp["dseg"], dtype=np.uint8)
    save_json(
        {
            "Labels": {str(v): k for k, v in DSEG_LABELS.items()},
            "Description": "tissue labels in qsm-forward's head-phantom scheme (qsm-ci scorer)",
        },
        tp["dseg_json"],
    )
    save_nifti(brain1, t1_affine, tp["t1_mask"], dtype=np.uint8)
    save_nifti(gm1, t1_affine, tp["gm"])
    save_nifti(wm1, t1_affine, tp["wm"])
    save_nifti(csf1, t1_affine, tp["csf"])
    save_nifti(np.moveaxis(tf.deformation.disp_mm, 0, -1), tf.deformation.affine, tp["deformation"])
    if tf.atrophy is not None:
        save_nifti(np.moveaxis(tf.atrophy[1], 0, -1), tf.atrophy[0], tp["atrophy"])
    else:
        save_nifti(np.zeros((2, 2, 2, 3), np.float32), np.eye(4), tp["atrophy"])
    save_json(
        {
            "Description": (
                "True subject-to-template map: m = z + a(z), z = y + u(y), y = world_to_unwarped_mni[session] @ x, "
                "x a scanner-world point (mm) of the session, u the displacement (mm) stored in the "
                "velocityexp deformation image and a the planted local volume changes stored in the "
                "atrophy image (4D, last axis x/y/z, each on its own grid in template mm; 0 outside). "
                "qsmvbm.simulate.subject.load_true_transform rebuilds it."
            ),
            "TemplateSpace": TEMPLATE_SPACE,
            "world_to_unwarped_mni": {s: m.tolist() for s, m in tf.pose_inv.items()},
            "MEGRE_to_T1w_world": pose_info["MEGRE_to_T1w_world"],
        },
        tp["xfm_json"],
    )
    voxvol = float(np.prod(vs1))
    summary = {
        "participant_id": pid,
        "group": participant.get("group"),
        "TIV_ml": float(icv1.sum() * voxvol / 1000.0),
        "GM_ml": float(gm1.sum() * voxvol / 1000.0),
        "WM_ml": float(wm1.sum() * voxvol / 1000.0),
        "CSF_ml": float(csf1.sum() * voxvol / 1000.0),
        "tissue_chi_ppm": chi_values,
        "effect_multipliers": multipliers,
        "gre_noise_sd_relative": 1.0 / g["snr"],
        "b0_direction_voxel": b0.tolist(),
        "echo_times_s": [te / 1000.0 for te in tes],
        **pose_info,
    }
    save_json(summary, tp["truth_json"])
    return summary
