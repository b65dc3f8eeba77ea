"""roi_stats.tsv and correlations.tsv: group tests, normality and correlations of the ROI values."""

import json
import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import pandas as pd  # noqa: E402

from qsmvbm.io import save_tsv  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402
from qsmvbm.stats.design import COVARIATES  # noqa: E402
from qsmvbm.stats.tables import correlation_table, group_test  # noqa: E402


def run(values_tsv, columns_json, design_tsv, group: dict, patient: str, control: str, out: dict, log):
    values = pd.read_csv(values_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    regions = list(json.loads(Path(columns_json).read_text())["regions"])
    design = pd.read_csv(design_tsv, sep="\t", na_values="n/a", keep_default_na=False)
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
        stats_table = pd.DataFrame(columns=["region", "measure", "value", "test", "covariates", "t", "F", "df", "p"])
    save_tsv(stats_table, out["stats"])
    groups = {"patients": [patient], "controls": [control], "all": [patient, control]}
    corr = correlation_table(data, group["correlations"], regions, group["clinical_scores"], groups)
    save_tsv(corr, out["correlations"])
    for _, r in corr[corr.p < 0.05].iterrows():
        log.info("correlation %s ~ %s in %s: r=%.3f p=%.4f (%s)", r.x, r.y, r.group, r.r, r.p, r.alternative)
    return stats_table, corr


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(smk.input.values, smk.input.columns, smk.input.design, dict(smk.params.group), smk.params.patient,
            smk.params.control, dict(smk.output), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
