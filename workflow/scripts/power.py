"""Study power from this run's group GLMs (the workflow's ``power`` target; qsmvbm-power's library)."""

from qsmvbm.layout import Layout
from qsmvbm.smk import logged
from qsmvbm.stats.power_cli import run


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        settings = {k: v for k, v in dict(smk.params.power).items() if k != "enabled"}
        run_dir = Layout.output_dir_of(smk.output.table, "power_table")
        run({**settings, "run": str(run_dir)}, log, dict(smk.params.config))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
