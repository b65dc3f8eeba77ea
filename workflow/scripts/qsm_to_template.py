"""One subject's QSM in template space through the T1-only registration: the inputs of the cohort
QSM template of multichannel normalization."""

import numpy as np

from qsmvbm.anat import normalize
from qsmvbm.anat.antsio import load_ants, to_ants
from qsmvbm.io import save_nifti
from qsmvbm.smk import logged, set_threads
from qsmvbm.templates import load_template


def run(inp: dict, resolution: int, out: dict, log) -> None:
    tpl = load_template(resolution)
    T = to_ants(tpl.t1, tpl.affine)
    chi, mask = normalize.warp_qsm(
        T,
        load_ants(inp["chi"]),
        load_ants(inp["qsm_mask"]),
        [inp["warp"], inp["affine"], inp["gre_xfm"]],
    )
    save_nifti(chi, tpl.affine, out["chi"])
    save_nifti(mask, tpl.affine, out["qsm_mask"], dtype=np.uint8)
    log.info("QSM in template space (T1-only registration): %d voxels", int(mask.sum()))


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        run(
            dict(smk.input.items()),
            int(smk.params.template_resolution),
            dict(smk.output.items()),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
