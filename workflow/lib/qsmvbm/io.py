"""File I/O at the edges: NIfTI, JSON and TSV writing that leaves no partial files.

Every writer goes to a temporary file in the destination folder and renames it
into place, so an interrupted or failed step never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched. The file gets the mode a
    plain ``open`` would give (0666 less the umask), so colleagues in the group can read the results.
    ``suffix`` keeps the file ending (e.g. ``.nii.gz``) for writers that use it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(
            tmp, 0o666 & ~_umask()
        )  # mkstemp makes 0600; outputs follow the umask like any file
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def nifti_suffix(path: str | os.PathLike) -> str:
    name = str(path)
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def save_nifti(
    data: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    dtype: Any = np.float32,
    xyzt_units: tuple[str, str] = ("mm", "sec"),
) -> Path:
    """Write ``data`` (cast to ``dtype``) with ``affine`` to ``path`` atomically.

    The affine is stored as both qform and sform (code 1, scanner/aligned).
    """
    arr = np.asarray(data)
    if np.issubdtype(np.dtype(dtype), np.integer) and not np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(dtype)
        arr = np.clip(np.rint(arr), info.min, info.max)
    img = nib.Nifti1Image(arr.astype(dtype, copy=False), np.asarray(affine, dtype=float))
    img.header.set_xyzt_units(*xyzt_units)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path, suffix=nifti_suffix(path)) as tmp:
        nib.save(img, tmp)
    return Path(path)


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy scalars and arrays allowed)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot serialise {type(o).__name__}")

    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=default) + "\n")
    return Path(path)


def save_tsv(df, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as a BIDS TSV (tab separated, ``n/a`` for missing)."""
    with atomic_path(path, suffix=".tsv") as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    return Path(path)


def read_tsv(path: str | os.PathLike, **kwargs):
    """Read a BIDS TSV written by :func:`save_tsv` (or a BIDS dataset's): ``n/a`` is missing,
    every other cell is kept as written (empty strings stay ``""`` unless ``keep_default_na=True``).
    Extra keyword arguments go to :func:`pandas.read_csv`."""
    import pandas as pd

    kwargs.setdefault("keep_default_na", False)
    return pd.read_csv(path, sep="\t", na_values="n/a", **kwargs)


def load_json(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)
