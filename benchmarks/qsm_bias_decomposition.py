"""Where the deep-grey bias of the default QSM chain comes from, on qsm-forward's dataset.

Uses the data written by ``qsm_accuracy.py`` (run it first). Deep-grey mean errors (ppm, both maps
referenced to their mean over the scored mask) of:

1. the default chain (complex fit, Laplacian unwrapping, V-SHARP, STAR-like);
2. the STAR-like inversion of the TRUE local field (forward of the true chi inside the brain) in the
   chain's final mask: the inversion's own share;
3. the STAR-like inversion of V-SHARP applied to the true local field: adds V-SHARP's share;
4. the chain with V-SHARP's TSVD threshold 0.02 instead of the study's 0.05.

Writes ``benchmarks/results/qsm_bias_decomposition.json``.

    python benchmarks/qsm_bias_decomposition.py
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from qsm_accuracy import DGM, head_crop

from qsmvbm.bids import load_megre
from qsmvbm.dipole import forward_field, voxel_sizes
from qsmvbm.qsm.background import vsharp
from qsmvbm.qsm.inversion import star
from qsmvbm.qsm.pipeline import reconstruct
from qsmvbm.simulate.cohort_io import truth_dir
from qsmvbm.simulate.subject import truth_paths

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "out" / "qsm_accuracy"


def dgm_errors(chi: np.ndarray, truth: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> dict:
    t = np.where(mask, truth - truth[mask].mean(), 0)
    c = np.where(mask, chi - chi[mask].mean(), 0)
    return {
        name: round(float(c[mask & (seg == lab)].mean() - t[mask & (seg == lab)].mean()), 4)
        for lab, name in DGM.items()
    }


def main() -> None:
    tp = truth_paths(truth_dir(WORK / "sim"), "sub-NC001")
    truth = nib.load(tp["chi"]).get_fdata(dtype=np.float32)
    tmask = nib.load(tp["gre_mask"]).get_fdata() > 0
    seg = np.asarray(nib.load(tp["dseg"]).dataobj).astype(int)
    sl = head_crop(tmask)  # the grid qsm_accuracy.py gave qsm-forward
    truth, tmask, seg = truth[sl], tmask[sl], seg[sl]
    g = load_megre(WORK / "qsm_forward" / "bids", "sub-1")
    vs = voxel_sizes(g.affine)
    out = {}
    res = reconstruct(g.mag, g.phase, g.affine, g.echo_times_s, g.field_strength_t, {})
    m = res.final_mask & tmask
    out["1 default chain"] = dgm_errors(res.chi, truth, m, seg)
    true_local = forward_field(np.where(tmask, truth, 0), vs)
    chi, _ = star(np.where(res.final_mask, true_local, 0), res.final_mask, vs)
    out["2 STAR of the true local field"] = dgm_errors(chi, truth, m, seg)
    loc, eroded = vsharp(np.where(tmask, true_local, 0), tmask, vs)
    chi, _ = star(np.where(eroded, loc, 0), eroded, vs)
    out["3 STAR of V-SHARP(true local field)"] = dgm_errors(chi, truth, eroded & m, seg)
    res2 = reconstruct(
        g.mag, g.phase, g.affine, g.echo_times_s, g.field_strength_t, {"vsharp": {"tsvd": 0.02}}
    )
    out["4 chain with V-SHARP TSVD 0.02"] = dgm_errors(
        res2.chi, truth, res2.final_mask & tmask, seg
    )
    (ROOT / "benchmarks" / "results" / "qsm_bias_decomposition.json").write_text(
        json.dumps(out, indent=2)
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
