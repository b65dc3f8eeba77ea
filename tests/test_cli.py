"""The `qsmvbm` command (BIDS App): help, configuration, and runs from another folder."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qsmvbm import cli
from qsmvbm.config import load_yaml
from qsmvbm.layout import Layout
from qsmvbm.paths import schema_path

from .conftest import ROOT, run_qsmvbm


def test_help_lists_every_setting_with_its_default(tmp_path):
    r = run_qsmvbm(["--help"], tmp_path)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "BIDS_DIR OUTPUT_DIR {participant,group}" in text
    for flag in ("--participant-label", "--cores", "--profile", "--dry-run", "--report"):
        assert flag in text
    options = cli.schema_options(load_yaml(schema_path("config.schema.yaml")))
    assert len(options) > 80
    for dotted, _node in options:
        if dotted in cli.RESERVED:
            continue
        assert f"--{dotted} VALUE" in text, dotted
    # a description, the allowed values and the default are shown
    assert "--qsm.background VALUE" in text and "one of vsharp, pdf" in text
    assert "default: lbv" in text


def test_config_is_merged_validated_and_printed(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    cfg = tmp_path / "my.yaml"
    cfg.write_text("group: {n_perm: 100}\nqsm: {background: pdf}\n")
    r = run_qsmvbm(
        [
            str(bids),
            str(tmp_path / "out"),
            "group",
            "--config-file",
            str(cfg),
            "--qsm.background",
            "vsharp",
            "--participant-label",
            "01",
            "sub-02",
            "--group.rois",
            "[Thalamus_L]",
            "--print-config",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load(r.stdout)
    assert config["bids_dir"] == str(bids.resolve())
    assert config["output_dir"] == str((tmp_path / "out").resolve())
    assert config["group"]["n_perm"] == 100  # from the file
    assert config["qsm"]["background"] == "vsharp"  # the command line wins
    assert config["group"]["rois"] == ["Thalamus_L"]
    assert config["participants"]["participant_label"] == ["01", "sub-02"]
    assert config["anat"]["template_resolution"] == 2  # defaults filled
    assert not (tmp_path / "out").exists()  # nothing written by --print-config


@pytest.mark.parametrize(
    "args, message",
    [
        (["--qsm.background", "lbvx"], "qsm.background"),
        (["--group.n_perm", "many"], "group.n_perm"),
        (["--config-file", "missing.yaml"], "missing.yaml: config file not found"),
    ],
)
def test_bad_options_stop_with_the_key_named(tmp_path, args, message):
    (tmp_path / "bids").mkdir()
    r = run_qsmvbm([str(tmp_path / "bids"), str(tmp_path / "out"), "group", *args], tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_missing_bids_folder_is_named(tmp_path):
    r = run_qsmvbm([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"], tmp_path)
    assert r.returncode == 2 and "nope: the BIDS folder does not exist" in r.stderr


def test_snakemake_call():
    args = cli.build_parser().parse_args(["/b", "/o", "participant", "--cores", "3", "-n"])
    cmd = cli.snakemake_command(args, Path("/o/code/c.yaml"), ["--rerun-triggers", "mtime"])
    assert cmd[:3] == [sys.executable, "-m", "snakemake"]
    joined = " ".join(cmd)
    assert f"--snakefile {cli.SNAKEFILE}" in joined and "--directory /o" in joined
    assert "--configfile /o/code/c.yaml" in joined and "--cores 3" in joined
    assert f"--profile {cli.DEFAULT_PROFILE}" in joined and "--dry-run" in joined
    assert cmd[-3:] == ["--rerun-triggers", "mtime", "participant"]
    # the workflow's own profiles are found from any folder
    assert cli.resolve_profile("profiles/slurm") == cli.REPO_ROOT / "profiles" / "slurm"


@pytest.mark.slow
def test_participant_subset_runs_from_another_folder(tiny_cohort, tmp_path):
    """Two of four participants at the participant level, started from an empty folder: their
    maps are made, the others' are not, nothing lands in the working folder; a dry run of the
    group level then lists the group stage."""
    bids = tmp_path / "bids"
    shutil.copytree(tiny_cohort, bids, ignore=shutil.ignore_patterns("derivatives"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "out"
    checkout_before = _checkout_state()
    r = run_qsmvbm(
        [
            str(bids),
            str(out),
            "participant",
            "--participant-label",
            "ALS001",
            "sub-NC002",
            "--cores",
            "2",
        ],
        cwd,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lay = Layout(out)
    for pid in ("sub-ALS001", "sub-NC002"):
        for key in ("chi", "template_chi", "gm_mod_smooth", "normalization_qc"):
            assert lay.subject(key, pid).exists(), (pid, key)
        # QSM is not smoothed by default (anat.qsm_fwhm_mm 0, as the study): no smoothed copy
        assert not lay.subject("chi_smooth", pid).exists()
    for pid in ("sub-ALS002", "sub-NC001"):
        assert not (lay.derivatives / pid).exists()
    assert not lay.group_dir.exists()
    assert list(cwd.iterdir()) == []
    assert (out / ".snakemake").is_dir() and lay.run_config.is_file()
    dry = run_qsmvbm([str(bids), str(out), "group", "--dry-run", "--cores", "2"], cwd)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "input_check" in dry.stdout + dry.stderr
    assert list(cwd.iterdir()) == []
    # and nothing in the checkout either (issue 21): no new or changed file, tracked or not
    assert _checkout_state() == checkout_before


def _checkout_state():
    """The checkout's top-level entries and git's view of its files (changes and untracked)."""
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
    ).stdout
    return sorted(p.name for p in ROOT.iterdir()), status


def test_participant_labels_select_in_order_and_name_the_unknown():
    from qsmvbm.preflight import select_participants

    ids = ["sub-ALS001", "sub-ALS002", "sub-NC001"]
    assert select_participants(ids, []) == (ids, [])
    assert select_participants(ids, ["NC001", "sub-ALS001"]) == (["sub-ALS001", "sub-NC001"], [])
    assert select_participants(ids, ["ALS009"]) == ([], ["sub-ALS009"])


def test_every_setting_is_described_and_the_options_page_is_current():
    from .conftest import ROOT

    options = cli.schema_options(load_yaml(schema_path("config.schema.yaml")))
    assert [d for d, node in options if not node.get("description")] == []
    page = (ROOT / "docs" / "options.md").read_text()
    assert page == cli.options_markdown(), "docs/options.md is stale: run `make docs`"


def test_exit_status_tells_of_excluded_subjects(tmp_path, monkeypatch):
    """A run that finished but left subjects out exits with 3 (0 with --exclusions-ok) and lists
    them last: at the participant level from the input checks, at the group level from the QC table."""
    import pandas as pd

    from qsmvbm import cli
    from qsmvbm.io import save_json

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-A1\tALS\nsub-N1\tNC\n")
    lay = Layout(tmp_path / "out")
    save_json({"ok": True, "reason": "ok"}, lay.subject("input_check", "sub-A1"))
    save_json(
        {"ok": False, "reason": "GRE input: x.nii.gz: bad"}, lay.subject("input_check", "sub-N1")
    )
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: 0)
    args = [str(bids), str(tmp_path / "out"), "participant"]
    assert cli.main(args) == cli.EXIT_EXCLUDED
    assert cli.main([*args, "--exclusions-ok"]) == 0
    assert cli.main([*args, "--participant-label", "A1"]) == 0
    assert cli.main([*args, "--dry-run"]) == 0
    line = cli.exclusions(lay, "participant")
    assert line == "qsmvbm: excluded at the input check: sub-N1 (GRE input: x.nii.gz: bad)"
    lay.group("qc_table").parent.mkdir(parents=True)
    pd.DataFrame(
        {"participant_id": ["sub-A1", "sub-N1"], "included": [True, True], "reason": ["ok", "ok"]}
    ).to_csv(lay.group("qc_table"), sep="\t", index=False)
    assert cli.main([str(bids), str(tmp_path / "out"), "group"]) == 0
    assert cli.exclusions(lay, "group") is None


def test_participant_level_names_subjects_that_fail_the_per_subject_qc(tmp_path, monkeypatch):
    """The first real field map's shredded QSM mask (Dice 0.77 with the T1w brain) came out of the
    participant level without a word: the checks a subject can be held to alone now end the run with
    the subject named and exit status 3, as at the group level, where it will be excluded."""
    from qsmvbm import cli
    from qsmvbm.io import save_json

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-A1\tALS\nsub-N1\tNC\n")
    lay = Layout(tmp_path / "out")
    for pid, dice_t1 in (("sub-A1", 0.985), ("sub-N1", 0.769)):
        save_json({"ok": True, "reason": "ok"}, lay.subject("input_check", pid))
        save_json(
            {"dice_brain": 0.985, "t1_corr": 0.43, "gm_corr": 0.79},
            lay.subject("normalization_qc", pid),
        )
        plaus = {"dice_t1": dice_t1, "outside_t1_fraction": 0.0, "mask_tiv_ratio": 0.58}
        save_json({"MaskPlausibility": plaus}, lay.subject("chi_json", pid))
        save_json({"TIV_ml": 1743.0, "GM_ml": 860.0}, lay.subject("volumes", pid))
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: 0)
    args = [str(bids), str(tmp_path / "out"), "participant"]
    assert cli.main(args) == cli.EXIT_EXCLUDED
    thresholds = cli.run_config(cli.build_parser().parse_args(args))["qc"]
    line = cli.exclusions(lay, "participant", None, thresholds)
    assert line == (
        "qsmvbm: failing the per-subject QC (the group level will exclude them): sub-N1 "
        "(QSM mask Dice with the T1w brain 0.769 < 0.8)"
    )
    assert cli.main([*args, "--qc.include", "[sub-N1]"]) == 0
