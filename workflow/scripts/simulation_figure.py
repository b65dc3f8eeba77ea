"""Figure of one simulated subject: magnitude, wrapped phase, true chi, T1w."""

from pathlib import Path

from qsmvbm.simulate.figure import plot_subject
from qsmvbm.smk import logged


def main(smk) -> None:
    with logged(smk.log[0]):
        t1 = Path(smk.input[0])  # .../<bids>/<subject>/anat/<file>
        bids_dir = t1.parents[2]
        plot_subject(bids_dir, smk.wildcards.subject, Path(smk.output[0]))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
