"""qsmvbm-bidsify: DICOM / dcm2niix output to the workflow's BIDS layout (issue 17, item 4)."""

import gzip
import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qsmvbm.bids import BidsInputError, load_megre, megre_metadata, read_data, t1w_file
from qsmvbm.bidsify import bidsify, image_part, main

from .conftest import ROOT, run_qsmvbm

XA30 = ROOT / "tests" / "data" / "real" / "xa30"
TE = (0.004, 0.0085, 0.013)


def _gunzip_dicoms(dest):
    dest.mkdir()
    for gz in sorted((XA30 / "dicom").glob("*.dcm.gz")):
        (dest / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    return dest


def test_real_siemens_dicom_to_bids(tmp_path, capsys):
    """A real Siemens XA30 session (MPRAGE and a dual-echo phase-difference field map, DICOM from
    dcm_qa_xa30) through the dcm2niix package: the T1w equals dcm2niix's reference conversion,
    the field map goes to fmap/ with its echo times, and the subject is reported as unusable
    for QSM (no phase of each echo), with exit status 1."""
    dicom = _gunzip_dicoms(tmp_path / "dicom")
    bids = tmp_path / "bids"
    status = main([str(dicom), str(bids), "--subject", "01", "--group", "NC", "--age", "30"])
    out = capsys.readouterr()
    assert status == 1
    assert "no multi-echo GRE" in out.err
    t1 = t1w_file(bids, "sub-01")
    ref = nib.load(XA30 / "5_anat-T1w_acq-tfl.nii.gz")
    got = nib.load(t1)
    assert np.array_equal(np.asanyarray(got.dataobj), np.asanyarray(ref.dataobj))
    assert np.allclose(got.affine, ref.affine)
    assert json.loads(t1.with_suffix("").with_suffix(".json").read_text())["InversionTime"] == 0.9
    diff = json.loads((bids / "sub-01" / "fmap" / "sub-01_phasediff.json").read_text())
    assert (diff["EchoTime1"], diff["EchoTime2"]) == (0.01, 0.01246)
    for k in (1, 2):
        assert (bids / "sub-01" / "fmap" / f"sub-01_magnitude{k}.nii.gz").is_file()
    report = pd.read_csv(
        bids / "sourcedata" / "qsmvbm-bidsify" / "sub-01_report.tsv",
        sep="\t",
        keep_default_na=False,
    )
    assert sorted(report["role"]) == ["T1w", "fmap", "fmap", "fmap"]
    assert "suffix: phasediff" in " ".join(report["note"])
    participants = pd.read_csv(
        bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    assert participants.to_dict("records") == [
        {"participant_id": "sub-01", "group": "NC", "age": "30", "sex": "n/a"}
    ]
    assert json.loads((bids / "dataset_description.json").read_text())["DatasetType"] == "raw"
    validator = shutil.which("bids-validator-deno") or str(
        ROOT / ".venv" / "bin" / "bids-validator-deno"
    )
    r = subprocess.run([validator, "--json", str(bids)], capture_output=True, text=True)
    issues = json.loads(r.stdout)["issues"]["issues"]
    assert not [i for i in issues if i["severity"] == "error"], issues


def _head(shape=(24, 26, 20)):
    """A smooth positive magnitude and a wrapped phase with a field that grows with TE."""
    g = np.indices(shape).astype(np.float32)
    c = [(n - 1) / 2 for n in shape]
    r2 = sum(((g[i] - c[i]) / (0.4 * shape[i])) ** 2 for i in range(3))
    mag = (1000 * np.exp(-r2)).astype(np.float32)
    field = 2 * np.pi * 40.0 * (g[0] - c[0]) / shape[0]  # rad/s per voxel ramp, 40 Hz across
    rng = np.random.default_rng(0)
    offset = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
    return mag, field, offset


def _write(folder, stem, data, affine, meta):
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), folder / f"{stem}.nii.gz")
    (folder / f"{stem}.json").write_text(json.dumps(meta))


def _siemens_series(folder, number, protocol, mag, phase_int, affine, part):
    """Magnitude (series N) or phase (series N+1) of a Siemens multi-echo GRE as dcm2niix writes
    them: ``<series>_<protocol>_e<n>[_ph]`` with ImageType M or P."""
    for n, te in enumerate(TE, start=1):
        meta = {
            "Manufacturer": "Siemens",
            "MagneticFieldStrength": 3,
            "SeriesNumber": number,
            "ProtocolName": protocol,
            "ScanningSequence": "GR",
            "MRAcquisitionType": "3D",
            "EchoNumber": n,
            "EchoTime": te,
            "ImageType": ["ORIGINAL", "PRIMARY", "M" if part == "mag" else "P", "ND"],
        }
        data = mag[..., n - 1] if part == "mag" else phase_int[..., n - 1]
        suffix = "" if part == "mag" else "_ph"
        _write(folder, f"{number}_{protocol}_e{n}{suffix}", data, affine, meta)


def _megre(seed):
    mag, field, offset = _head()
    rng = np.random.default_rng(seed)
    mags = np.stack([mag * np.exp(-te / 0.04) for te in TE], -1).astype(np.float32)
    phase = np.stack([np.angle(np.exp(1j * (offset + field * te))) for te in TE], -1)
    phase = phase + rng.normal(0, 0.01, phase.shape)
    phase_int = np.rint(np.angle(np.exp(1j * phase)) / np.pi * 4096).clip(-4096, 4095)
    return mags, phase_int.astype(np.int16)


def test_siemens_megre_runs_are_paired_by_series(tmp_path):
    """Two acquisitions of one multi-echo GRE protocol (magnitude series 10 and 12, phase series 11
    and 13), a T1w, a single-echo GRE and a 4D BOLD run: the two GRE runs become run-1 and run-2 with
    the right magnitude/phase pairs, the rest is reported and left out; the loader reads run 2 back
    with its echo times, field strength and the scanner's integer phase as radians."""
    affine = np.diag([1.2, 1.2, 1.5, 1.0])
    src = tmp_path / "dcm2niix"
    runs = {}
    for k, number in enumerate((10, 12)):
        mags, phase_int = _megre(seed=k)
        runs[k + 1] = (mags, phase_int)
        _siemens_series(src, number, "gre_qsm", mags, None, affine, "mag")
        _siemens_series(src, number + 1, "gre_qsm", None, phase_int, affine, "phase")
    t1_meta = {
        "SeriesNumber": 3,
        "ProtocolName": "t1_mprage",
        "ScanningSequence": "GR\\IR",
        "InversionTime": 0.9,
        "MRAcquisitionType": "3D",
        "EchoTime": 0.00241,
        "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
    }
    _write(src, "3_t1_mprage", np.ones((30, 30, 30), np.float32), np.eye(4), t1_meta)
    loc = {
        "SeriesNumber": 1,
        "ProtocolName": "localizer",
        "ScanningSequence": "GR",
        "EchoTime": 0.004,
    }
    _write(src, "1_localizer", np.ones((8, 8, 3), np.float32), np.eye(4), loc)
    _write(
        src,
        "1_localizer_ph",
        np.zeros((8, 8, 3), np.float32),
        np.eye(4),
        loc | {"ImageType": ["P"]},
    )
    swi = {
        "SeriesNumber": 14,
        "ProtocolName": "gre_qsm",
        "ScanningSequence": "GR",
        "EchoTime": TE[2],
    }
    swi["ImageType"] = ["DERIVED", "PRIMARY", "SWI", "NORM", "DIS2D"]
    _write(src, "14_gre_qsm_SWI", np.ones((24, 26, 20), np.float32), affine, swi)
    bold = {"SeriesNumber": 5, "ProtocolName": "rest", "ScanningSequence": "EP", "EchoTime": 0.03}
    _write(src, "5_rest", np.ones((8, 8, 3, 4), np.float32), np.eye(4), bold)

    bids = tmp_path / "bids"
    table, problems = bidsify(src, bids, "p1", {"group": "ALS"})
    assert problems == ["2 multi-echo GRE series: choose one with bids_filters.megre"]
    roles = dict(zip(table["source"], table["role"]))
    assert roles["3_t1_mprage.nii.gz"] == "T1w"
    assert roles["1_localizer_ph.nii.gz"] == "skipped" and roles["5_rest.nii.gz"] == "skipped"
    notes = dict(zip(table["source"], table["note"]))
    assert "one echo only" in notes["1_localizer_ph.nii.gz"]
    assert "4D image" in notes["5_rest.nii.gz"]
    assert (
        roles["14_gre_qsm_SWI.nii.gz"] == "skipped" and "DERIVED" in notes["14_gre_qsm_SWI.nii.gz"]
    )
    assert table.loc[table["source"] == "13_gre_qsm_e2_ph.nii.gz", "output"].item() == (
        "sub-p1/anat/sub-p1_run-2_echo-2_part-phase_MEGRE.nii.gz"
    )
    for run in (1, 2):
        meta = megre_metadata(bids, "sub-p1", {"run": str(run)})
        assert meta["echo_times_s"] == list(TE) and meta["field_strength_t"] == 3
        gre = load_megre(bids, "sub-p1", filters={"run": str(run)})
        mags, phase_int = runs[run]
        assert gre.phase_units == "scanner_pm4096"
        assert np.array_equal(gre.mag, mags)
        assert np.allclose(
            np.angle(np.exp(1j * (gre.phase - phase_int * np.pi / 4096))), 0, atol=1e-5
        )


def test_real_imaginary_pairs_become_magnitude_and_phase(tmp_path):
    """A GE-style series exported as real and imaginary images (dcm2niix's _real / _imaginary):
    written as magnitude and phase [rad], which the loader reads back as |z| and arg z."""
    mags, phase_int = _megre(seed=3)
    z = mags * np.exp(1j * phase_int * np.pi / 4096)
    src = tmp_path / "dcm2niix"
    for n, te in enumerate(TE, start=1):
        meta = {
            "Manufacturer": "GE",
            "MagneticFieldStrength": 3,
            "SeriesNumber": 7,
            "SeriesDescription": "swan",
            "ScanningSequence": "GR",
            "EchoNumber": n,
            "EchoTime": te,
        }
        for part, data in (("real", z.real), ("imaginary", z.imag)):
            tokens = ["ORIGINAL", "PRIMARY", part.upper()]
            _write(
                src,
                f"7_swan_e{n}_{part}",
                data[..., n - 1].astype(np.float32),
                np.eye(4),
                meta | {"ImageType": tokens},
            )
    t1 = {"SeriesNumber": 2, "ScanningSequence": "GR\\IR", "InversionTime": 0.45, "EchoTime": 0.003}
    _write(src, "2_bravo", np.ones((30, 30, 30), np.float32), np.eye(4), t1)
    bids = tmp_path / "bids"
    table, problems = bidsify(src, bids, "sub-ge1")
    assert problems == []
    gre = load_megre(bids, "sub-ge1")
    assert gre.phase_units == "radians"
    assert np.allclose(gre.mag, np.abs(z), rtol=1e-5, atol=1e-3)
    inside = np.abs(z) > 1
    assert np.allclose(np.angle(np.exp(1j * (gre.phase - np.angle(z))))[inside], 0, atol=1e-4)
    assert set(table["role"]) == {"megre", "T1w"}


@pytest.mark.parametrize(
    "image_type, name, part",
    [
        (["ORIGINAL", "PRIMARY", "M", "ND"], "10_gre_e1", "mag"),
        (["ORIGINAL", "PRIMARY", "P", "ND"], "11_gre_e1_ph", "phase"),
        (["ORIGINAL", "PRIMARY", "PHASE"], "4_swi_e2", "phase"),
        (["ORIGINAL", "PRIMARY", "P_FFE", "P"], "301_qsm_e3", "phase"),
        (["ORIGINAL", "PRIMARY", "M_FFE", "M"], "301_qsm_e3", "mag"),
        ([], "7_swan_e1_ph", "phase"),
        (["ORIGINAL", "PRIMARY", "REAL"], "7_swan_e1_real", "real"),
        ([], "7_swan_e1_imaginary", "imag"),
    ],
)
def test_image_part_from_vendor_image_types(tmp_path, image_type, name, part):
    assert image_part({"ImageType": image_type}, tmp_path / f"{name}.nii.gz") == part


def test_existing_subject_and_missing_source_are_refused(tmp_path):
    (tmp_path / "bids" / "sub-01").mkdir(parents=True)
    assert main([str(tmp_path), str(tmp_path / "bids"), "--subject", "01"]) == 2
    assert main([str(tmp_path / "nothing"), str(tmp_path / "b2"), "--subject", "01"]) == 2


@pytest.fixture(scope="module")
def xa30_bids(tmp_path_factory):
    """The real XA30 session converted by qsmvbm-bidsify from its DICOM."""
    tmp = tmp_path_factory.mktemp("xa30")
    dicom = _gunzip_dicoms(tmp / "dicom")
    bidsify(dicom, tmp / "bids", "01", {"group": "NC", "age": "30"})
    return tmp / "bids"


def test_real_field_map_is_read_as_a_two_echo_gre(xa30_bids):
    """``bids_filters.megre {suffix: phasediff}``: the field map's magnitudes and phase difference as
    two echoes (EchoTime1/2 of the phasediff sidecar; echo 1's phase 0), the phase difference in the
    scanner's -4096..4095 convention, copied by qsmvbm-bidsify exactly as dcm2niix wrote it."""
    from qsmvbm.bids import missing_inputs

    f = {"suffix": "phasediff"}
    why = missing_inputs(xa30_bids, "sub-01")
    assert "no multi-echo GRE" in why and "suffix: phasediff" in why
    assert missing_inputs(xa30_bids, "sub-01", megre_filters=f) is None
    gre = load_megre(xa30_bids, "sub-01", filters=f)
    assert list(gre.echo_times_s) == [0.01, 0.01246] and gre.field_strength_t == 3
    assert gre.phase_units == "scanner_pm4096"
    raw = read_data(xa30_bids / "sub-01" / "fmap" / "sub-01_phasediff.nii.gz")
    assert np.array_equal(raw, np.round(raw)) and raw.min() == -4096
    assert np.all(gre.phase[..., 0] == 0) and np.abs(gre.phase[..., 1]).max() <= np.pi
    assert gre.files[0]["phase"] is None
    with pytest.raises(BidsInputError, match="phasediff"):
        megre_metadata(xa30_bids, "sub-01", {"suffix": "T2starw"})


def test_real_session_through_the_participant_level(xa30_bids, tmp_path):
    """Issue 17's real-scan acceptance on the only real T1w + GRE phase pair here: the default chain
    (``qsmvbm ... participant``, T1w brain mask brought to the GRE) on the XA30 session, its GRE the
    2D dual-echo field map (3.4 mm, TE 10/12.46 ms). Measured: mask Dice with the T1w mask 0.985,
    mask/TIV 0.90, TIV 1,743 mL, GM/TIV 0.49; chi (ppm) pallidum L/R +0.084/+0.111, putamen
    +0.022/+0.033, caudate +0.018/+0.033, substantia nigra +0.085/+0.059. participants.tsv has no
    patient yet: at the participant level that is a note, not a stop."""

    from qsmvbm import atlas
    from qsmvbm.layout import Layout

    out = tmp_path / "out"
    r = run_qsmvbm(
        [
            xa30_bids,
            out,
            "participant",
            "--cores",
            "2",
            "--bids_filters.megre",
            "{suffix: phasediff}",
        ]
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no group 'ALS' row" in r.stdout + r.stderr
    lay = Layout(out)
    chi_json = json.loads(lay.subject("chi_json", "sub-01").read_text())
    plaus = chi_json["MaskPlausibility"]
    assert plaus["dice_t1"] > 0.95 and 0.8 < plaus["mask_tiv_ratio"] < 1.0, plaus
    assert chi_json["FinalMaskVoxels"] > 0.75 * chi_json["MaskVoxelsBeforePhaseQuality"]
    vol = json.loads(lay.subject("volumes", "sub-01").read_text())
    assert 1400 < vol["TIV_ml"] < 2000 and 0.4 < vol["GM_ml"] / vol["TIV_ml"] < 0.6, vol
    img = nib.load(lay.subject("template_chi", "sub-01"))
    chi = img.get_fdata()
    labels = atlas.aal3_on_grid(chi.shape, img.affine)

    def roi(names):
        return float(chi[atlas.region_mask(labels, names)].mean())

    pallidum, putamen = roi(["Pallidum_L", "Pallidum_R"]), roi(["Putamen_L", "Putamen_R"])
    assert pallidum > 0.05 and pallidum > putamen > 0, (pallidum, putamen)
    assert roi(["Caudate_L", "Caudate_R"]) > 0 and roi(["SN_L", "SN_R"]) > 0.03


def test_field_map_without_its_echo_times_is_an_error_naming_the_file(xa30_bids, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(xa30_bids, bids)
    js = bids / "sub-01" / "fmap" / "sub-01_phasediff.json"
    meta = json.loads(js.read_text())
    del meta["EchoTime1"]
    js.write_text(json.dumps(meta))
    with pytest.raises(BidsInputError, match="sub-01_phasediff.*no EchoTime1"):
        megre_metadata(bids, "sub-01", {"suffix": "phasediff"})
    meta["EchoTime1"] = 10.0  # ms, not s
    js.write_text(json.dumps(meta))
    with pytest.raises(BidsInputError, match="EchoTime1 10.0 is not in seconds"):
        megre_metadata(bids, "sub-01", {"suffix": "phasediff"})


def test_uncompressed_dcm2niix_output_is_copied_exactly(tmp_path):
    """dcm2niix's default output is .nii: written as .nii.gz with the same stored values and scale
    slope (an int16 phase with slope 2 and intercept -4096 stays on the integers)."""
    src = tmp_path / "dcm2niix"
    src.mkdir()
    img = nib.Nifti1Image(np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(2.0, -4096.0)
    nib.save(img, src / "3_t1_mprage.nii")
    meta = {
        "SeriesNumber": 3,
        "ScanningSequence": "GR\\\\IR",
        "InversionTime": 0.9,
        "EchoTime": 0.003,
    }
    (src / "3_t1_mprage.json").write_text(json.dumps(meta))
    bidsify(src, tmp_path / "bids", "01")
    out = nib.load(tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    assert np.array_equal(out.get_fdata(), nib.load(src / "3_t1_mprage.nii").get_fdata())
    assert out.dataobj.slope == 2.0 and out.dataobj.inter == -4096.0
