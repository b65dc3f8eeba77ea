"""Group design table: participants, normalization QC verdicts, TIV and derived clinical scores."""

import json
from pathlib import Path

import pandas as pd

from qsmvbm.bids import read_participants, subject_of
from qsmvbm.io import read_tsv
from qsmvbm.smk import logged
from qsmvbm.stats.columns import save_table
from qsmvbm.stats.design import build_design


def run(
    participants_tsv,
    qc_tsv,
    volume_files,
    group_column: str,
    patient: str,
    control: str,
    rate: dict,
    out: Path,
    log,
) -> pd.DataFrame:
    parts = read_participants(Path(participants_tsv).parent, group_column, (patient, control))
    qc = read_tsv(qc_tsv)
    tiv = {}
    for f in volume_files:
        tiv[subject_of(f)] = json.loads(Path(f).read_text())["TIV_ml"]
    design = build_design(parts, qc, tiv, group_column, patient, control, rate)
    pj = Path(participants_tsv).with_suffix(".json")
    save_table(design, out, "design", json.loads(pj.read_text()) if pj.is_file() else None)
    inc = design[design.included]
    log.info(
        "design: %d subjects, %d included (%s)",
        len(design),
        len(inc),
        ", ".join(f"{g}: {n}" for g, n in inc["group"].value_counts().items()),
    )
    for _, r in design[~design.included].iterrows():
        log.warning("EXCLUDED %s: %s", r.participant_id, r.reason)
    return design


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            smk.input.participants,
            smk.input.qc,
            list(smk.input.volumes),
            smk.params.group_column,
            smk.params.patient,
            smk.params.control,
            dict(smk.params.rate),
            Path(smk.output[0]),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
