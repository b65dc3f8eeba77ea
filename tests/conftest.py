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
