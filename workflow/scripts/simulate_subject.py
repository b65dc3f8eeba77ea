"""Simulate one subject of the cohort (raw BIDS files and ground truth)."""

from pathlib import Path

from qsmvbm.simulate.cohort_io import simulate_one
from qsmvbm.simulate.settings import load_simulation_config
from qsmvbm.smk import logged, set_threads


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        cfg = load_simulation_config(smk.input.config)
        outdir = Path(smk.input.participants).parent
        summary = simulate_one(cfg, outdir, smk.wildcards.subject)
        log.info(
            "%s: TIV %.1f mL, GM %.1f mL",
            smk.wildcards.subject,
            summary["TIV_ml"],
            summary["GM_ml"],
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
