"""Subject-level statistics of the reference study: Table 1, ROI group tests, correlations.

Pure functions on pandas DataFrames. Tests follow the study (SPSS): Student two-sample t-test for
age and QSM, ANCOVA with TIV for GM volume, Pearson's chi-squared without continuity correction for
sex, Lilliefors normality per group, Pearson and partial correlations (one- or two-tailed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
from scipy import stats
from statsmodels.stats.diagnostic import lilliefors

ALTERNATIVES = ("two-sided", "greater", "less")


def progression_rate(
    df: pd.DataFrame,
    score: str = "alsfrs_r",
    duration: str = "disease_duration_months",
    max_score: float = 48.0,
) -> pd.Series:
    """ALS disease progression rate (points per month): (max_score - score) / duration.

    NaN where the duration is missing or not positive.
    """
    dur = pd.to_numeric(df[duration], errors="coerce")
    s = pd.to_numeric(df[score], errors="coerce")
    return ((max_score - s) / dur.where(dur > 0)).astype(float)


def _fmt_mean_sd(x: pd.Series, rng: bool = False, digits: int = 2) -> str:
    x = pd.to_numeric(x, errors="coerce").dropna()
    if not len(x):
        return "n/a"
    s = f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}"
    if rng:
        s += f" [{x.min():g}–{x.max():g}]"
    return s


def sex_chi2(male: tuple[int, int], n: tuple[int, int]) -> tuple[float, float]:
    """Pearson chi-squared (no continuity correction) of male counts in two groups -> (chi2, p)."""
    table = np.array([[male[0], n[0] - male[0]], [male[1], n[1] - male[1]]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    return float(chi2), float(p)


def demographics(
    df: pd.DataFrame,
    group_col: str,
    patient: str,
    control: str,
    clinical: list[str],
    sex_col: str = "sex",
    age_col: str = "age",
) -> pd.DataFrame:
    """The study's Table 1: n, age (t-test), sex (chi-squared), clinical scores of the patients.

    Returns columns ``characteristic, <patient>, <control>, test, statistic, p``.
    """
    gp, gc = df[df[group_col] == patient], df[df[group_col] == control]
    rows = [
        {
            "characteristic": "Number",
            patient: str(len(gp)),
            control: str(len(gc)),
            "test": "",
            "statistic": np.nan,
            "p": np.nan,
        }
    ]
    if age_col in df:
        a, b = (pd.to_numeric(g[age_col], errors="coerce").dropna() for g in (gp, gc))
        t, p = stats.ttest_ind(a, b) if len(a) > 1 and len(b) > 1 else (np.nan, np.nan)
        rows.append(
            {
                "characteristic": "Age (years)",
                patient: _fmt_mean_sd(a),
                control: _fmt_mean_sd(b),
                "test": "two-sample t-test",
                "statistic": t,
                "p": p,
            }
        )
    if sex_col in df:
        from .design import sex_male

        mp, mc = (int(np.nansum(sex_male(g[sex_col]))) for g in (gp, gc))
        chi2, p = (
            sex_chi2((mp, mc), (len(gp), len(gc))) if len(gp) and len(gc) else (np.nan, np.nan)
        )
        rows.append(
            {
                "characteristic": "Sex (male)",
                patient: f"{mp} ({100 * mp / max(len(gp), 1):.1f}%)",
                control: f"{mc} ({100 * mc / max(len(gc), 1):.1f}%)",
                "test": "chi-squared (no continuity correction)",
                "statistic": chi2,
                "p": p,
            }
        )
    for c in clinical:
        if c not in df:
            continue
        rows.append(
            {
                "characteristic": c,
                patient: _fmt_mean_sd(gp[c], rng=True),
                control: _fmt_mean_sd(gc[c], rng=True)
                if pd.to_numeric(gc[c], errors="coerce").notna().any()
                else "n/a",
                "test": "",
                "statistic": np.nan,
                "p": np.nan,
            }
        )
    return pd.DataFrame(rows)


def lilliefors_p(x) -> float:
    """Lilliefors normality p (statsmodels, table method: p clipped to [0.001, 0.99]); NaN if n < 5."""
    x = pd.to_numeric(pd.Series(x), errors="coerce").dropna().to_numpy()
    if len(x) < 5 or np.ptp(x) == 0:
        return np.nan
    return float(lilliefors(x, dist="norm", pvalmethod="table")[1])


def group_test(
    df: pd.DataFrame,
    value: str,
    group_col: str,
    patient: str,
    control: str,
    covariates: list[str] | None = None,
) -> dict:
    """Patients vs controls on one ROI value.

    Without covariates: Student two-sample t-test. With covariates: ANCOVA (pingouin, type II SS) for
    F and p, and the t of the group term of the same linear model (sign: patient - control).
    """
    cols = [value, group_col] + list(covariates or [])
    d = df[cols].dropna()
    d = d[d[group_col].isin([patient, control])]
    yp, yc = d.loc[d[group_col] == patient, value], d.loc[d[group_col] == control, value]
    row = {
        "value": value,
        "n_" + patient: len(yp),
        "n_" + control: len(yc),
        "mean_" + patient: yp.mean(),
        "sd_" + patient: yp.std(ddof=1),
        "mean_" + control: yc.mean(),
        "sd_" + control: yc.std(ddof=1),
        "lilliefors_p_" + patient: lilliefors_p(yp),
        "lilliefors_p_" + control: lilliefors_p(yc),
    }
    if not covariates:
        t, p = stats.ttest_ind(yp, yc)
        row.update(
            test="two-sample t-test",
            covariates="",
            t=float(t),
            F=float(t) ** 2,
            df=len(d) - 2,
            p=float(p),
        )
        return row
    x = (d[group_col] == patient).to_numpy(float)
    Z = d[covariates].to_numpy(float)
    X = np.column_stack([x, np.ones_like(x), Z - Z.mean(axis=0)])
    y = d[value].to_numpy(float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - X.shape[1]
    rss = float(((y - X @ beta) ** 2).sum())
    se = np.sqrt(rss / dof * np.linalg.inv(X.T @ X)[0, 0])
    t = float(beta[0] / se)
    dd = d.rename(columns={value: "y", group_col: "g"})
    dd = dd.rename(columns={c: f"cov{i}" for i, c in enumerate(covariates)})
    aov = pg.ancova(data=dd, dv="y", between="g", covar=[f"cov{i}" for i in range(len(covariates))])
    g = aov[aov["Source"] == "g"].iloc[0]
    row.update(
        test="ANCOVA",
        covariates=",".join(covariates),
        t=t,
        F=float(g["F"]),
        df=dof,
        p=float(g["p_unc"]),
        adjusted_difference=float(beta[0]),
    )
    return row


def correlation(
    df: pd.DataFrame,
    x: str,
    y: str,
    covariates: list[str] | None = None,
    alternative: str = "two-sided",
) -> dict:
    """Pearson (or partial, controlling ``covariates``) correlation of columns ``x`` and ``y``.

    Rows with a missing value are dropped listwise. Returns n, r, p, CI95 (from pingouin).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    covariates = list(covariates or [])
    d = df[[x, y] + covariates].apply(pd.to_numeric, errors="coerce").dropna()
    d.columns = ["x", "y"] + [f"c{i}" for i in range(len(covariates))]
    if len(d) < len(covariates) + 3 or d["x"].nunique() < 2 or d["y"].nunique() < 2:
        return {"n": len(d), "r": np.nan, "p": np.nan, "ci95_low": np.nan, "ci95_high": np.nan}
    res = pg.partial_corr(
        data=d,
        x="x",
        y="y",
        covar=[f"c{i}" for i in range(len(covariates))] or None,
        alternative=alternative,
        method="pearson",
    )
    ci = res["CI95"].iloc[0]
    return {
        "n": int(res["n"].iloc[0]),
        "r": float(res["r"].iloc[0]),
        "p": float(res["p_val"].iloc[0]),
        "ci95_low": float(ci[0]),
        "ci95_high": float(ci[1]),
    }


def r_to_p(r: float, n: int, alternative: str = "two-sided") -> float:
    """p-value of a Pearson r with n observations (t = r sqrt(n-2) / sqrt(1-r^2))."""
    t = r * np.sqrt((n - 2) / (1 - r * r))
    if alternative == "two-sided":
        return float(2 * stats.t.sf(abs(t), n - 2))
    if alternative == "greater":
        return float(stats.t.sf(t, n - 2))
    return float(stats.t.cdf(t, n - 2))


def fisher_ci(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z confidence interval of a correlation."""
    z = np.arctanh(r)
    h = stats.norm.isf((1 - level) / 2) / np.sqrt(n - 3)
    return float(np.tanh(z - h)), float(np.tanh(z + h))


CORR_COLUMNS = [
    "x",
    "y",
    "group",
    "n",
    "r",
    "p",
    "alternative",
    "covariates",
    "method",
    "ci95_low",
    "ci95_high",
]
VARIABLE_ALIASES = {"sex": "sex_male", "tiv": "tiv_ml"}


def expand_terms(term: str, regions: list[str], clinical: list[str], columns) -> list[str]:
    """Columns named by a correlation term: ``qsm``/``gm`` -> one per region, ``clinical`` -> the
    clinical scores present, ``sex`` -> ``sex_male``, anything else -> that column."""
    if term in ("qsm", "gm"):
        return [f"{term}_{r}" for r in regions]
    if term == "clinical":
        return [c for c in clinical if c in columns]
    col = VARIABLE_ALIASES.get(term, term)
    if col not in columns:
        raise ValueError(
            f"correlation variable {term!r}: no column {col!r} (columns: {', '.join(columns)})"
        )
    return [col]


def correlation_table(
    data: pd.DataFrame,
    specs: list[dict],
    regions: list[str],
    clinical: list[str],
    groups: dict[str, list[str]],
    group_col: str = "group",
) -> pd.DataFrame:
    """Every configured correlation. ``specs``: ``{x, y, groups, alternative, covariates}``; when x and
    y both expand over regions (qsm vs gm) they are paired region by region, otherwise crossed.
    ``groups``: ``patients``/``controls``/``all`` -> group labels."""
    rows = []
    for spec in specs:
        xs = expand_terms(spec["x"], regions, clinical, data.columns)
        ys = expand_terms(spec["y"], regions, clinical, data.columns)
        if spec["x"] in ("qsm", "gm") and spec["y"] in ("qsm", "gm"):
            pairs = list(zip(xs, ys))
        else:
            pairs = [(a, b) for a in xs for b in ys]
        covs = [VARIABLE_ALIASES.get(c, c) for c in spec.get("covariates", [])]
        alt = spec.get("alternative", "two-sided")
        for gname in spec.get("groups", ["patients"]):
            d = data[data[group_col].isin(groups[gname])]
            label = "+".join(groups[gname])
            for a, b in pairs:
                res = correlation(d, a, b, covs, alt)
                method = "point-biserial (male = 1)" if "sex_male" in (a, b) else "pearson"
                if covs:
                    method = "partial " + method
                rows.append(
                    {
                        "x": a,
                        "y": b,
                        "group": label,
                        **res,
                        "alternative": alt,
                        "covariates": ",".join(covs),
                        "method": method,
                    }
                )
    return pd.DataFrame(rows, columns=CORR_COLUMNS)
