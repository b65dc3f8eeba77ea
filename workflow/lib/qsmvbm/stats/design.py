"""The group design: who is analysed, their group, covariates and clinical scores."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .glm import design_matrix
from .tables import progression_rate

COVARIATES = {"tiv": "tiv_ml", "age": "age", "sex": "sex_male"}


class DesignError(ValueError):
    """Invalid design input; the message names the file, the subject and the problem."""


def sex_male(values) -> np.ndarray:
    """1.0 for male, 0.0 for female, NaN otherwise, read from the first letter of each value
    (``M``/``male``/``Male`` and ``F``/``female``); the one reading of sex in the model, the
    correlations and Table 1."""
    first = pd.Series(values).astype(str).str.strip().str.upper().str[0]
    return np.where(first == "M", 1.0, np.where(first == "F", 0.0, np.nan))


def build_design(
    participants: pd.DataFrame,
    qc: pd.DataFrame,
    tiv_ml: dict[str, float],
    group_column: str,
    patient: str,
    control: str,
    rate: dict | None = None,
) -> pd.DataFrame:
    """One row per subject of the QC table: participants.tsv columns, ``tiv_ml``, ``sex_male`` (0/1),
    the derived progression rate, ``included`` and ``reason`` (from normalization QC).

    Parameters
    ----------
    participants : participants.tsv as read by :func:`qsmvbm.bids.read_participants`.
    qc : cohort normalization QC table (``participant_id, included, reason``).
    tiv_ml : participant_id -> TIV (mL) from the T1w pipeline.
    rate : ``{name, score, duration, max_score}`` of the derived progression rate, or None.
    """
    d = participants.merge(
        qc[["participant_id", "included", "reason"]], on="participant_id", how="inner"
    )
    d["group"] = d[group_column]
    d["tiv_ml"] = d["participant_id"].map(tiv_ml).astype(float)
    if "sex" in d:
        d["sex_male"] = sex_male(d["sex"])
    if rate and rate["score"] in d and rate["duration"] in d:
        d[rate["name"]] = progression_rate(d, rate["score"], rate["duration"], rate["max_score"])
    d["included"] = d["included"].astype(str).str.lower().isin(["true", "1"])
    d = d[d["group"].isin([patient, control])].reset_index(drop=True)
    return d


def included_rows(design: pd.DataFrame) -> pd.DataFrame:
    """The rows of a design (or QC) table whose ``included`` is true (read back from TSV as the
    text ``True``), re-indexed 0..n-1."""
    return design[design["included"].astype(str) == "True"].reset_index(drop=True)


def group_design(
    design: pd.DataFrame, patient: str, covariates: list[str], source: str = "design"
) -> np.ndarray:
    """The two-group GLM design of a design table's rows: ``[patient, 1, covariates]`` (the group
    stage's, and the one the power model's residuals are taken from)."""
    x = (design["group"] == patient).to_numpy(float)
    return design_matrix(x, covariate_matrix(design, covariates, source))


def covariate_matrix(
    design: pd.DataFrame, names: list[str], source: str = "design"
) -> np.ndarray | None:
    """(n, k) covariates for the GLM from config names (``tiv``, ``age``, ``sex`` or any column).

    Raises :class:`DesignError` naming the subjects with a missing value.
    """
    if not names:
        return None
    cols = []
    for name in names:
        col = COVARIATES.get(name, name)
        if col not in design:
            raise DesignError(
                f"{source}: covariate {name!r} has no column {col!r} "
                f"(columns: {', '.join(design.columns)})"
            )
        v = pd.to_numeric(design[col], errors="coerce")
        bad = design.loc[v.isna(), "participant_id"].tolist()
        if bad:
            raise DesignError(
                f"{source}: covariate {name!r} is missing or not numeric for {', '.join(bad)}"
            )
        cols.append(v.to_numpy(float))
    return np.column_stack(cols)
