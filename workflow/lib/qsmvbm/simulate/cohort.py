"""Cohort-level draws: participants, demographics, clinical scores and effect sizes.

Everything here is deterministic for a given config seed. Per-subject effect
multipliers ``m_i`` scale each planted effect: ``chi_delta * m_i`` and
``gm_change * m_i``. For an effect linked to a clinical score with target
correlation ``r``, ``m_i = 1 + cv * (r * z_i + sqrt(1 - r^2) * e_i)`` where
``z_i`` is the standardised score and ``e_i`` standardised noise made
orthogonal to ``z`` in the sample, so the sample correlation of ``m`` with the
score is exactly ``r`` (before clipping ``m`` at 0, which only matters for
``cv`` > 0.4 or so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CLINICAL_COLUMNS_ORDER = ("alsfrs_r", "disease_duration_months", "umn_score")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def draw_bounded(rng: np.random.Generator, dist: dict, n: int) -> np.ndarray:
    """Draw ``n`` values from a normal or lognormal with given mean/sd, redrawing out-of-range values."""
    lo, hi = dist.get("min", -np.inf), dist.get("max", np.inf)
    if dist.get("distribution", "normal") == "lognormal":
        s2 = np.log1p((dist["sd"] / dist["mean"]) ** 2)
        mu = np.log(dist["mean"]) - s2 / 2
        draw = lambda k: rng.lognormal(mu, np.sqrt(s2), k)  # noqa: E731
    else:
        draw = lambda k: rng.normal(dist["mean"], dist["sd"], k)  # noqa: E731
    out = draw(n)
    for _ in range(1000):
        if dist.get("integer"):
            out = np.rint(out)
        bad = (out < lo) | (out > hi)
        if not bad.any():
            break
        out[bad] = draw(int(bad.sum()))
    else:  # pragma: no cover - a degenerate range
        out = np.clip(out, lo, hi)
    return out


def participant_ids(cfg: dict) -> list[str]:
    """Participant ids in cohort order: ``sub-<GROUP><NNN>``."""
    return [f"sub-{g['label']}{i + 1:03d}" for g in cfg["groups"] for i in range(g["n"])]


def participant_columns(cfg: dict) -> list[str]:
    """The columns of the simulated ``participants.tsv``, in order."""
    return ["participant_id", "group", "age", "sex", *cfg["clinical_scores"]]


def draw_participants(cfg: dict) -> pd.DataFrame:
    """The ``participants.tsv`` table: id, group, age, sex and the clinical scores.

    Non-clinical groups get missing values (written ``n/a``) for clinical scores.
    """
    rows = []
    scores = list(cfg["clinical_scores"])
    for gi, g in enumerate(cfg["groups"]):
        rng = _rng(cfg["seed"], 1, gi)
        n = g["n"]
        age_d = g.get("age") or {"mean": 50.0, "sd": 10.0, "min": 18, "max": 90}
        age = np.round(draw_bounded(rng, age_d, n), 1)
        n_male = int(round(g["male_fraction"] * n))
        sex = np.array(["M"] * n_male + ["F"] * (n - n_male))
        rng.shuffle(sex)
        clin = {}
        for si, s in enumerate(scores):
            if g["clinical"]:
                clin[s] = draw_bounded(_rng(cfg["seed"], 2, gi, si), cfg["clinical_scores"][s], n)
            else:
                clin[s] = np.full(n, np.nan)
        for i in range(n):
            row = {
                "participant_id": f"sub-{g['label']}{i + 1:03d}",
                "group": g["label"],
                "age": age[i],
                "sex": sex[i],
            }
            row.update({s: clin[s][i] for s in scores})
            rows.append(row)
    return pd.DataFrame(rows, columns=participant_columns(cfg))


def effect_multipliers(cfg: dict, participants: pd.DataFrame) -> pd.DataFrame:
    """Per-subject multiplier of every planted effect (0 for subjects outside its group).

    Returns a DataFrame with ``participant_id`` and one column ``m_<effect>`` each.
    """
    out = pd.DataFrame({"participant_id": participants["participant_id"]})
    for ei, e in enumerate(cfg["effects"]):
        rng = _rng(cfg["seed"], 3, ei)
        in_group = (participants["group"] == e["group"]).to_numpy()
        n = int(in_group.sum())
        m = np.zeros(len(participants))
        noise = rng.standard_normal(n)
        cv = e["effect_cv"]
        if e.get("clinical") and n > 2:
            score = participants.loc[in_group, e["clinical"]["score"]].to_numpy(float)
            z = (score - score.mean()) / (score.std() or 1.0)
            noise = noise - noise.mean()
            noise = noise - (noise @ z) / (z @ z) * z if z.any() else noise
            noise = noise / (noise.std() or 1.0)
            r = e["clinical"]["r"]
            mm = 1.0 + cv * (r * z + np.sqrt(1 - r * r) * noise)
        else:
            noise = (noise - noise.mean()) / (noise.std() or 1.0) if n > 1 else noise * 0
            mm = 1.0 + cv * noise
        m[in_group] = np.clip(mm, 0.0, None)
        out[f"m_{e['name']}"] = m
    return out
