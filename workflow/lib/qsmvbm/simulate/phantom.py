"""The head model: nilearn's MNI152 brain with synthetic CSF rim, skull, scalp,
neck and air cavities, on an MNI grid extended to hold the whole head.

All maps are on one grid (``HeadModel.affine``, mm); fractions are float32 in
[0, 1]; labels int16. The subject simulator samples these maps through each
subject's transform (see :mod:`.subject`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import yaml
from scipy import ndimage

from .. import atlas
from ..paths import resource_path
from ..templates import load_template
from ..transforms import world_coords

#: deep grey nuclei of the susceptibility model: tissue name -> AAL3 region names
NUCLEI: dict[str, tuple[str, ...]] = {
    "caudate": ("Caudate_L", "Caudate_R"),
    "putamen": ("Putamen_L", "Putamen_R"),
    "pallidum": ("Pallidum_L", "Pallidum_R"),
    "thalamus": ("Thalamus",),
    "substantia_nigra": ("SN_L", "SN_R"),
    "red_nucleus": ("Red_N_L", "Red_N_R"),
}


@dataclass
class HeadModel:
    """Head maps on an extended MNI grid (shape (X, Y, Z), affine voxel->MNI mm)."""

    affine: np.ndarray
    template_slices: tuple  # slices of this grid that hold the template grid
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray  # brain mask as a fraction (the template mask, 0/1 float)
    t1: np.ndarray  # template T1w intensity, 0 outside the brain
    nuclei: np.ndarray  # int16: 0 none, else 1 + index in NUCLEI
    aal: np.ndarray  # AAL3 labels, int16
    extra: dict = field(
        default_factory=dict
    )  # csf_rim, bone, soft_tissue, air_cavity, fat, marrow, vitreous: float32 fractions

    @property
    def shape(self):
        return self.gm.shape

    @property
    def voxel_size(self) -> float:
        return float(abs(self.affine[0, 0]))


def _ellipsoid(coords: np.ndarray, centre, semi_axes) -> np.ndarray:
    q = sum(((coords[i] - centre[i]) / semi_axes[i]) ** 2 for i in range(3))
    return q <= 1.0


def head_geometry() -> dict:
    return yaml.safe_load(resource_path("head_model.yaml").read_text())


@lru_cache(maxsize=2)
def build_head_model(resolution: int = 1) -> HeadModel:
    """Build the head model at the template ``resolution`` (mm). Cached per process."""
    tpl = load_template(resolution)
    geo = head_geometry()
    pad = geo["grid_padding_mm"]
    r = float(resolution)
    lo = np.array([pad["lateral"], pad["anterior_posterior"], pad["inferior"]]) / r
    hi = np.array([pad["lateral"], pad["anterior_posterior"], pad["superior"]]) / r
    lo = lo.astype(int)
    hi = hi.astype(int)
    shape = tuple(int(n + a + b) for n, a, b in zip(tpl.shape, lo, hi))
    affine = tpl.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ lo
    sl = tuple(slice(a, a + n) for a, n in zip(lo, tpl.shape))

    def put(a, dtype=np.float32):
        out = np.zeros(shape, dtype=dtype)
        out[sl] = a
        return out

    gm, wm, csf = put(tpl.gm), put(tpl.wm), put(tpl.csf)
    brain = put(tpl.mask.astype(np.float32))
    t1 = put(tpl.t1)
    aal = atlas.aal3_on_grid(shape, affine)
    aal[brain < 0.5] = 0
    nuclei = np.zeros(shape, dtype=np.int16)
    for i, regions in enumerate(NUCLEI.values()):
        nuclei[atlas.region_mask(aal, regions)] = i + 1

    # Layers by distance (mm) from the brain; the template's brain ends at z = -72,
    # below which an elliptic neck/face takes over.
    dist = ndimage.distance_transform_edt(brain < 0.5, sampling=r).astype(np.float32)
    layers = geo["layers_mm"]
    coords = world_coords(shape, affine)
    neck = geo["neck"]
    z = coords[2]
    below = z < neck["top_z"]
    zmin = z.min()
    frac = np.clip((neck["top_z"] - z) / max(neck["top_z"] - zmin, 1.0), 0, 1)
    ax = neck["semi_axes_mm"][0] + frac * (neck["bottom_semi_axes_mm"][0] - neck["semi_axes_mm"][0])
    ay = neck["semi_axes_mm"][1] + frac * (neck["bottom_semi_axes_mm"][1] - neck["semi_axes_mm"][1])
    cx, cy = neck["centre_xy"]
    neck_mask = below & (((coords[0] - cx) / ax) ** 2 + ((coords[1] - cy) / ay) ** 2 <= 1.0)
    head = (dist <= layers["scalp"]) | neck_mask
    head = ndimage.binary_fill_holes(head)
    cavity = np.zeros(shape, dtype=bool)
    for c in geo["cavities"]:
        cavity |= _ellipsoid(coords, c["centre"], c["semi_axes"])
    cavity &= head & (dist > geo["cavity_brain_margin_mm"])
    real = geo["realistic"]
    eye = np.zeros(shape, bool)
    orbit = np.zeros(shape, bool)
    for e in real["eyes"]:
        d = np.sqrt(sum((coords[i] - e["centre"][i]) ** 2 for i in range(3)))
        eye |= d <= e["radius_mm"]
        orbit |= d <= e["radius_mm"] + real["orbital_fat_mm"]
    del coords
    csf_rim = (dist > 0) & (dist <= layers["csf_rim"]) & ~cavity
    bone = (dist > layers["csf_rim"]) & (dist <= layers["bone"]) & ~cavity
    soft = head & ~csf_rim & ~bone & ~cavity & (brain < 0.5)
    # realistic head (used with anatomy.head: realistic): eyes in orbital fat, scalp fat, marrow
    # the eyes and their fat may reach beyond the layered head's outline (they add to it)
    outside = ~cavity & (brain < 0.5) & (dist > layers["bone"])
    eye &= outside
    orbit &= outside & ~eye
    lo, hi = real["scalp_fat_mm"]
    scalp_fat = soft & (dist > lo) & (dist <= hi)
    lo, hi = real["marrow_mm"]
    marrow = bone & (dist > lo) & (dist <= hi)
    fat = scalp_fat | orbit
    extra = {
        "csf_rim": csf_rim.astype(np.float32),
        "bone": bone.astype(np.float32),
        "soft_tissue": soft.astype(np.float32),
        "air_cavity": cavity.astype(np.float32),
        "fat": fat.astype(np.float32),
        "marrow": marrow.astype(np.float32),
        "vitreous": eye.astype(np.float32),
    }
    return HeadModel(affine, sl, gm, wm, csf, brain, t1, nuclei, aal, extra)


def extra_tissues(model: HeadModel, head: str = "layered") -> dict[str, np.ndarray]:
    """The tissues outside the brain (name of the tissue table -> fraction on the head grid).

    ``layered``: CSF rim, bone and soft tissue. ``realistic``: the fat under the scalp and around the
    eyes, the fatty marrow of the diploe and the eyes' vitreous take their share of the soft tissue
    and bone (the eyes and orbital fat may reach beyond the layered outline and add to the head).
    """
    x = model.extra
    if head == "layered":
        return {t: x[t] for t in ("csf_rim", "bone", "soft_tissue")}
    if head != "realistic":
        raise ValueError(f"unknown head model {head!r} (layered or realistic)")
    bone = np.clip(x["bone"] - x["marrow"], 0, 1)
    soft = np.clip(x["soft_tissue"] - x["fat"] - x["vitreous"], 0, 1)
    fat = np.clip(x["fat"] - x["marrow"], 0, 1)
    return {
        "csf_rim": x["csf_rim"],
        "bone": bone,
        "marrow": x["marrow"],
        "soft_tissue": soft,
        "fat": fat,
        "vitreous": np.clip(x["vitreous"] - fat, 0, 1),
    }


def region_weight(model: HeadModel, region: dict) -> np.ndarray:
    """Weight map (float32, 0..1) of a planted-effect region on the head grid.

    ``region``: ``{atlas_labels: [...]}``, ``{sphere_mni: [x, y, z], radius_mm: r}``
    or both (the intersection). Restricted to the brain.

    ``profile`` (default ``uniform``): 1 everywhere in the region, a plateau whose
    peak statistic falls wherever noise puts it. ``gaussian``: a graded effect,
    ``exp(-4 ln2 d^2 / profile_fwhm_mm^2)`` with ``d`` (mm) the distance to the
    sphere centre (or, without a sphere, to the region's centroid), so the effect
    is 1 at the centre and the region is its support.
    """
    mask = model.brain > 0.5
    if "atlas_labels" in region:
        mask &= atlas.region_mask(model.aal, region["atlas_labels"])
    coords = None
    if "sphere_mni" in region:
        coords = world_coords(model.shape, model.affine)
        c = np.asarray(region["sphere_mni"], dtype=np.float32)
        d2 = sum((coords[i] - c[i]) ** 2 for i in range(3))
        mask &= d2 <= region["radius_mm"] ** 2
    if not mask.any():
        raise ValueError(f"planted-effect region {region} contains no brain voxel")
    profile = region.get("profile", "uniform")
    if profile == "uniform":
        return mask.astype(np.float32)
    if profile != "gaussian":
        raise ValueError(f"planted-effect region {region}: unknown profile {profile!r}")
    if coords is None:
        coords = world_coords(model.shape, model.affine)
        c = np.array([coords[i][mask].mean() for i in range(3)], dtype=np.float32)
        d2 = sum((coords[i] - c[i]) ** 2 for i in range(3))
    fwhm = float(region["profile_fwhm_mm"])
    return (np.exp(-4.0 * np.log(2.0) * d2 / (fwhm * fwhm)) * mask).astype(np.float32)
