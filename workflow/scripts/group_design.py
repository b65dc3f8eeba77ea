"""Group design table: participants, normalization QC verdicts, TIV and derived clinical scores."""

import json
import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import pandas as pd  # noqa: E402

from qsmvbm.bids import read_participants, subject_of  # noqa: E402
from qsmvbm.io import save_tsv  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402
from qsmvbm.stats.design import build_design  # noqa: E402


def run(participants_tsv, qc_tsv, volume_files, group_column: str, patient: str, control: str,
        rate: dict, out: Path, log) -> pd.DataFrame:
    parts = read_participants(Path(participants_tsv).parent, group_column, (patient, control))
    qc = pd.read_csv(qc_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    tiv = {}
    for f in volume_files:
        tiv[subject_of(f)] = json.loads(Path(f).read_text())["TIV_ml"]
    design = build_design(parts, qc, tiv, group_column, patient, control, rate)
    save_tsv(design, out)
    inc = design[design.included]
    log.info("design: %d subjects, %d included (%s)", len(design), len(inc),
             ", ".join(f"{g}: {n}" for g, n in inc["group"].value_counts().items()))
    for _, r in design[~design.included].iterrows():
        log.warning("EXCLUDED %s: %s", r.participant_id, r.reason)
    return design


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(smk.input.participants, smk.input.qc, list(smk.input.volumes), smk.params.group_column,
            smk.params.patient, smk.params.control, dict(smk.params.rate), Path(smk.output[0]), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
