"""Write the simulated cohort's tables (participants, effects, effect masks)."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

from qsmvbm.simulate.cohort_io import write_cohort_tables  # noqa: E402
from qsmvbm.simulate.settings import load_simulation_config  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        cfg = load_simulation_config(smk.input[0])
        outdir = Path(smk.output.participants).parent
        cohort = write_cohort_tables(cfg, outdir)
        log.info("wrote %d participants to %s", len(cohort), outdir)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
