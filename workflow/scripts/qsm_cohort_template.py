"""The cohort QSM template of multichannel normalization: voxelwise median of the subjects'
T1-normalized QSM maps, smoothed for registration."""

from pathlib import Path

import nibabel as nib
import numpy as np

from qsmvbm.anat import normalize
from qsmvbm.io import save_json, save_nifti
from qsmvbm.smk import logged
from qsmvbm.templates import TEMPLATE_SPACE, load_template
from qsmvbm.version import full_version


def pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def run(chi_files: list, mask_files: list, params: dict, resolution: int, out: dict, log) -> dict:
    if len(chi_files) < 2:
        raise ValueError(f"a cohort QSM template needs at least 2 subjects, got {len(chi_files)}")
    tpl = load_template(resolution)
    use = pick(len(chi_files), params["template_max_subjects"])
    maps, masks = [], []
    for i in use:
        img = nib.load(chi_files[i])
        if img.shape != tpl.t1.shape:
            raise ValueError(
                f"{chi_files[i]}: shape {img.shape} is not the template grid {tpl.t1.shape}"
            )
        maps.append(img.get_fdata(dtype=np.float32))
        masks.append(np.asarray(nib.load(mask_files[i]).dataobj) > 0)
    med, defined = normalize.cohort_template(maps, masks, params["template_min_fraction"])
    vs = np.full(3, float(resolution))
    smoothed = normalize.smooth(med, params["qsm_fwhm_mm"], vs, defined)
    save_nifti(smoothed, tpl.affine, out["template"])
    info = {
        "Description": "median of the T1-normalized QSM maps (ppm), smoothed within its support",
        "TemplateSpace": TEMPLATE_SPACE,
        "Subjects": [Path(chi_files[i]).name.split("_")[0] for i in use],
        "MinFraction": params["template_min_fraction"],
        "SmoothingFWHM_mm": params["qsm_fwhm_mm"],
        "DefinedVoxels": int(defined.sum()),
        "Software": {"qsmvbm": full_version()},
    }
    save_json(info, out["json"])
    log.info("cohort QSM template from %d subjects, %d voxels", len(use), int(defined.sum()))
    return info


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            list(smk.input.chi),
            list(smk.input.mask),
            dict(smk.params.multichannel),
            int(smk.params.template_resolution),
            dict(smk.output.items()),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
