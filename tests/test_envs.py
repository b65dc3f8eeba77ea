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


def test_conda_env_installs_the_package():
    """--sdm conda: the scripts import qsmvbm as an installed package, so the environment's
    post-deploy script (run by Snakemake after the build) installs it from the checkout."""
    script = ROOT / "envs" / "qsmvbm.post-deploy.sh"
    text = script.read_text()
    assert script.stat().st_mode & 0o111, "post-deploy script not executable"
    assert "pip install --no-deps --no-build-isolation --editable" in text
    env = yaml.safe_load((ROOT / "envs" / "qsmvbm.yaml").read_text())
    assert any(isinstance(d, str) and d.startswith("setuptools") for d in env["dependencies"])
