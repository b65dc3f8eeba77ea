"""The MNI152 template and tissue priors packaged with nilearn (no download).

nilearn ships the ICBM 2009a nonlinear *symmetric* template
(``mni_icbm152_*_tal_nlin_sym_09a``), skull-stripped, with GM and WM
probability maps and a brain mask, at 1 mm (197x233x189) and resampled to
2 mm (99x117x95). Its TemplateFlow identifier is ``MNI152NLin2009aSym``.
There is no CSF prior: CSF = brain mask - GM - WM, clipped at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TEMPLATE_SPACE = "MNI152NLin2009aSym"
#: where the template is published (the SpatialReference of template-space derivatives)
TEMPLATE_URL = "https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009"


@dataclass(frozen=True)
class Template:
    """Template images on one grid. Arrays are float32, shape (X, Y, Z); affine in mm."""

    resolution: int
    affine: np.ndarray
    t1: np.ndarray  # T1w intensity, 0..1
    gm: np.ndarray  # GM probability, 0..1
    wm: np.ndarray  # WM probability, 0..1
    csf: np.ndarray  # CSF probability, 0..1 (mask - GM - WM)
    mask: np.ndarray  # brain mask, bool

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.t1.shape


@lru_cache(maxsize=4)
def load_template(resolution: int = 2) -> Template:
    """Load nilearn's MNI152 2009 template and priors at ``resolution`` mm (1 or 2)."""
    if resolution not in (1, 2):
        raise ValueError(f"template resolution must be 1 or 2 mm, got {resolution!r}")
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=resolution)
    gm = datasets.load_mni152_gm_template(resolution=resolution)
    wm = datasets.load_mni152_wm_template(resolution=resolution)
    mask = datasets.load_mni152_brain_mask(resolution=resolution)
    affine = t1.affine.copy()
    t1a = t1.get_fdata(dtype=np.float32)
    gma = np.clip(gm.get_fdata(dtype=np.float32), 0, 1)
    wma = np.clip(wm.get_fdata(dtype=np.float32), 0, 1)
    mk = mask.get_fdata(dtype=np.float32) > 0.5
    # GM + WM can exceed 1 where the priors overlap; renormalise there.
    tot = gma + wma
    over = tot > 1
    gma[over] /= tot[over]
    wma[over] /= tot[over]
    csf = np.where(mk, np.clip(1.0 - gma - wma, 0, 1), 0).astype(np.float32)
    for a in (t1a, gma, wma, csf):
        a.setflags(write=False)
    mk.setflags(write=False)
    return Template(resolution, affine, t1a, gma, wma, csf, mk)
