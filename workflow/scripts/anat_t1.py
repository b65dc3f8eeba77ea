"""T1w of one subject: N4, brain extraction, SyN to the template, prior-based Atropos, TIV."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

import qsmvbm  # noqa: E402
from qsmvbm.anat import normalize, t1  # noqa: E402
from qsmvbm.anat.antsio import from_ants, to_ants  # noqa: E402
from qsmvbm.io import save_json, save_nifti  # noqa: E402
from qsmvbm.smk import logged, set_threads  # noqa: E402
from qsmvbm.timing import Stopwatch  # noqa: E402
from qsmvbm.templates import TEMPLATE_SPACE, load_template  # noqa: E402


def run(t1w_path: Path, params: dict, out: dict, log) -> dict:
    tpl = load_template(params["template_resolution"])
    T = to_ants(tpl.t1, tpl.affine)
    Tmask = to_ants(tpl.mask.astype(np.float32), tpl.affine)
    img = nib.load(t1w_path)
    data = img.get_fdata(dtype=np.float32)
    if data.ndim != 3 or not np.isfinite(data).all():
        raise ValueError(f"{t1w_path}: expected a finite 3D T1w image")
    raw = to_ants(data, img.affine)
    seed = params["random_seed"]
    vs = np.asarray(raw.spacing)
    xfm_dir = Path(out["affine"]).parent
    watch = Stopwatch(digits=2)
    tick = watch.tick
    timings = watch.timings

    with tempfile.TemporaryDirectory(dir=xfm_dir, prefix=".ants_") as tmp:
        pre = str(Path(tmp) / "reg_")
        n4 = t1.n4(raw, shrink_factor=params["n4_shrink_factor"])
        tick("n4_initial")
        mask, _ = t1.brain_extraction(n4, T, Tmask, pre, seed, params["brain_extraction_registration"])
        tick("brain_extraction")
        n4 = t1.n4(raw, mask=n4.new_image_like(mask.astype(np.float32)), shrink_factor=params["n4_shrink_factor"])
        tick("n4_masked")
        m_img = n4.new_image_like(mask.astype(np.float32))
        reg = t1.register(T, n4 * m_img, params["registration"], pre + "syn_", seed)
        tick("syn")
        shutil.copy(next(f for f in reg["fwdtransforms"] if f.endswith(".mat")), out["affine"])
        shutil.copy(next(f for f in reg["fwdtransforms"] if f.endswith(".nii.gz")), out["warp"])
        shutil.copy(next(f for f in reg["invtransforms"] if f.endswith(".nii.gz")), out["inverse_warp"])
    fwd = [out["warp"], out["affine"]]
    inv = [out["affine"], out["inverse_warp"]]
    priors = t1.template_priors(tpl, n4, inv)
    a = params["atropos"]
    seg = t1.segment(n4, mask, priors, a["prior_weight"], a["mrf"], a["iterations"])
    vols = t1.tissue_volumes_ml(seg, vs)
    tick("atropos")
    aff = img.affine
    save_nifti(from_ants(n4)[0], aff, out["preproc"])
    save_nifti(mask, aff, out["mask"], dtype=np.uint8)
    for k in ("gm", "wm", "csf"):
        save_nifti(seg[k], aff, out[k])
    save_nifti(seg["labels"], aff, out["dseg"], dtype=np.uint8)
    warped = normalize.warp(T, n4, fwd)
    save_nifti(from_ants(warped)[0], tpl.affine, out["template_t1"])
    wmask = normalize.warp(T, m_img, fwd).numpy() > 0.5
    save_nifti(wmask, tpl.affine, out["template_mask"], dtype=np.uint8)
    tick("write_and_warp")
    info = {
        **vols,
        "TemplateSpace": TEMPLATE_SPACE,
        "TemplateResolution_mm": params["template_resolution"],
        "BrainMask_ml": float(mask.sum() * np.prod(vs) / 1000),
        "Registration": params["registration"],
        "RandomSeed": seed,
        "Deterministic": params["deterministic"],
        "ITKThreads": int(os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "0")) or None,
        "Timings_s": timings,
        "Parameters": params,
        "Software": {"qsmvbm": qsmvbm.__version__, "antspyx": __import__("ants").__version__},
        "Source": str(t1w_path),
    }
    save_json(info, out["volumes"])
    log.info("TIV %.0f mL, GM %.0f mL", vols["TIV_ml"], vols["GM_ml"])
    return info


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        run(Path(smk.input.t1w), dict(smk.params.anat), dict(smk.output.items()), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
