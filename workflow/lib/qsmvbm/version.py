"""The version of this code as provenance records it: the package version and, in a git checkout,
the commit (with ``.dirty`` when the working tree differs from it)."""

from __future__ import annotations

import subprocess
from functools import lru_cache

from . import __version__
from .paths import REPO_ROOT


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Short commit hash of the checkout this package runs from (``+.dirty`` with local changes),
    or None outside a git checkout."""
    if not (REPO_ROOT / ".git").exists():
        return None
    try:

        def git(*args):
            return subprocess.run(
                ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=20
            )

        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + (".dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def full_version() -> str:
    """``<package version>+g<commit>`` in a git checkout, else the package version."""
    commit = git_commit()
    return f"{__version__}+g{commit}" if commit else __version__
