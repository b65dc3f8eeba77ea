"""Simulate one subject of the cohort (raw BIDS files and ground truth)."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

from qsmvbm.simulate.cohort_io import simulate_one  # noqa: E402
from qsmvbm.simulate.settings import load_simulation_config  # noqa: E402
from qsmvbm.smk import logged, set_threads  # noqa: E402


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        cfg = load_simulation_config(smk.input.config)
        outdir = Path(smk.input.participants).parent
        summary = simulate_one(cfg, outdir, smk.wildcards.subject)
        log.info("%s: TIV %.1f mL, GM %.1f mL", smk.wildcards.subject, summary["TIV_ml"], summary["GM_ml"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
