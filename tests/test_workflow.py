"""The Snakemake workflow: lint, formatting, config errors, runs on simulated and BIDS input."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from qsmvbm.layout import Layout, truth_table
from qsmvbm.smk import parse_usage

from .conftest import ROOT, TINY
from .conftest import run_snakemake as run_smk


def test_lint_clean():
    r = run_smk("--lint")
    out = r.stdout + r.stderr
    assert "Lints for" not in out, out


def test_snakefmt_clean():
    exe = Path(sys.executable).parent / "snakefmt"
    r = subprocess.run(
        [str(exe), "--check", "Snakefile", "workflow/rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "cfg, message",
    [
        ("outdir=x", "unknown key 'outdir' (did you mean 'output_dir'?)"),
        ("output_dir=5", "at output_dir: 5 is not of type 'string'"),
        ("bids_dir=/no/such/folder", "/no/such/folder: the BIDS folder does not exist"),
    ],
)
def test_config_errors_are_clear(cfg, message):
    r = run_smk("-n", "--config", cfg, check=False)
    assert r.returncode != 0
    assert message in r.stdout + r.stderr


def test_default_config_dry_run_simulates_first(tmp_path):
    r = run_smk("-n", "--quiet", "rules", "--config", f"output_dir={tmp_path}")
    out = r.stdout + r.stderr
    assert "simulate_cohort_tables" in out and "simulate_subject" in out


def test_run_on_simulated_cohort(tiny_run):
    import pandas as pd

    out = tiny_run
    lay = Layout(out)
    desc = json.loads(lay.dataset_description().read_text())
    assert desc["DatasetType"] == "derivative"
    # provenance: the commit in the version, the raw dataset linked, Sources as BIDS URIs that resolve
    assert "+g" in desc["GeneratedBy"][0]["Version"]
    raw = Path(desc["DatasetLinks"]["raw"].removeprefix("file://"))
    sources = json.loads(lay.subject("chi_json", "sub-NC001").read_text())["Sources"]
    assert len(sources) == 8 and all(u.startswith("bids:raw:sub-NC001/anat/") for u in sources)
    assert all((raw / u.removeprefix("bids:raw:")).is_file() for u in sources)
    labels = pd.read_csv(lay.dseg_table(), sep="\t")
    assert labels[["index", "abbreviation"]].values.tolist() == [[1, "CSF"], [2, "GM"], [3, "WM"]]
    for pid in ("sub-ALS001", "sub-ALS002", "sub-NC001", "sub-NC002"):
        summary = json.loads(lay.subject("inputs_summary", pid).read_text())
        assert len(summary["echo_times_s"]) == 4 and summary["phase_units"] == "scanner_pm4096"
    assert lay.simulation_figure("sub-ALS001").stat().st_size > 10000
    assert truth_table(lay.sim_bids, "effects").exists()
    assert (out / "logs" / "simulate_subject" / "sub-NC002.log").exists()
    assert (out / "benchmarks" / "simulate_subject" / "sub-NC002.tsv").exists()
    # every job's log ends with its exact CPU time and peak memory (run_profile.py reads them)
    for rule, pid in (
        ("simulate_subject", "sub-NC002"),
        ("qsm", "sub-ALS001"),
        ("group_glm_qsm", None),
    ):
        usage = parse_usage(lay.log(rule, pid))
        assert usage["cpu_s"] > 0 and usage["max_rss_mb"] > 50, rule
    check_group_outputs(lay)
    # nothing to do on a second run
    r = run_smk("-n", "--config", f"simulation={TINY}", f"output_dir={out}")
    assert "Nothing to be done" in r.stdout + r.stderr


def bids_validator_issues(dataset: Path) -> list[dict]:
    """The issues the BIDS validator (bids-validator-deno, the schema-based validator, from the test
    extras) reports on ``dataset``."""
    exe = Path(sys.executable).with_name("bids-validator-deno")
    r = subprocess.run([str(exe), "--json", str(dataset)], capture_output=True, text=True)
    return json.loads(r.stdout)["issues"]["issues"]


def test_derivatives_pass_the_bids_validator(tiny_run):
    """The derivatives are a valid BIDS-derivatives dataset: no error from the BIDS validator; every
    image has a sidecar with what it is, and the custom spaces name their raw reference image."""
    lay = Layout(tiny_run)
    issues = bids_validator_issues(lay.derivatives)
    errors = [
        (i["code"], i.get("subCode"), i.get("location")) for i in issues if i["severity"] == "error"
    ]
    assert errors == [], errors[:20]
    side = json.loads(lay.sidecar("qsm_mask", "sub-NC001").read_text())
    assert side["Type"] == "Brain" and side["SpatialReference"].startswith(
        "bids:raw:sub-NC001/anat/"
    )
    assert side["Parameters"]["qsm"]["background"] == "lbv"
    gm = json.loads(lay.sidecar("gm_mod", "sub-NC001").read_text())
    assert gm["Resolution"] == {"2": "2 mm isotropic grid of the MNI152NLin2009aSym template"}
    assert "not a probability" in gm["Description"]
    t1 = json.loads(lay.sidecar("t1_preproc", "sub-NC001").read_text())
    assert t1["SkullStripped"] is False and t1["SpatialReference"].endswith("_T1w.nii.gz")


def test_power_target_on_the_finished_run(tiny_run, tmp_path):
    """`snakemake power` on a finished run: the power table, curves and the report page, from the
    run's own GLM outputs and group settings, and a report with a "Study power" section."""
    import pandas as pd

    lay = Layout(tiny_run)
    extra = tmp_path / "power.yaml"
    extra.write_text(
        "power:\n  n_per_group: [4]\n  runs: 3\n  n_perm: 20\n  methods: [rft, perm]\n"
        "  modalities: {qsm: {rois: [Thalamus_R], effects: [0.05]}}\n"
    )
    args = ["--configfile", "config/config.yaml", str(extra)]
    args += ["--config", f"simulation={TINY}", f"output_dir={tiny_run}"]
    run_smk("power", *args)
    # the residual noise model (the default) reads the analysed subject maps: they are its inputs
    r = run_smk("-n", "--forcerun", "power", "power", *args)
    block = (r.stdout + r.stderr).split("rule power:")[1]
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    assert str(lay.group("design", "")) in inputs
    for pid in ("sub-ALS001", "sub-ALS002", "sub-NC001", "sub-NC002"):
        assert f"{lay.group_map('qsm', pid).parent}/" in inputs, pid
    table = pd.read_csv(lay.group("power_table"), sep="\t")
    assert set(table.method) == {"rft", "perm"} and (table.runs == 3).all()
    assert table.power.between(0, 1).all()
    page = lay.group("power_html").read_text()
    assert "Study power" in page and lay.group("power_png").name in page
    report = tmp_path / "report.html"
    run_smk("--report", str(report), "power", *args)
    assert "4. Study power" in report.read_text(errors="replace")


def _copy_rerun_args(out, extra):
    """Snakemake arguments of a rerun, with the config file ``extra`` on top, of a copy (``out``) of
    the tiny run; the report's figures (about 25 s here) are checked in test_report, not redone."""
    return [
        "--configfile",
        "config/config.yaml",
        str(extra),
        "--config",
        f"simulation={TINY}",
        f"output_dir={out}",
        "--omit-from",
        "report_figures",
    ]


def test_multichannel_normalization_after_the_t1_pass(tiny_run, tmp_path):
    """anat.normalization multichannel on a finished T1-only run: only the new registration steps, the
    template-space maps and the group stage run; the cohort QSM template holds every subject; the
    QSM maps now come from the multichannel warps."""
    import nibabel as nib
    import numpy as np

    out = tmp_path / "res"
    shutil.copytree(tiny_run, out, symlinks=True)
    extra = tmp_path / "multichannel.yaml"
    # QC relaxed: with 4 subjects the robust z of the deep-grey correlation has a meaningless MAD, and the
    # multichannel warps trade some T1w match (r about 0.88 -> 0.80-0.84 here) for deep-grey QSM match
    extra.write_text(
        "anat:\n  normalization: multichannel\nqc:\n  t1_corr_min: 0.6\n  qsm_dgm_robust_z_max: 100\n"
    )
    args = _copy_rerun_args(out, extra)
    # the copy has no Snakemake metadata, so the changed inputs/params of template_maps (which rerun it in the
    # original folder) are invisible here: ask for the rerun explicitly
    r = run_smk(*args, "--forcerun", "template_maps")
    log = r.stdout + r.stderr
    for rule in (
        "qsm_t1reg_template_space",
        "qsm_cohort_template",
        "register_multichannel",
        "template_maps",
    ):
        assert f"rule {rule}:" in log or f"localrule {rule}:" in log, rule
    for rule in ("anat_t1", "qsm", "register_gre", "simulate_subject"):
        assert f"rule {rule}:" not in log, rule
    lay, before_lay = Layout(out), Layout(tiny_run)
    tpl = json.loads(lay.cohort_qsm_template(".json").read_text())
    assert sorted(tpl["Subjects"]) == ["sub-ALS001", "sub-ALS002", "sub-NC001", "sub-NC002"]
    for pid in tpl["Subjects"]:
        qc = json.loads(lay.subject("normalization_qc", pid).read_text())
        assert qc["normalization"] == "multichannel"
        info = json.loads(lay.subject("mc_json", pid).read_text())
        assert info["QSMCorrelationWithTemplate"] > 0.3
        new = nib.load(lay.subject("template_chi", pid)).get_fdata()
        old = nib.load(before_lay.subject("template_chi", pid)).get_fdata()
        assert not np.allclose(new, old)
    check_group_outputs(lay)
    import pandas as pd

    before = pd.read_csv(before_lay.group("qc_table"), sep="\t").set_index("participant_id")
    after = pd.read_csv(lay.group("qc_table"), sep="\t").set_index("participant_id")
    # the QSM channel brings the deep grey nuclei closer to the cohort's
    assert after.qsm_dgm_corr.median() > before.qsm_dgm_corr.median()
    again = run_smk("-n", *args)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_deep_grey_refinement_off_on_a_finished_run(tiny_run, tmp_path):
    """The default run has the deep-grey refinement (its field and sidecar; the normalization QC says
    so). Turned off on the finished run (the maps before it), only the template-space maps and the
    group stage run again; the maps change inside the refinement's box and not outside it."""
    import nibabel as nib
    import numpy as np

    from qsmvbm.anat import refine

    before_lay = Layout(tiny_run)
    pid = "sub-ALS001"
    info = json.loads(before_lay.subject("deepgrey_json", pid).read_text())
    assert info["Parameters"]["radius_vox"] == 2 and 0 < info["max_displacement_mm"] < 10
    assert json.loads(before_lay.subject("normalization_qc", pid).read_text())[
        "deep_grey_refinement"
    ]
    out = tmp_path / "res"
    shutil.copytree(tiny_run, out, symlinks=True)
    extra = tmp_path / "refine.yaml"
    extra.write_text("anat:\n  deep_grey:\n    refine: {enabled: false}\n")
    args = _copy_rerun_args(out, extra)
    # the copy has no Snakemake metadata: ask for the rerun of the maps explicitly
    r = run_smk(*args, "--forcerun", "template_maps")
    log = r.stdout + r.stderr
    for rule in ("template_maps", "group_glm"):
        assert f"rule {rule}:" in log or f"localrule {rule}:" in log, rule
    for rule in ("refine_deep_grey", "anat_t1", "qsm", "register_gre", "simulate_subject"):
        assert f"rule {rule}:" not in log, rule
    lay = Layout(out)
    assert not json.loads(lay.subject("normalization_qc", pid).read_text())["deep_grey_refinement"]
    img = nib.load(lay.subject("gm_mod", pid))
    new = img.get_fdata()
    old = nib.load(before_lay.subject("gm_mod", pid)).get_fdata()
    box = refine.box_mask(new.shape, img.affine, refine.DEFAULT_BOX_MM)
    far = ~ndimage_dilate(box, 2)
    np.testing.assert_allclose(new[far], old[far], atol=1e-4)
    assert not np.allclose(new[box], old[box])
    check_group_outputs(lay)


def ndimage_dilate(mask, iterations):
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=iterations)


CLUSTER_COLUMNS = [
    "modality",
    "roi",
    "cluster_id",
    "peak_x",
    "peak_y",
    "peak_z",
    "peak_t",
    "p_unc",
    "p_fwe_rft",
    "p_fwe_perm",
    "peak_tfce",
    "p_fwe_tfce",
    "n_voxels",
    "volume_mm3",
    "peak_label",
    "significant",
]


def check_group_outputs(lay: Layout) -> None:
    """The group stage's file contract (names and columns)."""
    import nibabel as nib
    import pandas as pd

    for mod in ("qsm", "gm"):
        for key in ("tstat", "cluster_map"):
            assert nib.load(lay.group(key, mod)).shape == (99, 117, 95)
    clusters = pd.read_csv(lay.group("clusters"), sep="\t")
    assert list(clusters.columns[: len(CLUSTER_COLUMNS)]) == CLUSTER_COLUMNS
    values = pd.read_csv(lay.group("roi_values"), sep="\t")
    assert (
        list(values.columns[:2]) == ["participant_id", "group"] and values.columns[-1] == "tiv_ml"
    )
    corr = pd.read_csv(lay.group("correlations"), sep="\t")
    assert list(corr.columns[:9]) == [
        "x",
        "y",
        "group",
        "n",
        "r",
        "p",
        "alternative",
        "covariates",
        "method",
    ]
    demo = pd.read_csv(lay.group("demographics"), sep="\t")
    assert {"Number", "Age (years)", "Sex (male)"} <= set(demo.characteristic)
    assert lay.group("roi_stats").exists()
    # every group table describes its columns in a sidecar
    for key in ("clusters", "roi_stats", "correlations", "demographics", "design", "qc_table"):
        meta = json.loads(lay.group(key).with_suffix(".json").read_text())
        assert list(meta) == list(pd.read_csv(lay.group(key), sep="\t", nrows=0).columns), key
        assert all(m.get("Description") for m in meta.values()), key


def test_script_main_is_importable(tiny_cohort, tmp_path):
    """Scripts expose main(snakemake) so tests can call them directly."""
    spec = importlib.util.spec_from_file_location(
        "inputs_summary", ROOT / "workflow" / "scripts" / "inputs_summary.py"
    )
    inputs_summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inputs_summary)

    out = tmp_path / "summary.json"
    smk = SimpleNamespace(
        input=SimpleNamespace(t1w=str(tiny_cohort / "sub-NC002" / "anat" / "sub-NC002_T1w.nii.gz")),
        params=SimpleNamespace(bids_dir=str(tiny_cohort)),
        output=[str(out)],
        log=[str(tmp_path / "log.txt")],
        wildcards=SimpleNamespace(subject="sub-NC002"),
    )
    inputs_summary.main(smk)
    assert json.loads(out.read_text())["field_strength_t"] == 3.0


def test_missing_or_cut_t1_is_excluded_and_the_run_finishes(tiny_cohort, tmp_path):
    """No T1w, or a T1w whose field of view misses the brain: the subject is excluded with the
    reason logged in the QC table; everything else runs to the end."""
    import nibabel as nib
    import numpy as np
    import pandas as pd

    bids = tmp_path / "bids"
    shutil.copytree(tiny_cohort, bids, ignore=shutil.ignore_patterns("derivatives"))
    (bids / "sub-NC002" / "anat" / "sub-NC002_T1w.nii.gz").unlink()
    f = bids / "sub-ALS002" / "anat" / "sub-ALS002_T1w.nii.gz"
    img = nib.load(f)
    top = np.asarray(img.dataobj)[:, :, -12:]
    aff = img.affine.copy()
    aff[:3, 3] = img.affine[:3, :3] @ [0, 0, img.shape[2] - 12] + img.affine[:3, 3]
    nib.save(nib.Nifti1Image(top, aff), f)
    out = tmp_path / "res"
    # two subjects are left, too few for a group analysis: run everything up to the QC table
    lay = Layout(out)
    r = run_smk(str(lay.group("qc_table")), "--config", f"bids_dir={bids}", f"output_dir={out}")
    assert "EXCLUDED sub-NC002" in r.stdout + r.stderr
    qc = pd.read_csv(lay.group("qc_table"), sep="\t").set_index("participant_id")
    assert (
        not qc.loc["sub-NC002", "included"]
        and "no T1w image for sub-NC002" in qc.loc["sub-NC002", "reason"]
    )
    assert (
        not qc.loc["sub-ALS002", "included"]
        and "T1w check failed" in qc.loc["sub-ALS002", "reason"]
    )
    assert qc.loc["sub-ALS001", "dice_brain"] > 0.9
    assert not lay.subject("volumes", "sub-ALS002").exists()


def _bids_copy(tiny_cohort, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(tiny_cohort, bids, ignore=shutil.ignore_patterns("derivatives"))
    return bids


def _dry_run_with(tmp_path, bids, extra: str, check=True, targets=()):
    """A dry run on ``bids`` (output ``tmp_path/out``) with the default config and ``extra`` YAML on
    top, for ``targets`` (default: the whole workflow)."""
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(extra)
    return run_smk(
        "-n",
        "--configfile",
        "config/config.yaml",
        str(cfg),
        "--config",
        f"bids_dir={bids}",
        f"output_dir={tmp_path / 'out'}",
        *(["--", *targets] if targets else []),
        check=check,
    )


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "group:\n  rois: [Precentral_L, Thalamus_X]\n",
            "group.rois: unknown AAL3 region 'Thalamus_X'",
        ),
        (
            "group:\n  clinical_scores: [alsfrs_r, fvc_percent]\n",
            "group.clinical_scores: 'fvc_percent' is not a participants.tsv column",
        ),
        (
            "group:\n  modalities:\n    gm:\n      covariates: [tiv, education]\n",
            "group.modalities.gm.covariates: covariate 'education' needs a participants.tsv column 'education'",
        ),
        (
            "group:\n  correlations:\n    - {x: qsm, y: handedness}\n",
            "group.correlations[0].y: 'handedness' is neither one of",
        ),
        (
            "group:\n  combine: {Motor: [Precentral_L, Postcentral_L]}\n",
            "group.combine.Motor: ['Postcentral_L'] not in group.rois",
        ),
        (
            "anat:\n  deep_grey: {regions: [Thalamus, Putamn_L]}\n",
            "anat.deep_grey.regions: unknown AAL3 region 'Putamn_L'",
        ),
        (
            "power:\n  modalities: {gm: {rois: [Thalamus_X], effects: [0.02]}}\n",
            "power.modalities.gm.rois: unknown AAL3 region 'Thalamus_X'",
        ),
    ],
)
def test_group_settings_are_checked_before_any_job(tiny_cohort, tmp_path, extra, message):
    """A group-stage setting that cannot work on this dataset stops the run at once, naming the key."""
    bids = _bids_copy(tiny_cohort, tmp_path)
    before = _tree(bids)
    r = _dry_run_with(tmp_path, bids, extra, check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "nothing was computed" in out and message in out, out[-3000:]
    assert _tree(bids) == before and not (tmp_path / "out").exists()


def test_tfce_maps_are_made_only_when_tfce_is_on(tiny_cohort, tmp_path):
    """The TFCE maps are outputs of group_glm only with TFCE on (a dry run asked for one)."""
    from qsmvbm.layout import GROUP_FILES

    bids = _bids_copy(tiny_cohort, tmp_path)
    target = str(tmp_path / "out" / "group" / GROUP_FILES["tfce_pfwe"].format(modality="qsm"))

    def plan(extra):
        return _dry_run_with(tmp_path, bids, extra, check=False, targets=[target])

    off = plan("group: {n_perm: 100}\n")
    assert off.returncode != 0 and "MissingRuleException" in off.stdout + off.stderr
    on = plan("group: {significance: tfce, n_perm: 100}\n")
    assert on.returncode == 0, (on.stdout + on.stderr)[-2000:]


def test_output_inside_the_bids_folder_is_refused(tiny_cohort, tmp_path):
    bids = _bids_copy(tiny_cohort, tmp_path)
    before = _tree(bids)
    for out in (bids, bids / "derivatives" / "qsmvbm"):
        r = run_smk("-n", "--config", f"bids_dir={bids}", f"output_dir={out}", check=False)
        assert r.returncode != 0 and "is inside the BIDS dataset" in r.stdout + r.stderr
    assert _tree(bids) == before


def test_cohort_notes_for_exclude_typos_and_unlisted_folders(tiny_cohort, tmp_path):
    bids = _bids_copy(tiny_cohort, tmp_path)
    shutil.copytree(bids / "sub-NC002", bids / "sub-NC009")
    r = _dry_run_with(tmp_path, bids, "participants:\n  exclude: [sub-NC01]\n")
    out = r.stdout + r.stderr
    assert "participants.exclude names 'sub-NC01', which is not in participants.tsv" in out
    assert "sub-NC009: subject folder not listed in participants.tsv: not processed" in out


def test_interrupted_run_resumes_to_identical_maps(tiny_cohort, tiny_run, tmp_path):
    """Kill the whole run (SIGKILL to its process group, as a lost node) while a subject's QSM job runs,
    resume with --rerun-incomplete: the map equals the uninterrupted run's, voxel for voxel."""
    import os
    import signal
    import time

    import nibabel as nib
    import numpy as np

    bids = _bids_copy(tiny_cohort, tmp_path)
    out = tmp_path / "res"
    pid = "sub-ALS001"
    target = Layout(out).subject("chi", pid)
    args = [str(target), "--config", f"bids_dir={bids}", f"output_dir={out}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    qsm_log = Layout(out).log("qsm", pid)
    deadline = time.time() + 600
    while not qsm_log.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    run_smk("--unlock", *args, lock=True)  # what a user does after a killed run
    r = run_smk(*args, "--rerun-incomplete")
    assert "rule qsm:" in r.stdout + r.stderr
    ref = nib.load(Layout(tiny_run).subject("chi", pid))
    new = nib.load(target)
    assert np.array_equal(np.asarray(new.dataobj), np.asarray(ref.dataobj))
    assert np.array_equal(new.affine, ref.affine)
