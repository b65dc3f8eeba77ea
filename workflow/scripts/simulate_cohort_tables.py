"""Write the simulated cohort's tables (participants, effects, effect masks)."""

from pathlib import Path

from qsmvbm.simulate.cohort_io import write_cohort_tables
from qsmvbm.simulate.settings import load_simulation_config
from qsmvbm.smk import logged


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        cfg = load_simulation_config(smk.input[0])
        outdir = Path(smk.output.participants).parent
        cohort = write_cohort_tables(cfg, outdir)
        log.info("wrote %d participants to %s", len(cohort), outdir)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
