"""roi_stats.tsv and correlations.tsv: group tests, normality and correlations of the ROI values."""

import json
from pathlib import Path

import pandas as pd

from qsmvbm.io import read_tsv
from qsmvbm.smk import logged
from qsmvbm.stats.columns import save_table
from qsmvbm.stats.design import COVARIATES
from qsmvbm.stats.tables import correlation_table, group_test


def run(
    values_tsv, columns_json, design_tsv, group: dict, patient: str, control: str, out: dict, log
):
    values = read_tsv(values_tsv)
    regions = list(json.loads(Path(columns_json).read_text())["regions"])
    design = read_tsv(design_tsv)
    extra = [c for c in design.columns if c not in values.columns]
    data = values.merge(design[["participant_id"] + extra], on="participant_id", how="left")
    rows = []
    for region in regions:
        for mod in ("qsm", "gm"):
            covs = [COVARIATES.get(c, c) for c in group["modalities"][mod]["covariates"]]
            res = group_test(data, f"{mod}_{region}", "group", patient, control, covs)
            rows.append({"region": region, "measure": mod, **res})
    stats_table = pd.DataFrame(rows)
    if not len(stats_table):
        stats_table = pd.DataFrame(
            columns=["region", "measure", "value", "test", "covariates", "t", "F", "df", "p"]
        )
    save_table(stats_table, out["stats"], "roi_stats")
    groups = {"patients": [patient], "controls": [control], "all": [patient, control]}
    corr = correlation_table(data, group["correlations"], regions, group["clinical_scores"], groups)
    save_table(corr, out["correlations"], "correlations")
    for _, r in corr[corr.p < 0.05].iterrows():
        log.info(
            "correlation %s ~ %s in %s: r=%.3f p=%.4f (%s)",
            r.x,
            r.y,
            r.group,
            r.r,
            r.p,
            r.alternative,
        )
    return stats_table, corr


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            smk.input.values,
            smk.input.columns,
            smk.input.design,
            dict(smk.params.group),
            smk.params.patient,
            smk.params.control,
            dict(smk.output),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
