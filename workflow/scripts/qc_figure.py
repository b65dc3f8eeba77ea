"""QC summary figure: normalization metrics with thresholds, excluded subjects named."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import pandas as pd  # noqa: E402

from qsmvbm.report.figures import qc_summary_figure  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402


def main(smk) -> None:
    with logged(smk.log[0]):
        qc = pd.read_csv(smk.input[0], sep="\t", na_values="n/a", keep_default_na=False)
        qc_summary_figure(qc, dict(smk.params.qc), smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
