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
_ENTITIES = r"(?:[a-zA-Z]+-[a-zA-Z0-9]+_)*"
#: a MEGRE echo file: sub-X_[ses-/acq-/run-..._]echo-N_[..._]part-mag|phase_MEGRE.nii[.gz]
ECHO_FILE = re.compile(
    rf"^(?P<pid>sub-[A-Za-z0-9]+)_(?P<pre>{_ENTITIES})echo-(?P<echo>\d+)_(?P<post>{_ENTITIES})"
    r"part-(?P<part>mag|phase)_MEGRE\.(?P<ext>nii(?:\.gz)?)$"
)
#: a phase-difference field map's files: sub-X_[acq-/run-..._]phasediff|magnitude1|magnitude2.nii[.gz]
FIELDMAP_FILE = re.compile(
    rf"^(?P<pid>sub-[A-Za-z0-9]+)_(?P<pre>{_ENTITIES})(?P<suffix>phasediff|magnitude1|magnitude2)"
    r"\.(?P<ext>nii(?:\.gz)?)$"
)
T1W_FILE = re.compile(
    rf"^(?P<pid>sub-[A-Za-z0-9]+)_(?P<pre>{_ENTITIES})T1w\.(?P<ext>nii(?:\.gz)?)$"
)
#: how phase may be stored: name -> (stored values per 2 pi, (lowest, highest) value allowed, integer-valued)
PHASE_STORAGE = {
    "radians": (2 * np.pi, (-np.pi - 1e-3, 2 * np.pi + 1e-3), False),
    "degrees": (360.0, (-180.5, 360.5), False),
    "scanner_0_4095": (4096.0, (0, 4095), True),
    "scanner_pm4096": (8192.0, (-4096, 4095), True),
}
#: a stored phase must fill at least this fraction of its convention's cycle to be recognised as it
PHASE_FILL_MIN = 0.9
#: :func:`histogram_evenness` above which an image of unknown scale is taken as a wrapped phase
PHASE_EVENNESS_MIN = 0.9


#: the name under which the derivatives' ``DatasetLinks`` refer to the raw BIDS dataset
RAW_DATASET = "raw"


def bids_uri(path: str | Path, bids_dir: str | Path) -> str:
    """The BIDS URI of a raw file (``bids:raw:sub-X/anat/...``), or its absolute path when it lies
    outside ``bids_dir``."""
    p, root = Path(path).resolve(), Path(bids_dir).resolve()
    try:
        return f"bids:{RAW_DATASET}:{p.relative_to(root).as_posix()}"
    except ValueError:
        return str(p)


class BidsInputError(ValueError):
    """Invalid or incomplete input data; the message names the file and the problem."""


#: BIDS' order of the entities this workflow reads or writes in raw file names
ENTITY_ORDER = ("ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part")


def raw_name(pid: str, suffix: str, entities: dict | None = None, ext: str = "nii.gz") -> str:
    """A raw BIDS file name: ``raw_name("sub-01", "MEGRE", {"echo": 2, "part": "phase"})`` ->
    ``sub-01_echo-2_part-phase_MEGRE.nii.gz``; entities in BIDS' order, ``ext`` without the dot."""
    ents = dict(entities or {})
    unknown = set(ents) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}")
    parts = [pid] + [f"{k}-{ents[k]}" for k in ENTITY_ORDER if k in ents] + [suffix]
    return "_".join(parts) + (f".{ext}" if ext else "")


def check_subject_id(pid: str, source: str = "participants.tsv") -> None:
    if not isinstance(pid, str) or not SUBJECT_ID.match(pid):
        raise BidsInputError(
            f"{source}: participant_id {pid!r} is not a safe BIDS id (expected 'sub-' followed by letters and digits)"
        )


def read_participants(
    bids_dir: str | Path,
    group_column: str = "group",
    groups=("ALS", "NC"),
    require_groups: bool = True,
) -> pd.DataFrame:
    """Read and check ``participants.tsv``.

    Checks: the file exists; ``participant_id`` and ``group_column`` columns;
    ids safe and unique; each of ``groups`` present (with ``require_groups``; else a missing group is
    listed in ``df.attrs["missing_groups"]``). Rows of other groups are left out (not
    processed); they are listed in ``df.attrs["other_groups"]`` (id -> group) for the log.
    ``n/a`` -> NaN.
    """
    if not Path(bids_dir).is_dir():
        raise BidsInputError(f"{bids_dir}: the BIDS folder does not exist")
    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        raise BidsInputError(f"{path}: participants.tsv is missing from the BIDS dataset")
    df = pd.read_csv(
        path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype={"participant_id": str}
    )
    for col in ("participant_id", group_column):
        if col not in df.columns:
            raise BidsInputError(f"{path}: no column {col!r} (columns: {', '.join(df.columns)})")
    if df.empty:
        raise BidsInputError(f"{path}: no participants (the file has a header and no rows)")
    for pid in df["participant_id"]:
        check_subject_id(pid, str(path))
    dup = df["participant_id"][df["participant_id"].duplicated()].tolist()
    if dup:
        raise BidsInputError(f"{path}: duplicated participant_id {dup}")
    other = ~df[group_column].isin(groups)
    missing = [g for g in groups if not (df[group_column] == g).any()]
    if missing and require_groups:
        values = sorted(df[group_column].astype(str).unique())
        raise BidsInputError(
            f"{path}: column {group_column!r} has no {' or '.join(map(repr, missing))} rows "
            f"(its values: {', '.join(values)}); set participants.patient_label / control_label"
        )
    others = dict(zip(df.loc[other, "participant_id"], df.loc[other, group_column].astype(str)))
    df = df[~other].reset_index(drop=True)
    df.attrs["other_groups"] = others
    df.attrs["missing_groups"] = missing
    return df


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BidsInputError(f"{path}: not valid JSON ({e})") from None


def nifti_stem(path: str | Path) -> str:
    """A NIfTI file's name without ``.nii`` or ``.nii.gz``."""
    return re.sub(r"\.nii(\.gz)?$", "", Path(path).name)


def _name_parts(stem: str) -> tuple[dict[str, str], str]:
    """``'sub-01_echo-1_part-mag_MEGRE'`` -> ``({'sub': '01', 'echo': '1', 'part': 'mag'}, 'MEGRE')``."""
    *kvs, suffix = stem.split("_")
    ents = {}
    for kv in kvs:
        k, sep, v = kv.partition("-")
        if not sep:
            return {}, ""
        ents[k] = v
    return ents, suffix


def sidecar(nifti: Path) -> dict:
    """The metadata of a NIfTI file by BIDS' inheritance principle ({} if none).

    Every JSON from the dataset's root down to the file's folder whose suffix is the file's and whose
    entities are a subset of the file's applies (e.g. ``/echo-1_MEGRE.json`` at the root,
    ``sub-01/sub-01_MEGRE.json``); the deeper and the more specific one wins a key, the file's own
    sidecar last. The root is the folder holding the ``sub-<label>`` folder of the path (without one,
    only the file's own sidecar is read).
    """
    path = Path(nifti)
    stem = nifti_stem(path)
    own = path.with_name(stem + ".json")
    subject_dirs = [p for p in path.parents if SUBJECT_ID.match(p.name)]
    if not subject_dirs:
        return _json(own) if own.is_file() else {}
    root = subject_dirs[0].parent  # the innermost: the subject's folder
    ents, suffix = _name_parts(stem)
    meta: dict = {}
    folders = [root] + [p for p in reversed(path.parents) if root in p.parents]
    for folder in folders:
        found = []
        for js in folder.glob(f"*{suffix}.json"):
            j_ents, j_suffix = _name_parts(js.name[:-5])
            if js == own or j_suffix != suffix or not j_ents.items() <= ents.items():
                continue
            found.append((len(j_ents), js))
        for _, js in sorted(found):
            meta.update(_json(js))
    if own.is_file():
        meta.update(_json(own))
    return meta


def dataset_root(path: str | Path) -> Path:
    """The BIDS dataset folder of a raw file: the folder that holds its ``sub-<label>`` folder
    (``sub-X/anat/f`` or ``sub-X/ses-Y/anat/f``)."""
    subject_dirs = [p for p in Path(path).parents if SUBJECT_ID.match(p.name)]
    if not subject_dirs:
        raise BidsInputError(f"{path}: not inside a sub-<label> folder of a BIDS dataset")
    return subject_dirs[0].parent  # the innermost: the subject's folder


def data_folders(bids_dir: str | Path, pid: str, datatype: str = "anat") -> list[Path]:
    """A subject's ``datatype`` folders: ``sub-X/<datatype>`` and ``sub-X/ses-*/<datatype>``."""
    sub = Path(bids_dir) / pid
    found = [sub / datatype] + sorted(sub.glob(f"ses-*/{datatype}"))
    return [d for d in found if d.is_dir()]


def _where(bids_dir: str | Path, pid: str) -> Path:
    """The folder to name in a message: the subject's one anat folder, else the subject folder."""
    found = data_folders(bids_dir, pid)
    return found[0] if len(found) == 1 else Path(bids_dir) / pid


def _folder_files(bids_dir: str | Path, pid: str, datatype: str = "anat") -> list[Path]:
    return [f for d in data_folders(bids_dir, pid, datatype) for f in sorted(d.iterdir())]


def _entities(text: str) -> dict[str, str]:
    """``'acq-fast_run-2_'`` -> ``{'acq': 'fast', 'run': '2'}``."""
    return dict(kv.split("-", 1) for kv in text.strip("_").split("_") if kv)


def _matches(entities: dict, filters: dict | None) -> bool:
    """True if every ``filters`` entity has that value in ``entities`` (values compared as strings;
    a filter value of None asks for the entity to be absent)."""
    for k, v in (filters or {}).items():
        if v is None:
            if k in entities:
                return False
        elif entities.get(k) != str(v):
            return False
    return True


def _series_name(entities: dict) -> str:
    return "_".join(f"{k}-{v}" for k, v in entities.items()) or "(no acq/run entities)"


def megre_series(bids_dir: str | Path, pid: str) -> dict[str, dict]:
    """Every multi-echo GRE series in a subject's ``anat`` folder, by the entities other than echo/part.

    Returns ``{series name: {"entities": {...}, "echoes": {n: {"mag": Path, "phase": Path}}}}``;
    the name is e.g. ``"acq-fast_run-2"``. A file present as both ``.nii`` and ``.nii.gz`` is an error.
    """
    check_subject_id(pid, "subject")
    if not data_folders(bids_dir, pid):
        raise BidsInputError(
            f"{Path(bids_dir) / pid}: no anat folder ({pid}/anat or {pid}/ses-<label>/anat)"
        )
    series: dict[str, dict] = {}
    for f in _folder_files(bids_dir, pid):
        m = ECHO_FILE.match(f.name)
        if not m or m.group("pid") != pid:
            continue
        ents = _entities(m.group("pre") + m.group("post"))
        s = series.setdefault(_series_name(ents), {"entities": ents, "echoes": {}})
        echo = s["echoes"].setdefault(int(m.group("echo")), {})
        part = m.group("part")
        if part in echo:
            raise BidsInputError(
                f"{f}: echo {m.group('echo')} part-{part} is also stored as {echo[part].name}; keep one of the two"
            )
        echo[part] = f
    return series


def _entity_filters(filters: dict | None) -> dict:
    """``bids_filters.megre`` without its ``suffix`` (which chooses MEGRE or the field map)."""
    return {k: v for k, v in (filters or {}).items() if k != "suffix"}


def uses_fieldmap(filters: dict | None) -> bool:
    """True when ``bids_filters.megre`` asks for the phase-difference field map (``suffix:
    phasediff``) instead of a multi-echo GRE (``suffix`` absent or ``MEGRE``)."""
    suffix = (filters or {}).get("suffix", "MEGRE")
    if suffix not in ("MEGRE", "phasediff"):
        raise BidsInputError(
            f"bids_filters.megre suffix {suffix!r}: the GRE input is MEGRE (the default) or phasediff"
        )
    return suffix == "phasediff"


def fieldmap_series(bids_dir: str | Path, pid: str) -> dict[str, dict]:
    """Every phase-difference field map in a subject's ``fmap`` folder, by its entities:
    ``{series name: {"entities": {...}, "files": {"phasediff"|"magnitude1"|"magnitude2": Path}}}``."""
    check_subject_id(pid, "subject")
    series: dict[str, dict] = {}
    for f in _folder_files(bids_dir, pid, "fmap"):
        m = FIELDMAP_FILE.match(f.name)
        if not m or m.group("pid") != pid:
            continue
        ents = _entities(m.group("pre"))
        s = series.setdefault(_series_name(ents), {"entities": ents, "files": {}})
        if m.group("suffix") in s["files"]:
            raise BidsInputError(
                f"{f}: also stored as {s['files'][m.group('suffix')].name}; keep one of the two"
            )
        s["files"][m.group("suffix")] = f
    return series


def _fieldmap_files(bids_dir: str | Path, pid: str, filters: dict) -> list[dict]:
    """The phase-difference field map as two echoes: ``[{echo 1, magnitude1, phase None},
    {echo 2, magnitude2, phasediff}]`` (the phase of echo 1 is taken as 0, so the field is the phase
    difference over the echo spacing, as for the phase of every echo)."""
    fmap = Path(bids_dir) / pid / "fmap"
    found = fieldmap_series(bids_dir, pid)
    ents = _entity_filters(filters)
    chosen = {k: v for k, v in found.items() if _matches(v["entities"], ents)}
    if not chosen:
        raise BidsInputError(
            f"{fmap}: no phase-difference field map (*_phasediff.nii[.gz])"
            + (f" matching bids_filters.megre {filters}" if found else "")
        )
    if len(chosen) > 1:
        raise BidsInputError(
            f"{fmap}: {len(chosen)} field maps ({', '.join(chosen)}); choose one with bids_filters.megre"
        )
    files = next(iter(chosen.values()))["files"]
    for suffix in ("phasediff", "magnitude1", "magnitude2"):
        if suffix not in files:
            other = next(iter(files.values()))
            raise BidsInputError(f"{other}: the field map has no {suffix} image")
    return [
        {"echo": 1, "mag": files["magnitude1"], "phase": None},
        {"echo": 2, "mag": files["magnitude2"], "phase": files["phasediff"]},
    ]


def megre_files(bids_dir: str | Path, pid: str, filters: dict | None = None) -> list[dict]:
    """Echo files of a subject's multi-echo GRE: ``[{echo, mag, phase}, ...]`` by echo number.

    ``filters``: BIDS entities that choose one series when the folder holds several (config
    ``bids_filters.megre``, e.g. ``{"run": "2"}``). Raises if no series or several remain, if any echo is
    missing, or if mag and phase echoes differ. With ``suffix: phasediff`` the subject's
    phase-difference field map in ``fmap/`` is the GRE (:func:`_fieldmap_files`; ``phase`` of echo 1 is
    None).
    """
    if uses_fieldmap(filters):
        return _fieldmap_files(bids_dir, pid, filters)
    filters = _entity_filters(filters)
    anat = _where(bids_dir, pid)
    found = megre_series(bids_dir, pid)
    if not found:
        raise BidsInputError(f"{anat}: no *_echo-N_part-mag/phase_MEGRE.nii[.gz] files")
    chosen = {k: v for k, v in found.items() if _matches(v["entities"], filters)}
    if not chosen:
        raise BidsInputError(
            f"{anat}: no MEGRE series matches bids_filters.megre {filters} (found: {', '.join(found)})"
        )
    if len(chosen) > 1:
        raise BidsInputError(
            f"{anat}: {len(chosen)} MEGRE series ({', '.join(chosen)}); choose one with bids_filters.megre "
            "in the config (e.g. {run: '2'})"
        )
    by_echo = next(iter(chosen.values()))["echoes"]
    echoes = sorted(by_echo)
    missing = [n for n in range(1, max(echoes) + 1) if n not in by_echo]
    if missing:
        raise BidsInputError(
            f"{anat}: missing echo(es) {missing} of {pid}'s MEGRE series (found {echoes})"
        )
    out = []
    for n in echoes:
        parts = by_echo[n]
        for part in ("mag", "phase"):
            if part not in parts:
                other = parts.get("mag") or parts.get("phase")
                raise BidsInputError(f"{other}: echo {n} has no part-{part} file")
        out.append({"echo": n, "mag": parts["mag"], "phase": parts["phase"]})
    return out


def t1w_file(
    bids_dir: str | Path, pid: str, filters: dict | None = None, session: str | None = None
) -> Path:
    """The subject's T1w image; ``filters`` (config ``bids_filters.t1w``) choose one of several.

    ``session``: the GRE's session label; when several T1w images remain in different sessions, the
    one of the GRE's session is taken (the left-right check and the GRE->T1w rigid assume one session).
    """
    sub = _where(bids_dir, pid)
    cands = []
    for f in _folder_files(bids_dir, pid):
        m = T1W_FILE.match(f.name)
        if m and m.group("pid") == pid and _matches(_entities(m.group("pre")), filters):
            cands.append((m, f))
    if not cands:
        extra = f" matching bids_filters.t1w {filters}" if filters else ""
        raise BidsInputError(f"{sub}: no T1w image for {pid}{extra}")
    stems = {}
    for m, f in cands:
        stem = f.name[: -len(m.group("ext")) - 1]
        if stem in stems:
            raise BidsInputError(f"{f}: also stored as {stems[stem].name}; keep one of the two")
        stems[stem] = f
    if len(cands) > 1 and session is not None:
        same = [(m, f) for m, f in cands if _entities(m.group("pre")).get("ses") == session]
        cands = same or cands
    if len(cands) > 1:
        raise BidsInputError(
            f"{sub}: {len(cands)} T1w images ({', '.join(f.name for _, f in cands)}); choose one with "
            "bids_filters.t1w in the config (e.g. {run: '1'})"
        )
    return cands[0][1]


def gre_session(bids_dir: str | Path, pid: str, filters: dict | None = None) -> str | None:
    """The session label of the subject's chosen GRE series (None without sessions or when the
    choice fails; the input check reports that)."""
    try:
        files = megre_files(bids_dir, pid, filters)
    except BidsInputError:
        return None
    f = files[-1]["phase"]
    return _name_parts(nifti_stem(f))[0].get("ses")


def series_listing(bids_dir: str | Path, pid: str, filters: dict | None = None) -> str | None:
    """A line for the pre-flight log when a subject has several GRE series (runs, acquisitions,
    sessions): each series and the one ``bids_filters.megre`` chooses; None for a single series."""
    if uses_fieldmap(filters):
        return None
    try:
        found = megre_series(bids_dir, pid)
    except BidsInputError:
        return None
    if len(found) < 2:
        return None
    ents = _entity_filters(filters)
    chosen = [k for k, v in found.items() if _matches(v["entities"], ents)]
    used = (
        chosen[0] if len(chosen) == 1 else f"none ({len(chosen)} match bids_filters.megre {ents})"
    )
    return f"{pid}: {len(found)} MEGRE series ({', '.join(found)}); used: {used}"


def histogram_evenness(img: np.ndarray, bins: int = 20) -> float:
    """How evenly an image's non-zero values fill their range: the entropy of a ``bins``-bin histogram
    over [min, max], divided by log(bins) (1 = uniform).

    A wrapped phase image fills its cycle nearly evenly (wraps and noise): 0.97-1.0 at the later echoes
    of the simulator's and of real 7 T crops, 0.87 at a real first echo with few wraps. A magnitude image
    does not (background near 0, a tissue peak, a bright tail): 0.3-0.76 on the same data. Exact zeros
    (a masked background) are left out. ``img``: any shape, any units.
    """
    a = np.asarray(img)
    v = a[np.isfinite(a) & (a != 0)]
    if v.size < 2 or v.max() <= v.min():
        return 0.0
    h, _ = np.histogram(v, bins=bins, range=(float(v.min()), float(v.max())))
    p = h[h > 0] / h.sum()
    return float(-(p * np.log(p)).sum() / np.log(bins))


@dataclass
class PhaseStorage:
    """How a phase series is stored: ``units`` (a :data:`PHASE_STORAGE` name, ``'rescaled'`` or
    ``'scale'``) and ``period``, the stored value difference that is one full cycle (2 pi rad)."""

    units: str
    period: float

    def describe(self) -> str:
        if self.units in PHASE_STORAGE:
            return self.units
        return f"{self.units} ({self.period:.6g} stored units per 2 pi)"


def _lattice_period(values: np.ndarray, lo: float, hi: float) -> float:
    """The cycle of wrapped phase stored on a lattice of ``n`` levels spanning [lo, hi]: (hi-lo)*n/(n-1)
    (e.g. 12-bit integers rescaled to floats); for values not on a lattice, hi - lo."""
    span = hi - lo
    u = np.unique(values)
    if 16 <= u.size <= 65536:
        step = span / (u.size - 1)
        k = (u - lo) / step
        if np.allclose(k, np.round(k), atol=0.02):
            return span + step
    return span


def detect_phase_storage(raw: np.ndarray, path: Path | str = "phase") -> PhaseStorage:
    """How a wrapped phase image (or a stack of echoes) is stored, from its values and wrap structure.

    A known convention (:data:`PHASE_STORAGE`) is recognised when every value lies within its range and
    the values fill at least :data:`PHASE_FILL_MIN` of its cycle (a wrapped phase with noise fills it).
    Any other scale (e.g. radians multiplied by a constant) is accepted only if the values fill their
    range as a wrapped phase does (:func:`histogram_evenness` of some echo >= :data:`PHASE_EVENNESS_MIN`);
    its cycle is then the observed range (``'rescaled'``; one lattice step more for quantized values).
    Anything else is ambiguous and raises :class:`BidsInputError` naming ``path``.
    """
    arr = np.asarray(raw)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise BidsInputError(f"{path}: no finite phase values")
    lo, hi = float(finite.min()), float(finite.max())
    sample = finite[:: max(1, finite.size // 200000)]
    levels = np.unique(sample).size
    for name, (period, (a, b), needs_int) in PHASE_STORAGE.items():
        # scanner integers: at most one level per stored unit, within half a unit of the range (a
        # phase saved again with another scale slope is no longer on the integers: the XA30 field map
        # re-saved by an early qsmvbm-bidsify held -4096..4094 up to 0.06 off them)
        if needs_int and levels > period + 1:
            continue
        if (
            lo >= a - 0.5 * needs_int
            and hi <= b + 0.5 * needs_int
            and hi - lo >= PHASE_FILL_MIN * period
        ):
            return PhaseStorage(name, period)
    vols = arr.reshape(arr.shape[:3] + (-1,)) if arr.ndim >= 3 else arr.reshape(-1, 1)
    even = max(histogram_evenness(vols[..., i]) for i in range(vols.shape[-1]))
    if hi > lo and even >= PHASE_EVENNESS_MIN:
        return PhaseStorage(
            "rescaled", _lattice_period(sample if sample.size < finite.size else finite, lo, hi)
        )
    raise BidsInputError(
        f"{path}: phase values span [{lo:g}, {hi:g}] and do not fill that range as a wrapped phase does "
        f"(histogram evenness {even:.2f} < {PHASE_EVENNESS_MIN}): the scaling is ambiguous (not radians, degrees, "
        "0..4095 or -4096..4095 filling a cycle); is this a phase image? Set qsm.phase_units or qsm.phase_scale"
    )


def detect_phase_units(raw: np.ndarray, path: Path | str = "phase") -> str:
    """The name of :func:`detect_phase_storage`'s convention (``'radians'``, ``'scanner_pm4096'``...)."""
    return detect_phase_storage(raw, path).units


def check_phase_storage(raw: np.ndarray, storage: PhaseStorage, path: Path | str = "phase") -> None:
    """Raise if stored values cannot be in the convention the config names (e.g. 0..4095 read as radians)."""
    if storage.units not in PHASE_STORAGE:
        return
    _, (a, b), _ = PHASE_STORAGE[storage.units]
    finite = np.asarray(raw)[np.isfinite(raw)]
    lo, hi = float(finite.min()), float(finite.max())
    if lo < a or hi > b:
        raise BidsInputError(
            f"{path}: phase values span [{lo:g}, {hi:g}], outside {storage.units} ({a:g}..{b:g}) as "
            "qsm.phase_units says"
        )


def phase_to_radians(raw: np.ndarray, units: str | PhaseStorage) -> np.ndarray:
    """Stored phase -> radians in [-pi, pi). ``units``: a convention name or a :class:`PhaseStorage`."""
    storage = units if isinstance(units, PhaseStorage) else PhaseStorage(units, _period_of(units))
    raw = raw.astype(np.float32, copy=False)
    if storage.units == "radians":
        rad = raw
    elif storage.units == "scanner_0_4095":
        rad = raw / np.float32(4096.0) * np.float32(2 * np.pi) - np.float32(np.pi)
    elif storage.units == "scanner_pm4096":
        rad = raw / np.float32(4096.0) * np.float32(np.pi)
    else:
        rad = raw * np.float32(2 * np.pi / storage.period)
    return (np.mod(rad + np.float32(np.pi), np.float32(2 * np.pi)) - np.float32(np.pi)).astype(
        np.float32
    )


def _period_of(units: str) -> float:
    if units not in PHASE_STORAGE:
        raise ValueError(f"unknown phase units {units!r}")
    return PHASE_STORAGE[units][0]


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
    phase_period: float | None = None

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


def read_data(path: Path | str, dtype=np.float32) -> np.ndarray:
    """A NIfTI file's voxel data; any read failure (truncated or corrupt file) names the file."""
    img = _load(Path(path))
    try:
        return np.asarray(img.dataobj, dtype=dtype)
    except Exception as e:  # EOFError, zlib.error, OSError, ValueError...
        raise BidsInputError(
            f"{path}: cannot read the image data ({type(e).__name__}: {e}); "
            "is the file truncated or corrupt?"
        ) from None


def _number(meta: dict, key: str, path) -> float | None:
    v = meta.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BidsInputError(
            f"{path}: {key} {v!r} is not a number (BIDS: {key} in SI units, a JSON number)"
        )
    return float(v)


def megre_metadata(bids_dir: str | Path, pid: str, filters: dict | None = None) -> dict:
    """Check a subject's MEGRE series from headers and sidecars only (no voxel data).

    Returns echo times (s), field strength (T), shape, voxel size, affine, files. Checks: at least two
    echoes, one 3D image per echo and part with equal shapes and affines, EchoTime (s) in every echo's
    sidecar, increasing and equal in its mag and phase sidecars, one MagneticFieldStrength (T) for all.
    """
    files = megre_files(bids_dir, pid, filters)
    if len(files) < 2:
        raise BidsInputError(
            f"{files[0]['phase']}: only one echo; the QSM chain needs a multi-echo GRE (at least 2 echoes)"
        )
    diff = files[1]["phase"] if files[0]["phase"] is None else None  # a phase-difference field map
    tes = []
    fields: dict[float, str] = {}
    diff_tes = {}
    if diff is not None:  # BIDS: the echo times of a field map are phasediff's EchoTime1 and 2
        meta = sidecar(diff)
        for n in (1, 2):
            te = _number(meta, f"EchoTime{n}", diff)
            if te is None:
                raise BidsInputError(f"{diff}: no EchoTime{n} in its JSON sidecar")
            if not 0 < te < 1:
                raise BidsInputError(
                    f"{diff}: EchoTime{n} {te} is not in seconds (expected 0 < TE < 1 s)"
                )
            diff_tes[n] = te
        b0 = _number(meta, "MagneticFieldStrength", diff)
        if b0 is not None:
            fields.setdefault(round(b0, 3), str(diff))
    shape = affine = None
    for f in files:
        for part in ("mag", "phase"):
            if f[part] is None:
                continue
            img = _load(f[part])
            if len(img.shape) != 3:
                raise BidsInputError(
                    f"{f[part]}: expected a 3D image per echo, got shape {img.shape} (a 4D multi-echo file must "
                    "be split into one *_echo-N_part-{mag,phase}_MEGRE file per echo, as BIDS asks)"
                )
            if shape is None:
                shape, affine, ref = img.shape, img.affine, f[part]
            elif img.shape != shape:
                raise BidsInputError(
                    f"{f[part]}: shape {img.shape} differs from {ref.name} {shape}"
                )
            elif not np.allclose(img.affine, affine, atol=1e-3):
                raise BidsInputError(f"{f[part]}: affine differs from {ref.name}")
        te_by_part = {}
        for part in ("phase", "mag"):
            if f[part] is None or f[part] == diff:  # the field map's phase: read above
                continue
            meta = sidecar(f[part])
            te = _number(meta, "EchoTime", f[part])
            if te is not None:
                if not 0 < te < 1:
                    raise BidsInputError(
                        f"{f[part]}: EchoTime {te} is not in seconds (expected 0 < TE < 1 s)"
                    )
                te_by_part[part] = te
            b0 = _number(meta, "MagneticFieldStrength", f[part])
            if b0 is not None:
                fields.setdefault(round(b0, 3), str(f[part]))
        if diff is not None:
            te_by_part = {"phase": diff_tes[f["echo"]]}
        te = te_by_part.get("phase", te_by_part.get("mag"))
        if te is None:
            raise BidsInputError(f"{f['phase'] or f['mag']}: no EchoTime in its JSON sidecar")
        if (
            diff is None
            and len(te_by_part) == 2
            and abs(te_by_part["phase"] - te_by_part["mag"]) > 1e-6
        ):
            raise BidsInputError(
                f"{f['phase']}: EchoTime {te_by_part['phase']} s differs from its magnitude's {te_by_part['mag']} s"
            )
        tes.append(te)
    if np.any(np.diff(tes) <= 0):
        raise BidsInputError(
            f"{files[-1]['phase'].parent}: echo times {tes} (s) do not increase with the echo number"
        )
    if not fields:
        raise BidsInputError(f"{files[-1]['phase']}: no MagneticFieldStrength (T) in the sidecars")
    if len(fields) > 1:
        raise BidsInputError(
            "MagneticFieldStrength differs between the echoes' sidecars: "
            + "; ".join(f"{b0:g} T in {Path(src).name}" for b0, src in fields.items())
        )
    field_t = next(iter(fields))
    if field_t <= 0:
        raise BidsInputError(
            f"{files[-1]['phase']}: MagneticFieldStrength {field_t} is not positive"
        )
    vs = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    return {
        "echo_times_s": tes,
        "field_strength_t": field_t,
        "shape": list(shape),
        "voxel_size_mm": vs.tolist(),
        "affine": np.asarray(affine).tolist(),
        "b0_direction_voxel": b0_direction_from_affine(affine).tolist(),
        "files": [
            {"echo": f["echo"], "mag": str(f["mag"]), "phase": f["phase"] and str(f["phase"])}
            for f in files
        ],
        "phase_difference": diff is not None,
    }


def check_magnitude(mag: np.ndarray, path) -> None:
    """A magnitude image is non-negative; a signed one is most likely a phase image (parts swapped)."""
    finite = mag[np.isfinite(mag)]
    lo, hi = float(finite.min()), float(finite.max())
    if lo < -0.01 * max(abs(hi), 1e-12):
        raise BidsInputError(
            f"{path}: magnitude image with negative values (range [{lo:g}, {hi:g}]): is it a phase image "
            "(part-mag and part-phase swapped)?"
        )


def load_megre(
    bids_dir: str | Path,
    pid: str,
    phase_units: str = "auto",
    phase_scale: float | None = None,
    filters: dict | None = None,
) -> MultiEchoGRE:
    """Load and check a subject's multi-echo GRE (see :func:`megre_metadata`), phase in radians.

    ``phase_units``: ``'auto'`` (:func:`detect_phase_storage` on all echoes together) or a convention
    name, checked against the values. ``phase_scale``: stored units per 2 pi rad, overrides both.
    Further checks: finite values, magnitudes non-negative, and the phase fills its range more evenly
    than the magnitude (:func:`histogram_evenness`; swapped parts otherwise).
    """
    meta = megre_metadata(bids_dir, pid, filters)
    files = meta["files"]
    shape = tuple(meta["shape"]) + (len(files),)
    mag = np.empty(shape, np.float32)
    raw = np.empty(shape, np.float32)
    has_phase = np.array([f["phase"] is not None for f in files])
    for i, f in enumerate(files):
        m = read_data(f["mag"])
        p = read_data(f["phase"]) if f["phase"] else np.zeros_like(m)
        for arr, path in ((m, f["mag"]), (p, f["phase"] or f["mag"])):
            n_bad = int((~np.isfinite(arr)).sum())
            if n_bad:
                raise BidsInputError(f"{path}: {n_bad} NaN or infinite voxel(s)")
        check_magnitude(m, f["mag"])
        mag[..., i] = np.abs(
            m
        )  # tolerated small negatives (interpolated magnitudes) are folded, as before
        raw[..., i] = p
    first = next(f["phase"] for f in files if f["phase"])
    where = f"{first}" + ("" if meta["phase_difference"] else " (and its other echoes)")
    stored = raw[..., has_phase]
    if phase_scale is not None:
        storage = PhaseStorage("scale", float(phase_scale))
    elif phase_units == "auto":
        storage = detect_phase_storage(stored, where)
    else:
        storage = PhaseStorage(phase_units, _period_of(phase_units))
        check_phase_storage(stored, storage, where)
    del stored
    last = len(files) - 1
    ev_phase, ev_mag = histogram_evenness(raw[..., last]), histogram_evenness(mag[..., last])
    if ev_phase < ev_mag:
        raise BidsInputError(
            f"{files[last]['phase']}: the phase image fills its range less evenly than its magnitude "
            f"{Path(files[last]['mag']).name} does (histogram evenness {ev_phase:.2f} vs {ev_mag:.2f}): are "
            "part-mag and part-phase swapped?"
        )
    phase = phase_to_radians(raw, storage)
    phase[..., ~has_phase] = 0.0  # a field map's first echo: the phase difference is echo 2's phase
    del raw
    return MultiEchoGRE(
        mag,
        phase,
        np.asarray(meta["affine"]),
        np.asarray(meta["echo_times_s"]),
        meta["field_strength_t"],
        storage.units,
        files,
        storage.period,
    )


def subject_of(path) -> str:
    """The participant id at the start of a BIDS file name (``sub-X_...``)."""
    m = SUBJECT_IN_NAME.match(Path(path).name)
    if not m:
        raise BidsInputError(f"{path}: file name does not start with a BIDS participant id")
    return m.group(1)


def megre_candidates(bids_dir: str | Path, pid: str, filters: dict | None = None) -> list[Path]:
    """Every multi-echo GRE file (NIfTI and JSON, all series) in a subject's ``anat`` folder, sorted;
    with ``bids_filters.megre`` ``suffix: phasediff``, the field map files of its ``fmap`` folder.

    Found from file names only: the workflow's input to the input check, which reads them and
    reports duplicates, several series or missing echoes (:func:`megre_files`).
    """
    if uses_fieldmap(filters):
        return sorted(
            f
            for f in _folder_files(bids_dir, pid, "fmap")
            if FIELDMAP_FILE.match(re.sub(r"\.json$", ".nii", f.name))
        )
    return sorted(
        f
        for f in _folder_files(bids_dir, pid)
        if ECHO_FILE.match(re.sub(r"\.json$", ".nii", f.name))
    )


def missing_inputs(
    bids_dir: str | Path,
    pid: str,
    t1w_filters: dict | None = None,
    megre_filters: dict | None = None,
) -> str | None:
    """Why a subject cannot be processed at all (no folder, no or several T1w images, no GRE phase
    images), or None. From file names only; the input check reads the files."""
    anat = _where(bids_dir, pid)
    if not data_folders(bids_dir, pid):
        return f"no folder {anat / 'anat'} (nor {pid}/ses-<label>/anat)"
    try:
        t1w_file(bids_dir, pid, t1w_filters, gre_session(bids_dir, pid, megre_filters))
    except BidsInputError as err:
        return str(err)
    if uses_fieldmap(megre_filters):
        if not any("phasediff" in f.name for f in megre_candidates(bids_dir, pid, megre_filters)):
            return f"no phase-difference field map in {Path(bids_dir) / pid} (fmap/)"
    elif not any("part-phase" in f.name for f in megre_candidates(bids_dir, pid)):
        why = f"no multi-echo GRE phase images in {anat}"
        if fieldmap_series(bids_dir, pid):
            why += (
                " (a phase-difference field map is in fmap/: bids_filters.megre {suffix: phasediff} "
                "makes the QSM from it)"
            )
        return why
    return None
