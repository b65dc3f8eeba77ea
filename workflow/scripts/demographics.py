"""demographics.tsv: the study's Table 1 for the included subjects."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import pandas as pd  # noqa: E402

from qsmvbm.io import save_tsv  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402
from qsmvbm.stats.tables import demographics  # noqa: E402


def run(design_tsv, patient: str, control: str, clinical: list, out: Path, log) -> pd.DataFrame:
    design = pd.read_csv(design_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    inc = design[design["included"].astype(str) == "True"]
    table = demographics(inc, "group", patient, control, clinical)
    n_all = design["group"].value_counts()
    table.loc[0, patient] = f"{table.loc[0, patient]} ({n_all.get(patient, 0)} processed)"
    table.loc[0, control] = f"{table.loc[0, control]} ({n_all.get(control, 0)} processed)"
    save_tsv(table, out)
    log.info("\n%s", table.to_string())
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(smk.input[0], smk.params.patient, smk.params.control, list(smk.params.clinical), Path(smk.output[0]), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
