"""QC summary figure: normalization metrics with thresholds, excluded subjects named."""

from qsmvbm.io import read_tsv
from qsmvbm.report.figures import qc_summary_figure
from qsmvbm.smk import logged


def main(smk) -> None:
    with logged(smk.log[0]):
        qc = read_tsv(smk.input[0])
        qc_summary_figure(qc, dict(smk.params.qc), smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
