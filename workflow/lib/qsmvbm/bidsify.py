"""From the scanner to BIDS: dcm2niix output (or DICOM, converted with the ``dcm2niix`` package from
PyPI) to this workflow's input layout, with a report of every series found and what became of it.

The classification reads the dcm2niix JSON sidecars only (ImageType, EchoNumber, EchoTime,
ScanningSequence, InversionTime, MRAcquisitionType, SeriesNumber, ProtocolName, dcm2niix's own
``BidsGuess``) and the NIfTI headers (shape, affine); file names are a hint only for dcm2niix's
``_ph`` / ``_real`` / ``_imaginary`` suffixes. Roles:

* ``megre``: a gradient-echo series with at least two echo times and, for every echo, a magnitude
  and a phase image (or a real and an imaginary image, turned into magnitude and phase). Siemens
  stores magnitude and phase as two series (numbers N and N+1); GE and Philips as one. Several
  acquisitions of one protocol (same geometry) become ``run-<k>`` in series order; several
  protocols ``acq-<protocol>``. Voxel values are written unchanged (the workflow finds the phase
  storage from the values), sidecars keep every dcm2niix field.
* ``T1w``: a 3D inversion-prepared gradient echo (MPRAGE, IR-SPGR: ``ScanningSequence`` with IR
  and GR and an ``InversionTime``), or what dcm2niix guesses as T1w.
* ``fmap``: a phase-difference field map (a phase image whose sidecar has EchoTime1 and
  EchoTime2) and its magnitude images: written to ``fmap/`` as BIDS asks; the workflow makes the QSM
  from it only when asked (``bids_filters.megre {suffix: phasediff}``: two echoes, a noisier field).
* anything else is left out, with the reason in the report.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .bids import BidsInputError, check_subject_id, megre_metadata, nifti_stem, raw_name

#: the report's columns, one row per converted NIfTI
REPORT_COLUMNS = [
    "source",
    "series_number",
    "protocol",
    "role",
    "echo",
    "part",
    "echo_time_s",
    "output",
    "note",
]
#: columns of a new participants.tsv
PARTICIPANT_COLUMNS = ["participant_id", "group", "age", "sex"]


@dataclass
class Image:
    """One NIfTI of a dcm2niix conversion with what classification needs from its sidecar."""

    path: Path
    meta: dict
    shape: tuple
    affine: np.ndarray
    part: str = ""  # mag, phase, real, imag
    role: str = ""
    note: str = ""
    out: dict = field(default_factory=dict)

    @property
    def series_number(self) -> int:
        v = self.meta.get("SeriesNumber")
        return int(v) if isinstance(v, (int, float)) else -1

    @property
    def protocol(self) -> str:
        return str(self.meta.get("ProtocolName") or self.meta.get("SeriesDescription") or "unnamed")

    @property
    def echo_time(self) -> float | None:
        v = self.meta.get("EchoTime")
        return float(v) if isinstance(v, (int, float)) else None


def image_part(meta: dict, path: Path) -> str:
    """``mag``, ``phase``, ``real`` or ``imag`` of a dcm2niix image, from its ImageType (Siemens
    ``M``/``P``, GE/Philips ``PHASE``, ``P_FFE``, ``REAL``, ``IMAGINARY``) or dcm2niix's file-name
    suffix (``_ph``, ``_real``, ``_imaginary``)."""
    tokens = {str(t).upper() for t in meta.get("ImageType", [])}
    stem = nifti_stem(path)
    if tokens & {"P", "PHASE", "P_FFE", "PHASE MAP"} or re.search(r"_ph(_|$)", stem):
        return "phase"
    if tokens & {"REAL", "R_FFE"} or stem.endswith("_real"):
        return "real"
    if tokens & {"IMAGINARY", "I_FFE"} or stem.endswith("_imaginary"):
        return "imag"
    return "mag"


def _is_t1w(meta: dict) -> bool:
    seq = str(meta.get("ScanningSequence", "")).upper()
    guess = meta.get("BidsGuess") or ["", ""]
    if str(guess[-1]).endswith("_T1w"):
        return True
    return (
        "IR" in seq
        and "GR" in seq
        and isinstance(meta.get("InversionTime"), (int, float))
        and str(meta.get("MRAcquisitionType", "3D")).upper() == "3D"
    )


def _is_gradient_echo(meta: dict) -> bool:
    seq = str(meta.get("ScanningSequence", "GR")).upper()
    return "GR" in seq and "IR" not in seq and "EP" not in seq


def _geometry_key(img: Image) -> tuple:
    return (img.shape[:3], tuple(np.round(img.affine, 2).ravel()))


def read_conversion(folder: Path) -> list[Image]:
    """Every NIfTI with a JSON sidecar in a dcm2niix output folder (sorted by series and name)."""
    images = []
    for nii in sorted(Path(folder).rglob("*.nii*")):
        if not re.search(r"\.nii(\.gz)?$", nii.name):
            continue
        js = nii.with_name(nifti_stem(nii) + ".json")
        meta = json.loads(js.read_text()) if js.is_file() else {}
        hdr = nib.load(nii)
        img = Image(nii, meta, tuple(int(n) for n in hdr.shape), np.asarray(hdr.affine))
        img.part = image_part(meta, nii)
        images.append(img)
    images.sort(key=lambda i: (i.series_number, i.path.name))
    return images


def _runs_of(images: list[Image]) -> list[list[Image]]:
    """Split one protocol's gradient-echo images (same geometry) into acquisitions: the k-th series
    holding a given (echo time, part) belongs to the k-th run (Siemens writes magnitude and phase as
    consecutive series, so the k-th magnitude series pairs with the k-th phase series)."""
    by_slot: dict[tuple, list[Image]] = {}
    for img in images:
        by_slot.setdefault((round(img.echo_time or -1, 6), img.part), []).append(img)
    runs: list[list[Image]] = []
    for slot in by_slot.values():
        series = sorted({i.series_number for i in slot})
        for img in slot:
            k = series.index(img.series_number)
            if k >= len(runs):
                runs.extend([] for _ in range(k + 1 - len(runs)))
            runs[k].append(img)
    return runs


def _megre_echoes(run: list[Image]) -> tuple[dict, str]:
    """``{echo time: {part: Image}}`` of one acquisition, or ``({}, reason)`` when it is not a
    usable multi-echo GRE."""
    echoes: dict[float, dict] = {}
    for img in run:
        if img.echo_time is None:
            return {}, f"{img.path.name}: no EchoTime"
        slot = echoes.setdefault(round(img.echo_time, 6), {})
        if img.part in slot:
            return {}, f"two {img.part} images at TE {img.echo_time} s"
        slot[img.part] = img
    for te, parts in echoes.items():
        if {"real", "imag"} <= set(parts) and not {"mag", "phase"} <= set(parts):
            continue
        if "phase" not in parts:
            return {}, f"no phase image at TE {te * 1e3:g} ms (magnitude only)"
        if "mag" not in parts:
            return {}, f"no magnitude image at TE {te * 1e3:g} ms"
    if len(echoes) < 2:
        return {}, "one echo only: the QSM chain needs a multi-echo GRE (at least 2 echoes)"
    return dict(sorted(echoes.items())), ""


def _label(text: str) -> str:
    """A BIDS label (alphanumeric) from a protocol name."""
    return re.sub(r"[^A-Za-z0-9]", "", text) or "x"


def classify(images: list[Image]) -> dict:
    """Assign every image a role and, for the ones kept, its BIDS entities.

    Returns ``{"megre": [{"entities": {...}, "echoes": {te: {part: Image}}}],
    "t1w": [(entities, Image)], "fmap": [(suffix, Image)]}``; every image's ``role`` and ``note``
    say what became of it (for the report).
    """
    fmap: list[tuple[str, Image]] = []
    t1w: list[Image] = []
    gre: dict[str, list[Image]] = {}
    diff_protocols = set()
    for img in images:
        if len(img.shape) > 3 and img.shape[3] > 1:
            img.role, img.note = "skipped", f"4D image {img.shape} (not a T1w or a GRE echo)"
        elif "DERIVED" in {str(t).upper() for t in img.meta.get("ImageType", [])}:
            img.role = "skipped"
            img.note = (
                "derived by the scanner (ImageType DERIVED: e.g. SWI, minimum intensity projection)"
            )
        elif img.part == "phase" and {"EchoTime1", "EchoTime2"} <= set(img.meta):
            img.role = "fmap"
            img.note = (
                "phase-difference field map: written to fmap/; a QSM input only with "
                "bids_filters.megre {suffix: phasediff}"
            )
            fmap.append(("phasediff", img))
            diff_protocols.add((img.protocol, _geometry_key(img)))
        elif _is_t1w(img.meta) and img.part == "mag":
            t1w.append(img)
        elif _is_gradient_echo(img.meta):
            gre.setdefault(img.protocol, []).append(img)
        else:
            guess = img.meta.get("BidsGuess")
            img.role = "skipped"
            img.note = "not a T1w or a gradient-echo image" + (
                f" (dcm2niix guesses {guess[0]}/{guess[-1].lstrip('_')})" if guess else ""
            )
    # the magnitude images of a phase-difference field map
    for protocol, imgs in list(gre.items()):
        mags = [i for i in imgs if (protocol, _geometry_key(i)) in diff_protocols]
        for k, img in enumerate(sorted(mags, key=lambda i: i.echo_time or 0)):
            img.role, img.note = "fmap", "magnitude of the phase-difference field map"
            fmap.append((f"magnitude{k + 1}", img))
        gre[protocol] = [i for i in imgs if i not in mags]
    megre = []
    for protocol, imgs in gre.items():
        by_geometry: dict[tuple, list[Image]] = {}
        for img in imgs:
            by_geometry.setdefault(_geometry_key(img), []).append(img)
        for group in by_geometry.values():
            for run in _runs_of(group):
                echoes, reason = _megre_echoes(run)
                if reason:
                    for img in run:
                        img.role, img.note = (
                            "skipped",
                            f"gradient echo, not usable for QSM: {reason}",
                        )
                    continue
                megre.append({"protocol": protocol, "echoes": echoes, "images": run})
    _entities(megre, t1w)
    return {"megre": megre, "t1w": t1w, "fmap": fmap}


def _acq_run(protocols: list[str]) -> list[dict]:
    """BIDS entities of acquisitions given their protocol names in series order: ``acq-<protocol>``
    when there are several protocols, ``run-<k>`` when a protocol was acquired several times."""
    several = len(set(protocols)) > 1
    out = []
    for i, p in enumerate(protocols):
        ents = {"acq": _label(p)} if several else {}
        if protocols.count(p) > 1:
            ents["run"] = str(protocols[: i + 1].count(p))
        out.append(ents)
    return out


def _entities(megre: list[dict], t1w: list[Image]) -> None:
    """Each kept acquisition's entities (:func:`_acq_run`) and role."""
    for m, ents in zip(megre, _acq_run([m["protocol"] for m in megre])):
        m["entities"] = ents
        for img in m["images"]:
            img.role = "megre"
    for img, ents in zip(t1w, _acq_run([i.protocol for i in t1w])):
        img.role, img.out = "T1w", {"entities": ents}


def _write(img: nib.Nifti1Image | None, src: Path, dest: Path, meta: dict) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if img is not None:
        nib.save(img, dest)
    elif src.name.endswith(
        ".gz"
    ):  # as dcm2niix wrote it: stored values and scale slope as they are
        shutil.copyfile(src, dest)  # (nibabel would save its scaled floats with a new slope)
    else:
        dest.write_bytes(gzip.compress(src.read_bytes()))
    dest.with_name(nifti_stem(dest) + ".json").write_text(json.dumps(meta, indent=2) + "\n")


def _complex_to_mag_phase(real: Image, imag: Image) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    re_img, im_img = nib.load(real.path), nib.load(imag.path)
    z = re_img.get_fdata(dtype=np.float32) + 1j * im_img.get_fdata(dtype=np.float32)
    hdr = re_img.header.copy()
    hdr.set_data_dtype(np.float32)
    mag = nib.Nifti1Image(np.abs(z).astype(np.float32), re_img.affine, hdr)
    phase = nib.Nifti1Image(np.angle(z).astype(np.float32), re_img.affine, hdr)
    return mag, phase


def write_subject(plan: dict, bids_dir: Path, pid: str) -> list[Path]:
    """Write one subject's classified images under ``bids_dir/pid``; returns the written NIfTIs."""
    written = []
    anat = Path(bids_dir) / pid / "anat"
    for m in plan["megre"]:
        for n, (te, parts) in enumerate(m["echoes"].items(), start=1):
            made = {}
            if "mag" not in parts:
                made["mag"], made["phase"] = _complex_to_mag_phase(parts["real"], parts["imag"])
                for p in ("real", "imag"):
                    parts[p].note = "real/imaginary pair written as magnitude and phase [rad]"
            for part in ("mag", "phase"):
                src = parts.get(part) or parts["real"]
                meta = dict(src.meta)
                meta["EchoTime"] = te
                meta["EchoNumber"] = n
                if part in made:
                    meta["ImageType"] = [*meta.get("ImageType", [])[:2], part.upper()]
                    if part == "phase":
                        meta["Units"] = "rad"
                dest = anat / (raw_name(pid, "MEGRE", {**m["entities"], "echo": n, "part": part}))
                _write(made.get(part), src.path, dest, meta)
                written.append(dest)
                for img in [parts[part]] if part in parts else [parts["real"], parts["imag"]]:
                    img.out = {"path": dest, "echo": n, "part": part}
    for img in plan["t1w"]:
        dest = anat / raw_name(pid, "T1w", img.out["entities"])
        _write(None, img.path, dest, dict(img.meta))
        img.out = {"path": dest}
        written.append(dest)
    for suffix, img in plan["fmap"]:
        dest = Path(bids_dir) / pid / "fmap" / raw_name(pid, suffix, {})
        _write(None, img.path, dest, dict(img.meta))
        img.out = {"path": dest}
        written.append(dest)
    return written


def report_table(images: list[Image], bids_dir: Path) -> pd.DataFrame:
    rows = []
    for img in images:
        out = img.out.get("path")
        rows.append(
            {
                "source": img.path.name,
                "series_number": img.series_number,
                "protocol": img.protocol,
                "role": img.role,
                "echo": img.out.get("echo", "n/a"),
                "part": img.part,
                "echo_time_s": img.echo_time if img.echo_time is not None else "n/a",
                "output": str(Path(out).relative_to(bids_dir)) if out else "n/a",
                "note": img.note or "n/a",
            }
        )
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def _is_dicom_folder(folder: Path) -> bool:
    """True when the folder holds no NIfTI (so it is DICOM to convert)."""
    return not any(re.search(r"\.nii(\.gz)?$", p.name) for p in folder.rglob("*.nii*"))


def run_dcm2niix(dicom_dir: Path, out_dir: Path) -> str:
    """Convert a DICOM folder with the ``dcm2niix`` package (gzipped NIfTI, BIDS sidecars);
    returns its log. Raises BidsInputError when it fails or finds nothing."""
    try:
        import dcm2niix
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise BidsInputError("the dcm2niix package is not installed (pip install dcm2niix)") from e
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [dcm2niix.bin, "-z", "y", "-b", "y", "-f", "%s_%p", "-o", str(out_dir), str(dicom_dir)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    log = r.stdout + r.stderr
    if not list(out_dir.glob("*.nii*")):
        raise BidsInputError(
            f"{dicom_dir}: dcm2niix converted no image (exit {r.returncode}):\n{log.strip()}"
        )
    return log


def update_participants(bids_dir: Path, pid: str, values: dict) -> Path:
    """Add or update ``pid``'s row of ``participants.tsv`` (created with the usual columns)."""
    path = Path(bids_dir) / "participants.tsv"
    if path.is_file():
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    else:
        df = pd.DataFrame(columns=PARTICIPANT_COLUMNS)
    for k in values:
        if k not in df.columns:
            df[k] = "n/a"
    row = {c: "n/a" for c in df.columns} | {"participant_id": pid}
    hit = df["participant_id"] == pid
    if hit.any():
        row = df[hit].iloc[0].to_dict()
    row.update({k: str(v) for k, v in values.items() if v is not None})
    df = pd.concat([df[~hit], pd.DataFrame([row])], ignore_index=True)
    df = df.sort_values("participant_id").fillna("n/a")
    df.to_csv(path, sep="\t", index=False)
    return path


def write_dataset_description(bids_dir: Path) -> None:
    path = Path(bids_dir) / "dataset_description.json"
    if not path.is_file():
        desc = {
            "Name": Path(bids_dir).resolve().name,
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "qsmvbm-bidsify", "Description": "dcm2niix output to BIDS"}],
        }
        path.write_text(json.dumps(desc, indent=2) + "\n")


def bidsify(
    source: Path, bids_dir: Path, subject: str, participant: dict | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Convert one subject: ``source`` is a DICOM folder or a dcm2niix output folder.

    Returns the report table and the problems that make the subject unusable for this workflow
    (empty when it has a multi-echo GRE and one T1w). Writes ``sourcedata/qsmvbm-bidsify/
    <pid>_report.tsv`` and, for DICOM, the dcm2niix log beside it.
    """
    pid = subject if subject.startswith("sub-") else f"sub-{subject}"
    check_subject_id(pid, "--subject")
    source, bids_dir = Path(source), Path(bids_dir)
    if not source.is_dir():
        raise BidsInputError(f"{source}: no such folder")
    if (bids_dir / pid).exists():
        raise BidsInputError(f"{bids_dir / pid}: already exists; remove it to convert again")
    logdir = bids_dir / "sourcedata" / "qsmvbm-bidsify"
    with tempfile.TemporaryDirectory() as tmp:
        folder = source
        if _is_dicom_folder(source):
            folder = Path(tmp) / "dcm2niix"
            log = run_dcm2niix(source, folder)
            logdir.mkdir(parents=True, exist_ok=True)
            (logdir / f"{pid}_dcm2niix.log").write_text(log)
        images = read_conversion(folder)
        if not images:
            raise BidsInputError(f"{source}: no NIfTI images found")
        plan = classify(images)
        write_subject(plan, bids_dir, pid)
    write_dataset_description(bids_dir)
    update_participants(bids_dir, pid, participant or {})
    table = report_table(images, bids_dir)
    logdir.mkdir(parents=True, exist_ok=True)
    table.to_csv(logdir / f"{pid}_report.tsv", sep="\t", index=False)
    problems = []
    if not plan["megre"]:
        problems.append(
            "no multi-echo GRE with magnitude and phase of every echo"
            + (
                " (the phase-difference field map in fmap/ can stand in: bids_filters.megre "
                "{suffix: phasediff})"
                if any(s == "phasediff" for s, _ in plan["fmap"])
                else ""
            )
        )
    elif len(plan["megre"]) > 1:
        problems.append(
            f"{len(plan['megre'])} multi-echo GRE series: choose one with bids_filters.megre"
        )
    else:
        try:
            megre_metadata(bids_dir, pid, plan["megre"][0]["entities"] or None)
        except BidsInputError as e:
            problems.append(f"the converted GRE fails the input check: {e}")
    if not plan["t1w"]:
        problems.append("no T1w image")
    elif len(plan["t1w"]) > 1:
        problems.append(f"{len(plan['t1w'])} T1w images: choose one with bids_filters.t1w")
    return table, problems


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="qsmvbm-bidsify",
        description="Convert one subject's DICOM folder (with the dcm2niix package) or dcm2niix "
        "output folder into this workflow's BIDS input layout: multi-echo GRE as "
        "*_echo-<n>_part-mag|phase_MEGRE, the T1w, phase-difference field maps under fmap/; "
        "participants.tsv and dataset_description.json created or updated; a report of every "
        "image under sourcedata/qsmvbm-bidsify/.",
    )
    p.add_argument("source", type=Path, help="DICOM folder or dcm2niix output folder")
    p.add_argument("bids_dir", type=Path, help="BIDS folder (created if missing)")
    p.add_argument("--subject", required=True, help="participant label (e.g. 01 or sub-01)")
    p.add_argument("--group", help="group label for participants.tsv (e.g. ALS, NC)")
    p.add_argument("--age", type=float, help="age in years for participants.tsv")
    p.add_argument("--sex", help="sex for participants.tsv (e.g. F, M)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Exit status: 0 converted and usable, 1 converted but not usable as it stands (the reasons
    printed), 2 bad arguments or input."""
    args = parse_args(argv)
    values = {"group": args.group, "age": args.age, "sex": args.sex}
    if args.age is not None:
        values["age"] = f"{args.age:g}"
    try:
        table, problems = bidsify(args.source, args.bids_dir, args.subject, values)
    except (BidsInputError, OSError) as e:
        print(f"qsmvbm-bidsify: {e}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.drop(columns=["note"]).to_string(index=False))
    for _, row in table[table["note"] != "n/a"].iterrows():
        print(f"  {row['source']}: {row['note']}")
    if args.group is None:
        print("NOTE: no --group given; fill the group column of participants.tsv before a run")
    if problems:
        for p in problems:
            print(f"qsmvbm-bidsify: {args.subject}: {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
