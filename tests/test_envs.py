"""Dependencies: version ranges in pyproject.toml, the exact tested set in requirements.lock (what
`make` installs), and envs/qsmvbm.yaml (for --sdm conda) pinning what the lock pins."""

import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock() -> dict:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"requirements.lock: {line!r} is not pinned with =="
        key = canonicalize_name(name)
        assert key not in pins, f"requirements.lock: {name} twice"
        pins[key] = version.strip()
    return pins


def _requirements():
    project = _project()
    return [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]
    ]


def test_every_dependency_has_a_range_that_admits_the_locked_version():
    lock = _lock()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is not in requirements.lock"
        assert str(req.specifier), f"{req.name}: give a version range in pyproject.toml"
        assert any(s.operator == "<" for s in req.specifier), f"{req.name}: no upper bound"
        assert req.specifier.contains(lock[name]), (
            f"{req.name} {lock[name]} outside {req.specifier}"
        )


def test_lock_holds_what_the_installed_packages_need():
    """Every requirement of every locked package (that applies here) is locked too."""
    from importlib.metadata import PackageNotFoundError, distribution

    lock = _lock()
    for name in lock:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            assert canonicalize_name(req.name) in lock, f"{name} needs {req.name}, not in the lock"


def test_conda_env_pins_what_the_lock_pins():
    env = yaml.safe_load((ROOT / "envs" / "qsmvbm.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    lock = _lock()
    pins = {}
    for r in pip:
        name, _, version = r.partition("==")
        assert version, f"envs/qsmvbm.yaml: {r!r} is not pinned with =="
        pins[canonicalize_name(name)] = version.strip()
    direct = {canonicalize_name(Requirement(r).name) for r in _project()["dependencies"]}
    assert set(pins) == direct
    assert all(pins[n] == lock[n] for n in pins), {n: (pins[n], lock[n]) for n in pins}
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert py == "python=3.11"


def test_conda_env_installs_the_package():
    """--sdm conda: the scripts import qsmvbm as an installed package, so the environment's
    post-deploy script (run by Snakemake after the build) installs it from the checkout."""
    script = ROOT / "envs" / "qsmvbm.post-deploy.sh"
    text = script.read_text()
    assert script.stat().st_mode & 0o111, "post-deploy script not executable"
    assert "pip install --no-deps --no-build-isolation --editable" in text
    env = yaml.safe_load((ROOT / "envs" / "qsmvbm.yaml").read_text())
    assert any(isinstance(d, str) and d.startswith("setuptools") for d in env["dependencies"])
