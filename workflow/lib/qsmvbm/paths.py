"""Where the repository's data files live.

The package is installed in editable mode from the workflow repository
(``pip install -e .``), and reads its schemas (``workflow/schemas``) and
resource tables (``resources/``) from there, so that the workflow and the
library share one copy of each.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
RESOURCE_DIR = REPO_ROOT / "resources"


def schema_path(name: str) -> Path:
    """Path of a JSON schema (YAML) in ``workflow/schemas``; raises if absent."""
    p = SCHEMA_DIR / name
    if not p.is_file():
        raise FileNotFoundError(
            f"schema {p} not found: qsmvbm must be installed from the workflow "
            "repository in editable mode (pip install -e .)"
        )
    return p


def resource_path(name: str) -> Path:
    """Path of a file in ``resources/``; raises if absent."""
    p = RESOURCE_DIR / name
    if not p.is_file():
        raise FileNotFoundError(f"resource file {p} not found")
    return p
