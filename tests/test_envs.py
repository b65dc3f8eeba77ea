"""envs/qsmvbm.yaml (for --sdm conda) pins exactly what pyproject.toml pins."""

import tomllib

import yaml

from .conftest import ROOT


def _pins(reqs):
    out = {}
    for r in reqs:
        name, _, version = r.partition("==")
        assert version, f"{r!r} is not pinned with =="
        out[name.strip().lower()] = version.strip()
    return out


def test_conda_env_in_step_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "envs" / "qsmvbm.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip) == _pins(project["dependencies"])
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert py == "python=3.11"


def test_test_extras_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    _pins(project["optional-dependencies"]["test"])
