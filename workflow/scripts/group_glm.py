"""Voxelwise two-group GLM of one modality (qsm or gm) with small-volume correction in AAL3 ROIs."""

from qsmvbm.smk import logged, set_threads
from qsmvbm.stats.pipeline import group_glm


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        set_threads(smk.threads)
        group_glm(
            smk.input.design,
            list(smk.input.maps),
            list(smk.input.get("valid", [])),
            smk.wildcards.modality,
            dict(smk.params.group),
            smk.params.patient,
            smk.params.control,
            int(smk.params.resolution),
            dict(smk.output),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
