"""Bad input gets a clear error naming the file and the problem."""

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qsmvbm.bids import (
    BidsInputError,
    detect_phase_units,
    load_megre,
    megre_metadata,
    phase_to_radians,
    read_participants,
)


@pytest.fixture()
def one_subject(tiny_cohort, tmp_path):
    """A copy of one simulated subject to corrupt."""
    pid = "sub-NC001"
    shutil.copytree(tiny_cohort / pid, tmp_path / pid)
    shutil.copy(tiny_cohort / "participants.tsv", tmp_path / "participants.tsv")
    return tmp_path, pid, tmp_path / pid / "anat"


def _edit_json(path, **changes):
    meta = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    path.write_text(json.dumps(meta))


def test_valid_subject_loads(one_subject):
    bids, pid, _ = one_subject
    gre = load_megre(bids, pid)
    assert gre.mag.shape[-1] == 4 and gre.phase.dtype == np.float32


def test_missing_echo(one_subject):
    bids, pid, anat = one_subject
    for part in ("mag", "phase"):
        (anat / f"{pid}_echo-2_part-{part}_MEGRE.nii.gz").unlink()
    with pytest.raises(BidsInputError, match=r"missing echo\(es\) \[2\]"):
        megre_metadata(bids, pid)


def test_phase_without_magnitude(one_subject):
    bids, pid, anat = one_subject
    (anat / f"{pid}_echo-3_part-mag_MEGRE.nii.gz").unlink()
    with pytest.raises(BidsInputError, match="echo 3 has no part-mag file") as e:
        megre_metadata(bids, pid)
    assert "echo-3_part-phase" in str(e.value)


def test_mismatched_shapes(one_subject):
    bids, pid, anat = one_subject
    f = anat / f"{pid}_echo-2_part-mag_MEGRE.nii.gz"
    img = nib.load(f)
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.int16), img.affine), f)
    with pytest.raises(BidsInputError, match=r"echo-2_part-mag_MEGRE.nii.gz: shape \(10, 10, 10\) differs"):
        megre_metadata(bids, pid)


def test_mismatched_affine(one_subject):
    bids, pid, anat = one_subject
    f = anat / f"{pid}_echo-4_part-phase_MEGRE.nii.gz"
    img = nib.load(f)
    aff = img.affine.copy()
    aff[0, 3] += 5
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff), f)
    with pytest.raises(BidsInputError, match="echo-4_part-phase_MEGRE.nii.gz: affine differs"):
        megre_metadata(bids, pid)


def test_no_echo_time(one_subject):
    bids, pid, anat = one_subject
    for part in ("mag", "phase"):
        _edit_json(anat / f"{pid}_echo-3_part-{part}_MEGRE.json", EchoTime=None)
    with pytest.raises(BidsInputError, match="echo-3_part-phase_MEGRE.nii.gz: no EchoTime"):
        megre_metadata(bids, pid)


def test_echo_time_in_ms(one_subject):
    bids, pid, anat = one_subject
    _edit_json(anat / f"{pid}_echo-1_part-phase_MEGRE.json", EchoTime=3.0)
    with pytest.raises(BidsInputError, match="not in seconds"):
        megre_metadata(bids, pid)


def test_non_increasing_echo_times(one_subject):
    bids, pid, anat = one_subject
    _edit_json(anat / f"{pid}_echo-4_part-phase_MEGRE.json", EchoTime=0.001)
    with pytest.raises(BidsInputError, match="do not increase"):
        megre_metadata(bids, pid)


def test_missing_field_strength(one_subject):
    bids, pid, anat = one_subject
    for f in anat.glob("*MEGRE.json"):
        _edit_json(f, MagneticFieldStrength=None)
    with pytest.raises(BidsInputError, match="no MagneticFieldStrength"):
        megre_metadata(bids, pid)


def test_nans(one_subject):
    bids, pid, anat = one_subject
    f = anat / f"{pid}_echo-2_part-phase_MEGRE.nii.gz"
    img = nib.load(f)
    data = phase_to_radians(np.asarray(img.dataobj), "scanner_pm4096")
    data[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), f)
    with pytest.raises(BidsInputError, match=r"echo-2_part-phase_MEGRE.nii.gz: 1 NaN"):
        load_megre(bids, pid)


def test_phase_units_detection_and_scaling():
    rng = np.random.default_rng(0)
    rad = rng.uniform(-np.pi, np.pi, 1000).astype(np.float32)
    assert detect_phase_units(rad) == "radians"
    u12 = np.rint((rad + np.pi) / (2 * np.pi) * 4096) % 4096
    assert detect_phase_units(u12) == "scanner_0_4095"
    back = phase_to_radians(u12, "scanner_0_4095")
    assert np.abs(np.angle(np.exp(1j * (back - rad)))).max() < 2 * np.pi / 4096
    s13 = np.rint(rad / np.pi * 4096).clip(-4096, 4095)
    assert detect_phase_units(s13) == "scanner_pm4096"
    with pytest.raises(BidsInputError, match="neither radians nor a scanner range"):
        detect_phase_units(rad * 1000)


@pytest.mark.parametrize("bad_id", ["sub-01_x", "sub-../etc", "01", "sub-a b"])
def test_unsafe_subject_ids(tmp_path, bad_id):
    pd.DataFrame({"participant_id": ["sub-01", bad_id], "group": ["ALS", "NC"]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    with pytest.raises(BidsInputError, match="not a safe BIDS id"):
        read_participants(tmp_path)


def test_wrong_group_labels(tmp_path):
    pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"], "group": ["ALS", "control", "NC"]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    with pytest.raises(BidsInputError, match=r"participants.tsv: column 'group' has values outside \['ALS', 'NC'\]: sub-02='control'"):
        read_participants(tmp_path)


def test_missing_participants_and_columns(tmp_path):
    with pytest.raises(BidsInputError, match="participants.tsv is missing"):
        read_participants(tmp_path)
    pd.DataFrame({"participant_id": ["sub-01"]}).to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    with pytest.raises(BidsInputError, match="no column 'group'"):
        read_participants(tmp_path)
