"""Figure of one simulated subject: magnitude, wrapped phase, true chi, T1w."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

from qsmvbm.simulate.figure import plot_subject  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402


def main(smk) -> None:
    with logged(smk.log[0]):
        t1 = Path(smk.input[0])  # .../<bids>/<subject>/anat/<file>
        bids_dir = t1.parents[2]
        plot_subject(bids_dir, smk.wildcards.subject, Path(smk.output[0]))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
