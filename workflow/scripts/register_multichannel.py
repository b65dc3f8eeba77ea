"""Multichannel SyN of one subject to the template: T1w plus QSM against the cohort QSM template,
started from the subject's T1-only affine."""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from qsmvbm.anat import normalize, t1
from qsmvbm.anat.antsio import load_ants, to_ants
from qsmvbm.io import save_json
from qsmvbm.smk import logged, set_threads
from qsmvbm.templates import TEMPLATE_SPACE, load_template
from qsmvbm.timing import Stopwatch
from qsmvbm.version import full_version


def run(inp: dict, params: dict, out: dict, log) -> dict:
    mc = params["multichannel"]
    tpl = load_template(params["template_resolution"])
    T = to_ants(tpl.t1, tpl.affine)
    watch = Stopwatch(digits=2)
    t1_img = load_ants(inp["t1"])
    brain = t1_img.new_image_like((load_ants(inp["t1_mask"]).numpy() > 0).astype(np.float32))
    # the subject's QSM on its T1 grid (GRE->T1 rigid), 0 outside its mask, smoothed like the template
    chi_t1, qmask_t1 = normalize.warp_qsm(
        t1_img, load_ants(inp["chi"]), load_ants(inp["qsm_mask"]), [inp["gre_xfm"]]
    )
    chi_t1 = normalize.smooth(chi_t1, mc["qsm_fwhm_mm"], np.asarray(t1_img.spacing), qmask_t1)
    qtpl = load_ants(inp["qsm_template"])
    watch.tick("prepare")
    xfm_dir = Path(out["affine"]).parent
    with tempfile.TemporaryDirectory(dir=xfm_dir, prefix=".ants_mc_") as tmp:
        reg = t1.register_multichannel(
            T,
            t1_img * brain,
            qtpl,
            t1_img.new_image_like(chi_t1),
            inp["affine"],
            str(Path(tmp) / "mc_"),
            params["random_seed"],
            mc["qsm_weight"],
            mc["metric"],
            mc["metric_param"],
        )
        watch.tick("syn_multichannel")
        shutil.copy(next(f for f in reg["fwdtransforms"] if f.endswith(".mat")), out["affine"])
        shutil.copy(next(f for f in reg["fwdtransforms"] if f.endswith(".nii.gz")), out["warp"])
        shutil.copy(
            next(f for f in reg["invtransforms"] if f.endswith(".nii.gz")), out["inverse_warp"]
        )
    # how well the QSM channel matches the cohort template after the registration
    fwd = [out["warp"], out["affine"]]
    warped_chi = normalize.warp(T, t1_img.new_image_like(chi_t1), fwd).numpy()
    defined = qtpl.numpy() != 0
    info = {
        "TemplateSpace": TEMPLATE_SPACE,
        "Method": "ANTs SyNOnly from the T1-only affine; channels: T1w (MI, weight 1) and QSM "
        f"({mc['metric']}[{mc['metric_param']}], weight {mc['qsm_weight']}) vs the cohort QSM template",
        "QSMTemplate": str(inp["qsm_template"]),
        "QSMCorrelationWithTemplate": normalize.masked_correlation(
            warped_chi, qtpl.numpy(), defined & tpl.mask
        ),
        "RandomSeed": params["random_seed"],
        "Timings_s": watch.timings,
        "Parameters": mc,
        "Software": {"qsmvbm": full_version(), "antspyx": __import__("ants").__version__},
    }
    save_json(info, out["json"])
    log.info("%s", json.dumps(info))
    return info


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        run(dict(smk.input.items()), dict(smk.params.anat), dict(smk.output.items()), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
