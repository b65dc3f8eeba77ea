"""File writing at the edges: atomic, and readable by the group like any file the user makes."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from qsmvbm.io import atomic_path, save_json, save_nifti, save_tsv


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        files = [
            save_nifti(np.zeros((2, 2, 2)), np.eye(4), tmp_path / "a.nii.gz"),
            save_json({"a": 1}, tmp_path / "a.json"),
            save_tsv(pd.DataFrame({"a": [1]}), tmp_path / "a.tsv"),
        ]
    finally:
        os.umask(old)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == mode, f


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
