"""T1w of one subject: N4, brain extraction, SyN to the template, prior-based Atropos, TIV."""

from pathlib import Path

from qsmvbm.anat.pipeline import process_t1
from qsmvbm.smk import logged, set_threads


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        process_t1(Path(smk.input.t1w), dict(smk.params.anat), dict(smk.output.items()), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
