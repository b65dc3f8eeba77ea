"""Deep-grey refinement of one subject's normalization: a local CC SyN about the nuclei."""

from qsmvbm.anat.pipeline import refine_deep_grey
from qsmvbm.smk import logged, set_threads


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        refine_deep_grey(
            smk.input.t1,
            [smk.input.warp, smk.input.affine],
            dict(smk.params.anat),
            dict(smk.output.items()),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
