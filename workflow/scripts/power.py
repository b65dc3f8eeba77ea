"""Study power from this run's group GLMs (the workflow's ``power`` target; qsmvbm-power's library)."""

from qsmvbm.layout import Layout
from qsmvbm.smk import logged
from qsmvbm.stats.power_cli import run


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run_dir = Layout.output_dir_of(smk.output.table, "power_table")
        run(
            {**dict(smk.params.power), "run": str(run_dir)},
            log,
            dict(smk.params.config),
            workers=smk.threads,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
