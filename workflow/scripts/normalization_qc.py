"""Cohort normalization QC table: metrics, thresholds, overrides; exclusions are logged."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmvbm import atlas
from qsmvbm.anat.qc import (
    cohort_qc,
    coverage_problems,
    deep_grey_roi,
    mask_qc_columns,
    roi_coverage,
)
from qsmvbm.bids import subject_of
from qsmvbm.io import read_tsv
from qsmvbm.smk import logged
from qsmvbm.stats.columns import save_table

COLUMNS = [
    "participant_id",
    "group",
    "dice_brain",
    "t1_corr",
    "gm_corr",
    "qsm_dgm_corr",
    "qsm_dgm_robust_z",
    "qsm_mask_in_template",
    "qsm_roi_coverage",
    "qsm_mask_dice_t1",
    "qsm_mask_outside_t1",
    "qsm_mask_tiv_ratio",
    "tiv_ml",
    "gm_tiv",
    "lr_nmi_as_stored",
    "lr_nmi_mirrored",
    "lr_verdict",
    "passed_qc",
    "included",
    "reason",
]

#: the left-right check's figures in the input check JSON that the table shows (as ``lr_<key>``)
LEFT_RIGHT_COLUMNS = ("nmi_as_stored", "nmi_mirrored", "verdict")


def plausibility_metrics(qsm_jsons, volume_jsons) -> pd.DataFrame:
    """participant_id, the QSM mask checks from each QSM sidecar (MaskPlausibility) and TIV, GM/TIV."""
    rows = {}
    for f in volume_jsons:
        v = json.loads(Path(f).read_text())
        rows.setdefault(subject_of(f), {}).update(
            tiv_ml=v["TIV_ml"], gm_tiv=v["GM_ml"] / v["TIV_ml"]
        )
    for f in qsm_jsons:
        m = json.loads(Path(f).read_text()).get("MaskPlausibility")
        if m:
            rows.setdefault(subject_of(f), {}).update(mask_qc_columns(m))
    return pd.DataFrame([{"participant_id": k, **v} for k, v in rows.items()])


def run(
    qc_files,
    chi_files,
    check_files,
    input_exclusions: dict,
    participants: Path,
    params: dict,
    group_column: str,
    out: Path,
    log,
    qsm_jsons=(),
    volume_jsons=(),
    qsm_masks=(),
    rois=(),
) -> pd.DataFrame:
    """QC table of every subject: processed ones with metrics and verdicts, plus those whose
    inputs were missing or failed the input check (excluded, with the reason)."""
    metrics = pd.DataFrame([json.loads(Path(f).read_text()) for f in qc_files])
    extra = plausibility_metrics(qsm_jsons, volume_jsons)
    if len(metrics) and len(extra):
        metrics = metrics.merge(extra, on="participant_id", how="left")
    if len(metrics):
        first = nib.load(chi_files[0])
        labels = atlas.aal3_on_grid(first.shape, first.affine)
        roi = deep_grey_roi(labels)
        chis = [nib.load(f).get_fdata(dtype="float32") for f in chi_files]
        extra = {}
        if len(qsm_masks) and len(rois):
            cover = pd.DataFrame(
                {
                    subject_of(f): roi_coverage(np.asarray(nib.load(f).dataobj) > 0, labels, rois)
                    for f in qsm_masks
                }
            ).T
            metrics["qsm_roi_coverage"] = metrics["participant_id"].map(cover.min(axis=1))
            extra = coverage_problems(cover, params["qsm_roi_coverage_min"])
        table = cohort_qc(metrics, chis, roi, params, extra)
    else:
        table = pd.DataFrame(columns=COLUMNS)
    failed, left_right = [], []
    for f in check_files:
        c = json.loads(Path(f).read_text())
        pid = subject_of(f)
        lr = c.get("left_right") or {}
        if lr:
            left_right.append(
                {"participant_id": pid, **{f"lr_{k}": lr[k] for k in LEFT_RIGHT_COLUMNS}}
            )
        if not c["ok"]:
            failed.append(
                {
                    "participant_id": pid,
                    "passed_qc": False,
                    "included": False,
                    "reason": f"input check failed: {c['reason']}",
                }
            )
    failed += [
        {
            "participant_id": pid,
            "passed_qc": False,
            "included": False,
            "reason": f"missing input: {why}",
        }
        for pid, why in input_exclusions.items()
    ]
    if failed:
        table = pd.concat([table, pd.DataFrame(failed)], ignore_index=True)
    if left_right:
        lr = pd.DataFrame(left_right)
        table = table.drop(columns=[c for c in lr if c != "participant_id" and c in table])
        table = table.merge(lr, on="participant_id", how="left")
    groups = read_tsv(participants, keep_default_na=True)[["participant_id", group_column]]
    table = table.merge(
        groups.rename(columns={group_column: "group"}), on="participant_id", how="left"
    )
    save_table(table.reindex(columns=COLUMNS), out, "qc_table")
    for _, r in table[~table.included].iterrows():
        log.warning("EXCLUDED %s: %s", r.participant_id, r.reason)
    log.info("%d of %d subjects included", int(table.included.sum()), len(table))
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            smk.input.qc,
            smk.input.chi,
            smk.input.checks,
            dict(smk.params.input_exclusions),
            Path(smk.input.participants),
            dict(smk.params.qc),
            smk.params.group_column,
            Path(smk.output.table),
            log,
            list(smk.input.qsm_json),
            list(smk.input.volumes),
            list(smk.input.qsm_mask),
            list(smk.params.rois),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
