"""demographics.tsv: the study's Table 1 for the included subjects."""

from pathlib import Path

import pandas as pd

from qsmvbm.io import read_tsv
from qsmvbm.smk import logged
from qsmvbm.stats.columns import save_table
from qsmvbm.stats.design import included_rows
from qsmvbm.stats.tables import demographics


def run(design_tsv, patient: str, control: str, clinical: list, out: Path, log) -> pd.DataFrame:
    design = read_tsv(design_tsv)
    inc = included_rows(design)
    table = demographics(inc, "group", patient, control, clinical)
    n_all = design["group"].value_counts()
    table.loc[0, patient] = f"{table.loc[0, patient]} ({n_all.get(patient, 0)} processed)"
    table.loc[0, control] = f"{table.loc[0, control]} ({n_all.get(control, 0)} processed)"
    save_table(table, out, "demographics")
    log.info("\n%s", table.to_string())
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            smk.input[0],
            smk.params.patient,
            smk.params.control,
            list(smk.params.clinical),
            Path(smk.output[0]),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
