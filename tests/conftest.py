"""Shared fixtures: a tiny simulated cohort, made once per test session."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_cfg():
    from qsmvbm.simulate.settings import load_simulation_config

    return load_simulation_config(TINY)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory, tiny_cfg):
    """Path of the simulated tiny BIDS cohort (4 subjects)."""
    from qsmvbm.simulate.cohort_io import simulate_cohort

    out = tmp_path_factory.mktemp("tiny_bids")
    simulate_cohort(tiny_cfg, out, jobs=2)
    return out


@pytest.fixture(scope="session")
def realistic_heads(tmp_path_factory):
    """The tiny cohort's design (one patient, one control) with the realistic head: scalp and orbital
    fat, fatty marrow, eyes."""
    import yaml

    from qsmvbm.simulate.cohort_io import simulate_cohort
    from qsmvbm.simulate.settings import load_simulation_config

    cfg = yaml.safe_load(TINY.read_text())
    cfg["anatomy"]["head"] = "realistic"
    cfg["effects"] = []
    for g in cfg["groups"]:
        g["n"] = 1
    out = tmp_path_factory.mktemp("realistic_head")
    simulate_cohort(load_simulation_config(cfg), out, jobs=2)
    return out


def run_qsmvbm(args, cwd=None):
    """The ``qsmvbm`` command (this venv's console script) in a subprocess, its output captured."""
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "qsmvbm"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True)


def run_snakemake(*args, check=True, lock=False):
    """Run the workflow in a subprocess (2 cores); raise with its output tail on failure.

    ``--nolock``: the tests' runs share the checkout's ``.snakemake`` and each writes its own output
    folder, so the lock guards nothing here; with two xdist workers, one run removing the empty locks
    folder while another created its lock failed the other (FileNotFoundError in Snakemake's
    ``_delete_locks``). ``lock=True``: the run takes the lock, as a user's run does."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *([] if lock else ["--nolock"]), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
        )
    return r


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Output folder of a full workflow run (simulation to report inputs) on the tiny cohort."""
    out = tmp_path_factory.mktemp("tiny_run") / "res"
    run_snakemake("--config", f"simulation={TINY}", f"output_dir={out}")
    return out


SLOW_FIXTURES = {"tiny_run", "bids_run", "anat_run", "local_slurm"}
SLOW_TESTS = {  # the workflow on a real session, on a dataset with sessions
    "test_real_session_through_the_participant_level",
    "test_sessions_dataset_through_the_participant_level",
    "test_realistic_head_fails_the_otsu_mask_not_the_default_chain",
    "test_pooled_null_matches_independent_null_studies",  # 300 null studies
}  # the workflow on a real session
SLOW_MODULES = {"test_workflow", "test_scale"}  # every test there runs Snakemake


def pytest_sessionstart(session):
    """The checkout's ``.snakemake`` (git-ignored) exists before any test: the workflow tests run
    Snakemake in the checkout, and under xdist one of them may do so for the first time while
    another test compares the checkout's top-level entries before and after a run elsewhere."""
    (ROOT / ".snakemake").mkdir(exist_ok=True)


def pytest_collection_modifyitems(config, items):
    """Mark as ``slow`` every test that runs the workflow (directly or through a fixture): ``make
    test-fast`` leaves them out, ``make test`` runs everything."""
    for item in items:
        if (
            SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
            or item.module.__name__.split(".")[-1] in SLOW_MODULES
            or item.originalname in SLOW_TESTS
        ):
            item.add_marker(pytest.mark.slow)
