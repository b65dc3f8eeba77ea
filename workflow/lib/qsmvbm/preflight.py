"""Checks made before any per-subject job starts: settings of the group stage against the atlas and
``participants.tsv``, the output folder against the BIDS folder, the exclusion list against the cohort.

Each check returns messages instead of raising, so that the workflow can report every problem at once.
"""

from __future__ import annotations

from pathlib import Path

from .atlas import label_values
from .stats.design import COVARIATES

#: correlation terms that are not participants.tsv columns (see ``qsmvbm.stats.tables.expand_terms``)
CORRELATION_TERMS = {"qsm", "gm", "clinical", "age", "sex"}


def output_inside_input(output_dir: str | Path, bids_dir: str | Path) -> str | None:
    """A message if ``output_dir`` is ``bids_dir`` or inside it (the workflow must never write into the
    raw dataset; BIDS derivatives of a dataset go to a folder of their own), else None."""
    out, bids = Path(output_dir).resolve(), Path(bids_dir).resolve()
    if out == bids or bids in out.parents:
        return (
            f"output_dir {output_dir} is inside the BIDS dataset {bids_dir}: choose a folder outside it "
            "(e.g. next to it), so the raw data are never written to"
        )
    return None


def _covariate_problems(names, columns: set[str], where: str) -> list[str]:
    out = []
    for name in names:
        col = COVARIATES.get(name, name)
        if name == "tiv":
            continue  # from the T1w pipeline
        if col == "sex_male":
            col = "sex"
        if col not in columns:
            out.append(
                f"{where}: covariate {name!r} needs a participants.tsv column {col!r} "
                f"(columns: {', '.join(sorted(columns))})"
            )
    return out


def _region_problems(names, where: str) -> list[str]:
    out = []
    for roi in names:
        try:
            label_values(roi)
        except (KeyError, ValueError) as e:
            out.append(f"{where}: {str(e).strip(chr(39))}")
    return out


def anat_setting_problems(anat: dict) -> list[str]:
    """Problems of the ``anat`` config section: unknown AAL3 regions in ``anat.deep_grey.regions``."""
    return _region_problems(anat["deep_grey"]["regions"], "anat.deep_grey.regions")


def power_setting_problems(power: dict) -> list[str]:
    """Problems of the ``power`` config section: unknown AAL3 regions of each modality."""
    problems = []
    for mod, mc in power["modalities"].items():
        problems += _region_problems(mc["rois"], f"power.modalities.{mod}.rois")
    return problems


def group_setting_problems(group: dict, columns: set[str] | None) -> list[str]:
    """Problems of the ``group`` config section: unknown AAL3 regions, ``combine`` entries naming
    regions that are not searched, and (when ``columns``, the participants.tsv columns, are known)
    covariates, clinical scores and correlation terms without a column.

    Parameters
    ----------
    group : the validated ``group`` section of the workflow config.
    columns : participants.tsv column names, or None to skip the column checks.

    Returns
    -------
    list of messages naming the config key and the problem (empty if none).
    """
    problems = _region_problems(group["rois"], "group.rois")
    for name, rois in group["combine"].items():
        missing = [r for r in rois if r not in group["rois"]]
        if missing:
            problems.append(f"group.combine.{name}: {missing} not in group.rois {group['rois']}")
    if columns is None:
        return problems
    rate = group["progression_rate"]
    derived = set()
    if rate["score"] in columns and rate["duration"] in columns:
        derived.add(rate["name"])
    for score in group["clinical_scores"]:
        if score not in columns and score not in derived:
            hint = ""
            if score == rate["name"]:
                hint = f" (derived from {rate['score']!r} and {rate['duration']!r}, which need columns)"
            problems.append(
                f"group.clinical_scores: {score!r} is not a participants.tsv column{hint} "
                f"(columns: {', '.join(sorted(columns))})"
            )
    for mod, mcfg in group["modalities"].items():
        problems += _covariate_problems(
            mcfg["covariates"], columns, f"group.modalities.{mod}.covariates"
        )
    for i, spec in enumerate(group["correlations"]):
        for key in ("x", "y"):
            term = spec[key]
            if term not in CORRELATION_TERMS and term not in columns | derived:
                problems.append(
                    f"group.correlations[{i}].{key}: {term!r} is neither one of "
                    f"{sorted(CORRELATION_TERMS)} nor a participants.tsv column"
                )
            if term in ("age", "sex") and term not in columns:
                problems.append(
                    f"group.correlations[{i}].{key}: {term!r} needs a participants.tsv column {term!r}"
                )
        problems += _covariate_problems(
            spec.get("covariates", []), columns | derived, f"group.correlations[{i}].covariates"
        )
    return problems


def cohort_notes(participant_ids, subject_folders, exclude) -> list[str]:
    """Warnings about the cohort: ``participants.exclude`` entries that name nobody, and subject folders
    of the BIDS dataset that participants.tsv does not list (they are not processed)."""
    ids = set(participant_ids)
    notes = [
        f"participants.exclude names {x!r}, which is not in participants.tsv (a typo?)"
        for x in exclude
        if x not in ids
    ]
    notes += [
        f"{f}: subject folder not listed in participants.tsv: not processed"
        for f in sorted(subject_folders)
        if Path(f).name not in ids
    ]
    return notes


def select_participants(participant_ids, labels) -> tuple[list[str], list[str]]:
    """The participants chosen by ``participants.participant_label`` (ids with or without ``sub-``;
    all when empty), in the order of ``participant_ids``, and the labels that name nobody."""
    if not labels:
        return list(participant_ids), []
    wanted = {lab if lab.startswith("sub-") else f"sub-{lab}" for lab in labels}
    ids = list(participant_ids)
    unknown = sorted(w for w in wanted if w not in set(ids))
    return [p for p in ids if p in wanted], unknown
