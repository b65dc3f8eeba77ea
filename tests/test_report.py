"""The study report: Snakemake's report with every figure and table, opened in headless Chromium;
the generated methods text follows the configuration."""

import os
import shutil
import subprocess

import pytest

from qsmvbm.layout import Layout

from .conftest import TINY, run_snakemake

_L = Layout("")
FIGURES = [_L.report("fig1", m).name for m in ("qsm", "gm")] + [
    _L.report(k).name for k in ("fig2", "fig3", "fig4", "qc_summary")
]
TABLES = [
    _L.report(k).name for k in ("table1", "table2", "table3", "table4", "table5", "methods_html")
]
PER_SUBJECT = [
    _L.subject("qsm_qc_png", "sub-ALS001").name,
    _L.subject("normalization_qc_png", "sub-NC002").name,
]


def chromium() -> str | None:
    """Path of Debian's chromium; installed with apt when missing and possible (CI runs as root)."""
    exe = shutil.which("chromium")
    if exe is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True
        )
        exe = shutil.which("chromium")
    return exe


def _headless(exe, profile, *args):
    """Headless Chromium on a fresh profile with a fixed window and a 15 s virtual-time budget."""
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "--virtual-time-budget=15000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_report_builds_with_every_figure_and_table(tiny_run, tmp_path):
    report = tiny_run / "report.html"
    run_snakemake(
        "--report", str(report), "--config", f"simulation={TINY}", f"output_dir={tiny_run}"
    )
    text = report.read_text(errors="replace")
    missing = [name for name in FIGURES + TABLES + PER_SUBJECT if name not in text]
    assert not missing, f"not in the report: {missing}"
    for cat in ("0. Methods", "1. Group results", "2. Tables", "3. Quality control"):
        assert cat in text
    # the main figures also as SVG, for a paper
    lay = Layout(tiny_run)
    for key, mod in [
        ("fig1", "qsm"),
        ("fig1", "gm"),
        ("fig2", None),
        ("fig3", None),
        ("fig4", None),
    ]:
        svg = lay.report_svg(key, mod) if mod else lay.report_svg(key)
        head = svg.read_text()[:400]
        assert "<svg" in head, svg
    exe = chromium()
    if exe is None:
        pytest.skip("chromium is not installed and apt-get is unavailable (not root)")
    shot = tmp_path / "report.png"
    r = _headless(
        exe,
        tmp_path / "chromium-profile",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        report.as_uri(),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln]
    errors = [ln for ln in console if "Uncaught" in ln or "Error" in ln]
    assert not errors, errors
    dom = r.stdout
    assert "qsmvbm study report" in dom and "1. Group results" in dom
    _headless(exe, tmp_path / "chromium-profile2", f"--screenshot={shot}", report.as_uri())
    assert shot.stat().st_size > 20000


def test_group_tables_are_on_disk(tiny_run):
    rep = Layout(tiny_run).report_dir
    for name in FIGURES + TABLES:
        assert (rep / name).stat().st_size > 500, name
    from PIL import Image

    for name in FIGURES:  # 300 dpi: a 12-inch-wide figure is 3600 pixels wide
        assert Image.open(rep / name).info["dpi"][0] == pytest.approx(300, abs=1), name
    md = Layout(tiny_run).report("methods_md").read_text()
    assert "4 participants were processed" in md and "[1] Li Q" in md


def test_methods_text_follows_config():
    from qsmvbm.config import workflow_defaults
    from qsmvbm.report.methods import methods_paragraphs

    counts = {
        "processed": {"ALS": 2, "NC": 2},
        "included": {"ALS": 2, "NC": 1},
        "excluded": {"sub-NC002": "bad"},
    }
    glm = {"qsm": {"fwhm_mm": [4.7, 5.0, 4.8], "df": 1}, "gm": {}}

    def text(overrides):
        paras, refs = methods_paragraphs(
            workflow_defaults(overrides), counts, glm, "MNI152NLin2009aSym", None
        )
        return " ".join(paras + refs)

    base = text({})
    assert "STAR-QSM" in base and "p < 0.005 uncorrected" in base
    assert "Laplacian boundary value" in base and "V-SHARP" not in base  # LBV by default
    assert "V-SHARP" in text({"qsm": {"background": "vsharp"}})
    tfi = text({"qsm": {"background": "tfi"}})
    assert "total field inversion" in tfi and "Liu Z, Kee Y" in tfi
    assert "background field was removed" not in tfi and "STAR-QSM" not in tfi
    assert "sub-NC002 (bad)" in base and "Wei H" in base
    tv = text({"qsm": {"inversion": "tvadmm", "tvadmm": {"lam": 0.001}}})
    assert (
        "total-variation regularized inversion by ADMM" in tv
        and "lambda 0.001" in tv
        and "STAR-QSM" not in tv
    )
    assert "Bilgic B" in tv and "Wei H" not in tv
    thr = text({"group": {"cluster_forming_p": 0.001, "n_perm": 10000, "svc_volume": "roi"}})
    assert (
        "p < 0.001 uncorrected" in thr and "10000 permutations" in thr and "the whole region" in thr
    )
    assert "Each region was corrected on its own" in base
    # the T1w outline by BET, the left-right check, and what the magnitude mask is when asked for
    assert "first brain outline from BET" in base and "Smith SM" in base
    assert "left-right mirror image" in base
    assert "left-right mirror image" not in text({"qc": {"left_right_check": False}})
    mag = text({"qsm": {"mask": {"source": "magnitude"}}})
    assert "deformable-surface brain extraction (BET)" in mag
    tf = text({"group": {"significance": "tfce"}, "qsm": {"edge_refinement": "msmv"}})
    assert "Threshold-free cluster enhancement" in tf and "Smith SM, Nichols TE" in tf
    assert "maximum spherical mean value" in tf and "Roberts AG" in tf
    assert "Threshold-free" not in base and "Roberts AG" not in base
    otsu = text({"qsm": {"mask": {"source": "magnitude", "method": "otsu"}}})
    assert "Otsu threshold" in otsu
    assert (
        "across the 8 searches (4 regions x 2 modalities)" in base
        and "(34% if the searches" in base
    )
    two = text({"group": {"rois": ["Thalamus_L", "Thalamus_R"]}})
    assert (
        "across the 4 searches (2 regions x 2 modalities)" in two and "(19% if the searches" in two
    )
    assert "all regions of both modalities" in text({"group": {"fwe_family": "analysis"}})
    assert "cohort QSM template" not in base
    mc = text({"anat": {"normalization": "multichannel", "multichannel": {"qsm_weight": 0.5}}})
    assert "cohort QSM template" in mc and "weight 0.5" in mc and "two-channel SyN" in mc
    assert "refined in the deep grey nuclei" in base and "radius 2 voxels" in base
    assert "x, y, z -36 to 36, -44 to 24, -20 to 30 mm" in base and "50x30x20 iterations" in base
    off = text({"anat": {"deep_grey": {"refine": {"enabled": False}}}})
    assert "refined in the deep grey nuclei" not in off


def test_qc_summary_keeps_every_metric_panel(tmp_path, monkeypatch):
    """Each QC metric has its own panel with axes, and the exclusions go to a free panel (they once
    covered the last metric's, whose axes then vanished)."""
    import numpy as np
    import pandas as pd

    from qsmvbm.report import figures

    cols = [m[0] for m in figures.QC_METRICS]
    qc = pd.DataFrame(np.full((3, len(cols)), 0.9), columns=cols)
    qc["participant_id"] = ["sub-01", "sub-02", "sub-03"]
    qc["included"] = ["True", "True", "False"]
    qc["reason"] = ["", "", "dice_brain 0.5 < 0.9"]
    seen = {}
    monkeypatch.setattr(figures, "_save", lambda fig, out, **kw: seen.setdefault("fig", fig))
    figures.qc_summary_figure(qc, {m[1]: 0.5 for m in figures.QC_METRICS}, tmp_path / "qc.png")
    axes = seen["fig"].axes
    shown = [ax for ax in axes if ax.axison]
    assert [ax.get_title() for ax in shown] == cols
    notes = [ax for ax in axes if not ax.axison and ax.texts]
    assert len(notes) == 1 and "2 of 3 subjects included" in notes[0].texts[0].get_text()
    assert "sub-03: dice_brain 0.5 < 0.9" in notes[0].texts[0].get_text()
