"""Reading BIDS inputs: participants.tsv, multi-echo GRE and T1w, with clear errors.

Every error is a :class:`BidsInputError` whose message names the file and the
problem (missing echo, mismatched shapes or affines, missing or non-increasing
EchoTime, NaNs, unsafe participant ids, unknown group labels).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .dipole import b0_direction_from_affine

SUBJECT_ID = re.compile(r"^sub-[A-Za-z0-9]+$")
SUBJECT_IN_NAME = re.compile(r"(sub-[A-Za-z0-9]+)_")
ECHO_FILE = re.compile(r"_echo-(\d+)_part-(mag|phase)_MEGRE\.nii(\.gz)?$")
#: phase encodings: name -> (min, max) of the stored values
PHASE_RANGES = {"scanner_0_4095": (0, 4095), "scanner_pm4096": (-4096, 4095)}


class BidsInputError(ValueError):
    """Invalid or incomplete input data; the message names the file and the problem."""


def check_subject_id(pid: str, source: str = "participants.tsv") -> None:
    if not isinstance(pid, str) or not SUBJECT_ID.match(pid):
        raise BidsInputError(
            f"{source}: participant_id {pid!r} is not a safe BIDS id (expected 'sub-' followed by letters and digits)"
        )


def read_participants(bids_dir: str | Path, group_column: str = "group", groups=("ALS", "NC")) -> pd.DataFrame:
    """Read and check ``participants.tsv``.

    Checks: the file exists; ``participant_id`` and ``group_column`` columns;
    ids safe and unique; every group value one of ``groups``. ``n/a`` -> NaN.
    """
    if not Path(bids_dir).is_dir():
        raise BidsInputError(f"{bids_dir}: the BIDS folder does not exist")
    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        raise BidsInputError(f"{path}: participants.tsv is missing from the BIDS dataset")
    df = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype={"participant_id": str})
    for col in ("participant_id", group_column):
        if col not in df.columns:
            raise BidsInputError(f"{path}: no column {col!r} (columns: {', '.join(df.columns)})")
    for pid in df["participant_id"]:
        check_subject_id(pid, str(path))
    dup = df["participant_id"][df["participant_id"].duplicated()].tolist()
    if dup:
        raise BidsInputError(f"{path}: duplicated participant_id {dup}")
    bad = df[~df[group_column].isin(groups)]
    if len(bad):
        rows = ", ".join(f"{p}={g!r}" for p, g in zip(bad["participant_id"], bad[group_column]))
        raise BidsInputError(f"{path}: column {group_column!r} has values outside {list(groups)}: {rows}")
    return df


def sidecar(nifti: Path) -> dict:
    """The JSON sidecar of a NIfTI file ({} if absent)."""
    name = str(nifti)
    js = Path(re.sub(r"\.nii(\.gz)?$", ".json", name))
    if not js.is_file():
        return {}
    try:
        return json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise BidsInputError(f"{js}: not valid JSON ({e})") from None


def megre_files(bids_dir: str | Path, pid: str) -> list[dict]:
    """Echo files of a subject's multi-echo GRE: ``[{echo, mag, phase}, ...]`` by echo number.

    Raises if the folder or any echo is missing, or mag and phase echoes differ.
    """
    check_subject_id(pid, "subject")
    anat = Path(bids_dir) / pid / "anat"
    if not anat.is_dir():
        raise BidsInputError(f"{anat}: subject folder missing")
    found: dict[int, dict] = {}
    for f in sorted(anat.iterdir()):
        m = ECHO_FILE.search(f.name)
        if m and f.name.startswith(pid + "_"):
            found.setdefault(int(m.group(1)), {})[m.group(2)] = f
    if not found:
        raise BidsInputError(f"{anat}: no *_echo-N_part-mag/phase_MEGRE.nii[.gz] files")
    echoes = sorted(found)
    missing = [n for n in range(1, max(echoes) + 1) if n not in found]
    if missing:
        raise BidsInputError(f"{anat}: missing echo(es) {missing} of {pid}'s MEGRE series (found {echoes})")
    out = []
    for n in echoes:
        parts = found[n]
        for part in ("mag", "phase"):
            if part not in parts:
                other = parts.get("mag") or parts.get("phase")
                raise BidsInputError(f"{other}: echo {n} has no part-{part} file")
        out.append({"echo": n, "mag": parts["mag"], "phase": parts["phase"]})
    return out


def t1w_file(bids_dir: str | Path, pid: str) -> Path:
    """The subject's T1w image (the first run if there are several)."""
    anat = Path(bids_dir) / pid / "anat"
    cands = sorted(anat.glob(f"{pid}*_T1w.nii.gz")) + sorted(anat.glob(f"{pid}*_T1w.nii"))
    if not cands:
        raise BidsInputError(f"{anat}: no T1w image for {pid}")
    return cands[0]


def detect_phase_units(raw: np.ndarray, path: Path | str = "phase") -> str:
    """Guess how a phase image is stored: ``radians`` or a scanner integer range.

    Radians: all values within [-pi, 2 pi] (a few 1e-3 tolerance). Integers
    within 0..4095 -> ``scanner_0_4095``; within -4096..4095 -> ``scanner_pm4096``.
    """
    finite = raw[np.isfinite(raw)]
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= -np.pi - 1e-3 and hi <= 2 * np.pi + 1e-3:
        return "radians"
    if np.allclose(finite[:: max(1, finite.size // 100000)], np.round(finite[:: max(1, finite.size // 100000)])):
        for name, (a, b) in PHASE_RANGES.items():
            if lo >= a and hi <= b:
                return name
    raise BidsInputError(
        f"{path}: phase values span [{lo:g}, {hi:g}]: neither radians nor a scanner range "
        "(0..4095 or -4096..4095); set qsm.phase_units in the config"
    )


def phase_to_radians(raw: np.ndarray, units: str) -> np.ndarray:
    """Stored phase -> radians in [-pi, pi). ``units`` as from :func:`detect_phase_units`."""
    raw = raw.astype(np.float32, copy=False)
    if units == "radians":
        rad = raw
    elif units == "scanner_0_4095":
        rad = raw / np.float32(4096.0) * np.float32(2 * np.pi) - np.float32(np.pi)
    elif units == "scanner_pm4096":
        rad = raw / np.float32(4096.0) * np.float32(np.pi)
    else:
        raise ValueError(f"unknown phase units {units!r}")
    return (np.mod(rad + np.float32(np.pi), np.float32(2 * np.pi)) - np.float32(np.pi)).astype(np.float32)


@dataclass
class MultiEchoGRE:
    """A subject's multi-echo GRE. Arrays (X, Y, Z, E) float32; phase in radians [-pi, pi)."""

    mag: np.ndarray
    phase: np.ndarray
    affine: np.ndarray
    echo_times_s: np.ndarray
    field_strength_t: float
    phase_units: str
    files: list = field(default_factory=list)

    @property
    def voxel_size(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def b0_dir(self) -> np.ndarray:
        return b0_direction_from_affine(self.affine)


def _load(path: Path) -> nib.Nifti1Image:
    try:
        return nib.load(path)
    except Exception as e:  # nibabel raises several types
        raise BidsInputError(f"{path}: cannot read NIfTI ({e})") from None


def megre_metadata(bids_dir: str | Path, pid: str) -> dict:
    """Check a subject's MEGRE series from headers and sidecars only (no voxel data).

    Returns echo times (s), field strength (T), shape, voxel size, affine, files.
    """
    files = megre_files(bids_dir, pid)
    tes = []
    field = None
    shape = affine = None
    for f in files:
        for part in ("mag", "phase"):
            img = _load(f[part])
            if len(img.shape) != 3:
                raise BidsInputError(f"{f[part]}: expected a 3D image per echo, got shape {img.shape}")
            if shape is None:
                shape, affine, ref = img.shape, img.affine, f[part]
            elif img.shape != shape:
                raise BidsInputError(f"{f[part]}: shape {img.shape} differs from {ref.name} {shape}")
            elif not np.allclose(img.affine, affine, atol=1e-3):
                raise BidsInputError(f"{f[part]}: affine differs from {ref.name}")
        meta = sidecar(f["phase"]) or sidecar(f["mag"])
        te = meta.get("EchoTime")
        if te is None:
            raise BidsInputError(f"{f['phase']}: no EchoTime in its JSON sidecar")
        te = float(te)
        if not 0 < te < 1:
            raise BidsInputError(f"{f['phase']}: EchoTime {te} is not in seconds (expected 0 < TE < 1 s)")
        tes.append(te)
        b0 = meta.get("MagneticFieldStrength")
        if b0 is not None:
            field = float(b0)
    if np.any(np.diff(tes) <= 0):
        raise BidsInputError(
            f"{files[0]['phase'].parent}: echo times {tes} (s) do not increase with the echo number"
        )
    if field is None or field <= 0:
        raise BidsInputError(f"{files[0]['phase']}: no MagneticFieldStrength (T) in the sidecars")
    vs = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    return {
        "echo_times_s": tes,
        "field_strength_t": field,
        "shape": list(shape),
        "voxel_size_mm": vs.tolist(),
        "affine": np.asarray(affine).tolist(),
        "b0_direction_voxel": b0_direction_from_affine(affine).tolist(),
        "files": [{"echo": f["echo"], "mag": str(f["mag"]), "phase": str(f["phase"])} for f in files],
    }


def load_megre(bids_dir: str | Path, pid: str, phase_units: str = "auto") -> MultiEchoGRE:
    """Load and check a subject's multi-echo GRE (see :func:`megre_metadata`), phase in radians."""
    meta = megre_metadata(bids_dir, pid)
    files = meta["files"]
    shape = tuple(meta["shape"]) + (len(files),)
    mag = np.empty(shape, np.float32)
    phase = np.empty(shape, np.float32)
    detected = None
    for i, f in enumerate(files):
        m = np.asarray(_load(Path(f["mag"])).dataobj, dtype=np.float32)
        p = np.asarray(_load(Path(f["phase"])).dataobj, dtype=np.float32)
        for arr, path in ((m, f["mag"]), (p, f["phase"])):
            n_bad = int((~np.isfinite(arr)).sum())
            if n_bad:
                raise BidsInputError(f"{path}: {n_bad} NaN or infinite voxel(s)")
        units = phase_units if phase_units != "auto" else detect_phase_units(p, f["phase"])
        if detected is None:
            detected = units
        elif units != detected:
            raise BidsInputError(f"{f['phase']}: phase stored as {units}, echo 1 as {detected}")
        mag[..., i] = np.abs(m)
        phase[..., i] = phase_to_radians(p, units)
    return MultiEchoGRE(
        mag, phase, np.asarray(meta["affine"]), np.asarray(meta["echo_times_s"]),
        meta["field_strength_t"], detected, files,
    )


def subject_of(path) -> str:
    """The participant id at the start of a BIDS file name (``sub-X_...``)."""
    m = SUBJECT_IN_NAME.match(Path(path).name)
    if not m:
        raise BidsInputError(f"{path}: file name does not start with a BIDS participant id")
    return m.group(1)
