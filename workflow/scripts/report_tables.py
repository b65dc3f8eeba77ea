"""Report tables (HTML): demographics, clusters, ROI statistics, correlations, QC exclusions."""

from pathlib import Path

from qsmvbm.io import atomic_path, read_tsv
from qsmvbm.report.tables import table_html
from qsmvbm.smk import logged

TITLES = {
    "demographics": (
        "Table 1. Demographic and clinical profile of the included participants",
        "Age: two-sample t-test; sex: chi-squared without continuity correction; clinical scores "
        "mean ± SD [range].",
    ),
    "clusters": (
        "Clusters within the small volumes (p < cluster-forming threshold, uncorrected)",
        "Peaks in MNI mm; p_fwe_rft: SPM-style random-field SVC; p_fwe_perm: permutation max-T over the "
        "ROI; p_fwe_tfce: TFCE with the same permutations (empty when off); shaded rows are significant by the configured rule.",
    ),
    "roi_stats": (
        "Group comparisons of the ROI values",
        "QSM: two-sample t-test; GM: ANCOVA with the GM model's covariates; Lilliefors normality p per "
        "group.",
    ),
    "correlations": (
        "Correlations of ROI values",
        "Pearson or partial correlation; alternative as configured.",
    ),
    "qc": ("Normalization QC: excluded subjects", "Every subject not included, with the reason."),
}


def write(html: str, path) -> None:
    with atomic_path(path, suffix=".html") as tmp:
        Path(tmp).write_text(html)


def run(inp: dict, out: dict, log) -> None:
    for key, (title, note) in TITLES.items():
        df = read_tsv(inp[key])
        if key == "qc":
            df = df[df["included"].astype(str) != "True"][["participant_id", "group", "reason"]]
        write(
            table_html(df, title, note, highlight="significant" if key == "clusters" else None),
            out[key],
        )
        log.info("%s: %d rows", key, len(df))


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(dict(smk.input), dict(smk.output), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
