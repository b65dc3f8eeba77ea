"""Group figures of the study report (the reference study's Figures 1-4) and the QC summary.

Each function takes tables/arrays, draws one figure with matplotlib (nilearn for brain slices) and
writes it atomically to its output path, or to each of several paths in the format of its suffix (the
workflow asks for a 300 dpi PNG and an SVG of Figures 1-4). Units are on every axis: susceptibility in ppm, GM as modulated GM (mL/mL), t unitless.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..io import atomic_path  # noqa: E402

COLORS = ("#c0392b", "#2471a3")  # patients, controls
UNITS = {"qsm": "susceptibility (ppm)", "gm": "modulated GM (mL/mL)"}
NAMES = {"qsm": "QSM", "gm": "GM volume"}


def _save(fig, out, dpi: int = 300) -> Path:
    """Write ``fig`` to ``out``: a path, or several (e.g. a PNG at ``dpi`` and an SVG for a paper),
    each in the format of its suffix. Returns the first path."""
    paths = [Path(out)] if isinstance(out, str | Path) else [Path(p) for p in out]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix.lstrip(".")
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
    plt.close(fig)
    return paths[0]


def _label_colorbar(display, label: str = "t") -> None:
    """Put ``label`` above a nilearn display's colour bar (nilearn draws it unlabelled), in the
    colour of its tick labels (white on the dark slice displays)."""
    cbar = getattr(display, "_cbar", None)
    if cbar is not None:
        ticks = cbar.ax.yaxis.get_ticklabels()
        color = ticks[0].get_color() if ticks else "black"
        cbar.ax.set_title(label, fontsize=9, color=color, pad=4)


def _message(ax, text: str) -> None:
    ax.text(
        0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True, transform=ax.transAxes
    )
    ax.set_axis_off()


def svc_figure(
    tmap_img,
    cluster_img,
    roi_img,
    template_img,
    clusters: pd.DataFrame,
    threshold: float,
    title: str,
    out_png,
    max_rows: int = 4,
) -> Path:
    """The SVC t-map (t above the cluster-forming threshold inside the ROIs) over the template: a glass
    brain, then orthogonal slices through the peak of each significant cluster (or the strongest
    clusters if none is), ROI outlines in cyan."""
    import nibabel as nib
    from nilearn import plotting

    t = np.asarray(tmap_img.dataobj, dtype=np.float32)
    inside = np.asarray(cluster_img.dataobj) > 0
    svc = nib.Nifti1Image(np.where(inside, t, 0).astype(np.float32), tmap_img.affine)
    sig = clusters[clusters["significant"].astype(str) == "True"]
    shown = (sig if len(sig) else clusters.sort_values("peak_t", ascending=False)).head(max_rows)
    rows = 1 + len(shown)
    fig = plt.figure(figsize=(12, 3.4 * rows))
    vmax = max(float(t[inside].max()) if inside.any() else 0.0, threshold + 1)
    kw = dict(
        threshold=threshold, vmin=0, vmax=vmax, cmap="autumn", colorbar=True, symmetric_cbar=False
    )
    h = 1 / rows
    ax = fig.add_axes([0.0, 1 - h, 1.0, h * 0.84])
    _label_colorbar(plotting.plot_glass_brain(svc, axes=ax, plot_abs=False, **kw))
    fig.text(
        0.01,
        1 - h * 0.08,
        f"{title}: SVC t-map, t > {threshold:.2f} (p < cluster-forming threshold) inside the ROIs",
        fontsize=10,
        va="top",
        weight="bold",
    )
    for i, (_, c) in enumerate(shown.iterrows(), start=1):
        ax = fig.add_axes([0.0, 1 - (i + 1) * h, 1.0, h * 0.80])
        state = "significant" if str(c["significant"]) == "True" else "NOT significant"
        label = (
            f"{c['roi']} cluster {int(c['cluster_id'])} ({state}): peak ({c['peak_x']:g}, {c['peak_y']:g}, "
            f"{c['peak_z']:g}) mm, t = {c['peak_t']:.2f}, FWE-SVC p: RFT {c['p_fwe_rft']:.3g}, "
            f"permutation {c['p_fwe_perm']:.3g}; {c['volume_mm3']:g} mm3 at p < threshold"
        )
        fig.text(0.01, 1 - i * h - h * 0.04, label, fontsize=9, va="top")
        disp = plotting.plot_stat_map(
            svc,
            bg_img=template_img,
            axes=ax,
            display_mode="ortho",
            annotate=True,
            cut_coords=(c["peak_x"], c["peak_y"], c["peak_z"]),
            draw_cross=True,
            **kw,
        )
        _label_colorbar(disp)
        disp.add_contours(roi_img, levels=[0.5], colors="cyan", linewidths=0.8)
    if not len(shown):
        fig.text(0.5, 0.1, "no voxel above the cluster-forming threshold in the ROIs", ha="center")
    return _save(fig, out_png)


def _stat_for(stats: pd.DataFrame, region: str, measure: str) -> str:
    r = stats[(stats["region"] == region) & (stats["measure"] == measure)]
    if not len(r):
        return ""
    r = r.iloc[0]
    cov = (
        f" | {r['covariates']}" if isinstance(r.get("covariates"), str) and r["covariates"] else ""
    )
    return f"{r['test']}{cov}: t = {r['t']:.2f}, p = {r['p']:.3g}"


def roi_group_figure(
    values: pd.DataFrame,
    stats: pd.DataFrame,
    regions: list[str],
    patient: str,
    control: str,
    out_png,
) -> Path:
    """Figure 2: QSM and GM per group in each region (box + points) with the group test."""
    if not regions:
        fig, ax = plt.subplots(figsize=(6, 2))
        _message(ax, "no significant cluster: no ROI values to compare")
        return _save(fig, out_png)
    fig, axes = plt.subplots(
        len(regions), 2, figsize=(10, 3.6 * len(regions)), squeeze=False, constrained_layout=True
    )
    rng = np.random.default_rng(0)
    for i, region in enumerate(regions):
        for j, mod in enumerate(("qsm", "gm")):
            ax = axes[i, j]
            col = f"{mod}_{region}"
            data = [
                values.loc[values["group"] == g, col].dropna().to_numpy()
                for g in (patient, control)
            ]
            ax.boxplot(data, widths=0.5, showfliers=False)
            ax.set_xticks(
                [1, 2], [f"{patient} (n={len(data[0])})", f"{control} (n={len(data[1])})"]
            )
            for k, (d, c) in enumerate(zip(data, COLORS), start=1):
                ax.scatter(
                    k + rng.uniform(-0.12, 0.12, len(d)), d, s=14, color=c, alpha=0.8, zorder=3
                )
            ax.set_ylabel(UNITS[mod])
            ax.set_title(f"{NAMES[mod]} in {region}\n{_stat_for(stats, region, mod)}", fontsize=9)
    return _save(fig, out_png)


def _corr_label(corr: pd.DataFrame, x: str, y: str, group: str) -> str:
    r = corr[
        (corr["x"] == x)
        & (corr["y"] == y)
        & (corr["group"] == group)
        & (corr["covariates"].fillna("") == "")
    ]
    if not len(r):
        return group
    r = r.iloc[0]
    tail = "one-tailed" if r["alternative"] != "two-sided" else "two-tailed"
    return f"{group}: r = {r['r']:.2f}, p = {r['p']:.3g} ({tail})"


def _scatter_fit(ax, x, y, color, label):
    ax.scatter(x, y, s=16, color=color, alpha=0.8, label=label)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 3 and np.ptp(x[ok]) > 0:
        b = np.polyfit(x[ok], y[ok], 1)
        xs = np.linspace(x[ok].min(), x[ok].max(), 20)
        ax.plot(xs, np.polyval(b, xs), color=color, lw=1.5)


def qsm_gm_figure(
    values: pd.DataFrame,
    corr: pd.DataFrame,
    regions: list[str],
    patient: str,
    control: str,
    out_png,
) -> Path:
    """Figure 3: QSM against GM per region, points and least-squares line per group, r and p in the legend."""
    if not regions:
        fig, ax = plt.subplots(figsize=(6, 2))
        _message(ax, "no significant cluster: no QSM-GM association to show")
        return _save(fig, out_png)
    n = len(regions)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.0), squeeze=False, constrained_layout=True)
    for ax, region in zip(axes[0], regions):
        for g, c in zip((patient, control), COLORS):
            d = values[values["group"] == g]
            x, y = f"qsm_{region}", f"gm_{region}"
            _scatter_fit(
                ax, d[x].to_numpy(float), d[y].to_numpy(float), c, _corr_label(corr, x, y, g)
            )
        ax.set_xlabel(f"QSM, {UNITS['qsm']}")
        ax.set_ylabel(f"GM, {UNITS['gm']}")
        ax.set_title(region, fontsize=10)
        # below the axes, so that it never hides a point
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    return _save(fig, out_png)


def clinical_figure(
    values: pd.DataFrame,
    corr: pd.DataFrame,
    regions: list[str],
    scores: list[str],
    patient: str,
    out_png,
) -> Path:
    """Figure 4: QSM and GM of each region against each clinical score, patients only."""
    scores = [s for s in scores if s in values.columns]
    rows = [(m, r) for r in regions for m in ("qsm", "gm")]
    if not rows or not scores:
        fig, ax = plt.subplots(figsize=(6, 2))
        _message(ax, "no significant cluster or no clinical score: nothing to correlate")
        return _save(fig, out_png)
    fig, axes = plt.subplots(
        len(rows),
        len(scores),
        figsize=(3.8 * len(scores), 3.3 * len(rows)),
        squeeze=False,
        constrained_layout=True,
    )
    d = values[values["group"] == patient]
    for i, (mod, region) in enumerate(rows):
        for j, s in enumerate(scores):
            ax = axes[i, j]
            y = f"{mod}_{region}"
            _scatter_fit(ax, d[s].to_numpy(float), d[y].to_numpy(float), COLORS[0], None)
            ax.set_title(_corr_label(corr, y, s, patient).replace(f"{patient}: ", ""), fontsize=8)
            ax.set_xlabel(s)
            ax.set_ylabel(f"{NAMES[mod]} {region}\n{UNITS[mod]}", fontsize=8)
    n_tests = len(rows) * len(scores)
    fig.suptitle(
        f"{patient} only: ROI values against clinical scores\n"
        f"p uncorrected; {n_tests} correlations shown (Bonferroni threshold 0.05/{n_tests} = "
        f"{0.05 / n_tests:.2g})",
        fontsize=10,
    )
    return _save(fig, out_png)


QC_METRICS = [
    ("dice_brain", "dice_min", "min", "Dice, warped brain vs template mask"),
    ("t1_corr", "t1_corr_min", "min", "correlation, warped T1w vs template"),
    ("gm_corr", "gm_corr_min", "min", "correlation, warped GM vs template GM"),
    ("qsm_dgm_corr", "qsm_dgm_corr_min", "min", "deep-grey QSM corr. with cohort median"),
    ("qsm_dgm_robust_z", "qsm_dgm_robust_z_max", "max", "robust z of that correlation (MADs)"),
    (
        "qsm_mask_dice_t1",
        "qsm_mask_dice_min",
        "min",
        "QSM mask Dice with the T1w brain (GRE space)",
    ),
    (
        "qsm_mask_outside_t1",
        "qsm_mask_outside_max",
        "max",
        "share of the QSM mask outside the T1w brain",
    ),
]


def qc_summary_figure(qc: pd.DataFrame, thresholds: dict, out_png) -> Path:
    """Normalization and plausibility QC: each metric per subject with its threshold (dashed), excluded
    subjects named."""
    rows = len(QC_METRICS) // 4 + 1  # a free panel after the metrics for the exclusions
    fig, axes = plt.subplots(rows, 4, figsize=(15, 4.25 * rows), constrained_layout=True)
    axes = axes.ravel()
    for ax in axes[len(QC_METRICS) :]:
        ax.set_axis_off()
    inc = qc["included"].astype(str) == "True"
    rng = np.random.default_rng(0)
    for ax, (col, key, kind, label) in zip(axes, QC_METRICS):
        v = pd.to_numeric(qc.get(col), errors="coerce")
        x = rng.uniform(-0.2, 0.2, len(qc))
        ax.scatter(x[inc], v[inc], s=16, color="#2471a3", label="included")
        ax.scatter(x[~inc], v[~inc], s=30, color="#c0392b", marker="x", label="excluded")
        for xi, vi, pid, ok in zip(x, v, qc["participant_id"], inc):
            if not ok and np.isfinite(vi):
                ax.annotate(pid, (xi, vi), fontsize=7, xytext=(4, 2), textcoords="offset points")
        thr = thresholds.get(key)
        if thr is not None:
            ax.axhline(thr, ls="--", color="k", lw=1, label=f"{kind} {thr:g}")
        ax.set_xticks([])
        ax.set_xlim(-0.5, 0.5)
        ax.set_ylabel(
            label + (" (MAD units)" if col == "qsm_dgm_robust_z" else " (unitless)"), fontsize=8
        )
        ax.set_title(col, fontsize=9)
        ax.legend(fontsize=7, loc="best")
    ex = qc[~inc]
    lines = [f"{r.participant_id}: {r.reason}" for r in ex.itertuples()] or ["none"]
    # the first panel after the metrics' (the exclusions once hid the last metric's axes)
    spare = axes[len(QC_METRICS)]
    _message(
        spare,
        f"{int(inc.sum())} of {len(qc)} subjects included\n\nexcluded:\n" + "\n".join(lines),
    )
    spare.texts[0].set_fontsize(9)
    fig.suptitle("Normalization and plausibility quality control", fontsize=11)
    return _save(fig, out_png)
