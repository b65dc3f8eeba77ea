"""Bad input gets a clear error naming the file and the problem."""

import json
import shutil
from pathlib import Path

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

from .conftest import run_qsmvbm


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
    with pytest.raises(
        BidsInputError, match=r"echo-2_part-mag_MEGRE.nii.gz: shape \(10, 10, 10\) differs"
    ):
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
    for part in ("mag", "phase"):
        _edit_json(anat / f"{pid}_echo-4_part-{part}_MEGRE.json", EchoTime=0.001)
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
    # any other scale: a cycle that the values fill evenly is taken as the stored range
    assert detect_phase_units(rad * 1000) == "rescaled"
    with pytest.raises(BidsInputError, match="scaling is ambiguous"):
        detect_phase_units(rng.rayleigh(300.0, 1000))  # magnitude-like values
    deg = np.rint(np.degrees(rad)).astype(np.int16)
    assert detect_phase_units(deg) == "degrees"


@pytest.mark.parametrize("bad_id", ["sub-01_x", "sub-../etc", "01", "sub-a b"])
def test_unsafe_subject_ids(tmp_path, bad_id):
    pd.DataFrame({"participant_id": ["sub-01", bad_id], "group": ["ALS", "NC"]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False
    )
    with pytest.raises(BidsInputError, match="not a safe BIDS id"):
        read_participants(tmp_path)


def test_other_groups_are_left_out_and_missing_groups_named(tmp_path):
    """A third group (e.g. mimics) is not processed and is listed for the log; a configured group
    with no rows (labels not matching the file) stops the run with the file's values."""
    pd.DataFrame(
        {"participant_id": ["sub-01", "sub-02", "sub-03"], "group": ["ALS", "PLS", "NC"]}
    ).to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    df = read_participants(tmp_path)
    assert list(df.participant_id) == ["sub-01", "sub-03"]
    assert df.attrs["other_groups"] == {"sub-02": "PLS"}
    with pytest.raises(
        BidsInputError,
        match=r"participants.tsv: column 'group' has no 'control' rows \(its values: ALS, NC, PLS\)",
    ):
        read_participants(tmp_path, "group", ("ALS", "control"))


def test_missing_participants_and_columns(tmp_path):
    with pytest.raises(BidsInputError, match="participants.tsv is missing"):
        read_participants(tmp_path)
    pd.DataFrame({"participant_id": ["sub-01"]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False
    )
    with pytest.raises(BidsInputError, match="no column 'group'"):
        read_participants(tmp_path)


# ---- a corpus of bad or unusual GRE inputs, each made from the simulator's output by a small function ----


def _rewrite(path, fn):
    """Replace a NIfTI file's data by ``fn(data)`` (header affine kept)."""
    img = nib.load(path)
    data = fn(np.asarray(img.dataobj, dtype=np.float32))
    nib.save(nib.Nifti1Image(data, img.affine), path)


def _phase_files(anat, pid):
    return sorted(anat.glob(f"{pid}_echo-*_part-phase_MEGRE.nii.gz"))


def _wrapped_diff(a, b):
    return np.abs(np.angle(np.exp(1j * (a.astype(np.float64) - b))))


def test_echo_time_as_text(one_subject):
    bids, pid, anat = one_subject
    _edit_json(anat / f"{pid}_echo-2_part-phase_MEGRE.json", EchoTime="8ms")
    with pytest.raises(
        BidsInputError, match=r"echo-2_part-phase_MEGRE.nii.gz: EchoTime '8ms' is not a number"
    ):
        megre_metadata(bids, pid)


def test_field_strength_differs_between_echoes(one_subject):
    bids, pid, anat = one_subject
    for part in ("mag", "phase"):
        _edit_json(anat / f"{pid}_echo-3_part-{part}_MEGRE.json", MagneticFieldStrength=7.0)
    with pytest.raises(
        BidsInputError, match=r"MagneticFieldStrength differs.*3 T in .*7 T in .*echo-3"
    ):
        megre_metadata(bids, pid)


def test_echo_time_differs_between_magnitude_and_phase(one_subject):
    bids, pid, anat = one_subject
    _edit_json(anat / f"{pid}_echo-2_part-mag_MEGRE.json", EchoTime=0.0081)
    with pytest.raises(
        BidsInputError,
        match="echo-2_part-phase_MEGRE.nii.gz: EchoTime 0.008 s differs from its magnitude",
    ):
        megre_metadata(bids, pid)


def test_phase_in_int16_degrees_is_read_as_degrees(one_subject):
    bids, pid, anat = one_subject
    ref = load_megre(bids, pid).phase
    for f in _phase_files(anat, pid):
        img = nib.load(f)
        rad = phase_to_radians(np.asarray(img.dataobj), "scanner_pm4096")
        nib.save(nib.Nifti1Image(np.rint(np.degrees(rad)).astype(np.int16), img.affine), f)
    gre = load_megre(bids, pid)
    assert gre.phase_units == "degrees"
    assert np.percentile(_wrapped_diff(gre.phase, ref), 99.9) <= np.radians(0.5) + 1e-3


def test_phase_at_an_arbitrary_scale_is_rescaled_by_its_range(one_subject):
    """As a public 7 T crop stores it (radians x 0.00117): the cycle is the range its wrapped values fill."""
    bids, pid, anat = one_subject
    ref = load_megre(bids, pid).phase
    for f in _phase_files(anat, pid):
        _rewrite(f, lambda d: phase_to_radians(d, "scanner_pm4096") * np.float32(0.00367 / np.pi))
    gre = load_megre(bids, pid)
    assert gre.phase_units == "rescaled" and gre.phase_period == pytest.approx(0.00734, rel=2e-3)
    assert np.percentile(_wrapped_diff(gre.phase, ref), 99) < 0.01


def test_phase_scale_override(one_subject):
    bids, pid, anat = one_subject
    ref = load_megre(bids, pid).phase
    for f in _phase_files(anat, pid):
        _rewrite(f, lambda d: phase_to_radians(d, "scanner_pm4096") * np.float32(1000.0))
    gre = load_megre(bids, pid, phase_scale=2000 * np.pi)
    assert gre.phase_units == "scale" and np.percentile(_wrapped_diff(gre.phase, ref), 99.9) < 1e-3


def test_phase_units_in_config_that_do_not_fit_the_values(one_subject):
    bids, pid, _ = one_subject
    with pytest.raises(BidsInputError, match=r"outside radians .* as qsm.phase_units says"):
        load_megre(bids, pid, phase_units="radians")


def test_magnitude_and_phase_swapped(one_subject):
    bids, pid, anat = one_subject
    for n in range(1, 5):
        mag = anat / f"{pid}_echo-{n}_part-mag_MEGRE.nii.gz"
        ph = anat / f"{pid}_echo-{n}_part-phase_MEGRE.nii.gz"
        tmp = anat / "swap.nii.gz"
        mag.rename(tmp)
        ph.rename(mag)
        tmp.rename(ph)
    with pytest.raises(
        BidsInputError,
        match=r"part-mag_MEGRE.nii.gz: magnitude image with negative values.*swapped",
    ):
        load_megre(bids, pid)


def test_phase_image_that_does_not_fill_its_range(one_subject):
    """A 'phase' file holding a smooth image (here: the magnitude, unsigned) is ambiguous, not a map."""
    bids, pid, anat = one_subject
    for n in range(1, 5):
        shutil.copy(
            anat / f"{pid}_echo-{n}_part-mag_MEGRE.nii.gz",
            anat / f"{pid}_echo-{n}_part-phase_MEGRE.nii.gz",
        )
    with pytest.raises(
        BidsInputError, match=r"echo-1_part-phase_MEGRE.nii.gz .*scaling is ambiguous"
    ):
        load_megre(bids, pid)


def test_truncated_gzip_names_the_file(one_subject):
    bids, pid, anat = one_subject
    f = anat / f"{pid}_echo-3_part-phase_MEGRE.nii.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        BidsInputError,
        match=r"echo-3_part-phase_MEGRE.nii.gz: cannot read the image data.*truncated",
    ):
        load_megre(bids, pid)


def test_single_echo(one_subject):
    bids, pid, anat = one_subject
    for n in (2, 3, 4):
        for f in anat.glob(f"{pid}_echo-{n}_*"):
            f.unlink()
    with pytest.raises(BidsInputError, match="only one echo"):
        megre_metadata(bids, pid)


def test_two_echoes_load(one_subject):
    bids, pid, anat = one_subject
    for n in (3, 4):
        for f in anat.glob(f"{pid}_echo-{n}_*"):
            f.unlink()
    assert load_megre(bids, pid).mag.shape[-1] == 2


def test_two_gre_runs_need_a_choice(one_subject):
    bids, pid, anat = one_subject
    for f in list(anat.glob(f"{pid}_echo-*_MEGRE.*")):
        for run in (1, 2):
            shutil.copy(f, anat / f.name.replace(f"{pid}_", f"{pid}_run-{run}_"))
        f.unlink()
    _rewrite(anat / f"{pid}_run-2_echo-1_part-mag_MEGRE.nii.gz", lambda d: d * 2)
    with pytest.raises(
        BidsInputError, match=r"2 MEGRE series \(run-1, run-2\); choose one with bids_filters.megre"
    ):
        megre_metadata(bids, pid)
    meta = megre_metadata(bids, pid, {"run": "2"})
    assert all("_run-2_" in f["mag"] for f in meta["files"]) and len(meta["files"]) == 4
    with pytest.raises(
        BidsInputError, match=r"no MEGRE series matches bids_filters.megre \{'run': '3'\}"
    ):
        megre_metadata(bids, pid, {"run": "3"})


def test_acq_entity_is_found(one_subject):
    bids, pid, anat = one_subject
    for f in list(anat.glob(f"{pid}_echo-*_MEGRE.*")):
        f.rename(anat / f.name.replace(f"{pid}_", f"{pid}_acq-qsm_"))
    assert len(load_megre(bids, pid).files) == 4


def test_same_echo_as_nii_and_nii_gz(one_subject):
    bids, pid, anat = one_subject
    f = anat / f"{pid}_echo-2_part-phase_MEGRE.nii.gz"
    nib.save(nib.load(f), anat / f"{pid}_echo-2_part-phase_MEGRE.nii")
    with pytest.raises(BidsInputError, match=r"echo 2 part-phase is also stored as"):
        megre_metadata(bids, pid)


def test_4d_multi_echo_file(one_subject):
    bids, pid, anat = one_subject
    f = anat / f"{pid}_echo-1_part-mag_MEGRE.nii.gz"
    img = nib.load(f)
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 3, -1), img.affine), f)
    with pytest.raises(
        BidsInputError,
        match=r"echo-1_part-mag_MEGRE.nii.gz: expected a 3D image per echo.*4D multi-echo",
    ):
        megre_metadata(bids, pid)


def test_two_t1w_images_need_a_choice(one_subject):
    from qsmvbm.bids import t1w_file

    bids, pid, anat = one_subject
    shutil.copy(anat / f"{pid}_T1w.nii.gz", anat / f"{pid}_run-2_T1w.nii.gz")
    with pytest.raises(BidsInputError, match=r"2 T1w images .*choose one with bids_filters.t1w"):
        t1w_file(bids, pid)
    assert t1w_file(bids, pid, {"run": "2"}).name == f"{pid}_run-2_T1w.nii.gz"
    assert t1w_file(bids, pid, {"run": None}).name == f"{pid}_T1w.nii.gz"


def test_header_only_participants(tmp_path):
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\n")
    with pytest.raises(BidsInputError, match="participants.tsv: no participants"):
        read_participants(tmp_path)


def _flip_header(path, flip_data: bool):
    """Mirror a T1w left-right through its header: the voxels reversed along x with the affine kept
    (``flip_data``), or the affine's first column negated with the voxels kept."""
    img = nib.load(path)
    data, aff = np.asarray(img.dataobj), img.affine.copy()
    if flip_data:
        data = data[::-1]
    else:
        aff[:, 0] *= -1
    nib.save(nib.Nifti1Image(data, aff), path)


@pytest.mark.parametrize("flip_data", [True, False])
def test_left_right_flipped_t1w_is_excluded(one_subject, flip_data):
    """A T1w whose header mirrors it passes every per-image check; against the GRE of the same
    session it fits better as its mirror image, and the subject is excluded naming both files."""
    from qsmvbm.inputs import check_subject_inputs

    bids, pid, anat = one_subject
    t1w = anat / f"{pid}_T1w.nii.gz"
    before = check_subject_inputs(bids, pid, t1w)
    assert before["ok"] and before["left_right"]["verdict"] != "mirrored", before
    _flip_header(t1w, flip_data)
    after = check_subject_inputs(bids, pid, t1w)
    assert not after["ok"] and after["left_right"]["verdict"] == "mirrored", after
    assert "left-right check failed" in after["reason"]
    assert f"{pid}_T1w.nii.gz" in after["reason"] and "echo-1_part-mag_MEGRE" in after["reason"]
    skipped = check_subject_inputs(bids, pid, t1w, left_right={"check": False})
    assert skipped["ok"] and skipped["left_right"] == {}


@pytest.fixture()
def session_dataset(tiny_cohort, tmp_path):
    """sub-NC001 as a dataset with sessions and inherited sidecars: ses-01 holds two GRE runs (run-2
    the subject's 4 echoes, run-1 its first 3) and a T1w, ses-02 another T1w; EchoTime lives in the
    root-level ``echo-<n>_MEGRE.json``, MagneticFieldStrength in ``sub-NC001/sub-NC001_MEGRE.json``;
    the GRE files have no sidecar of their own."""
    pid, src = "sub-NC001", tiny_cohort / "sub-NC001" / "anat"
    bids = tmp_path / "bids"
    ses1, ses2 = bids / pid / "ses-01" / "anat", bids / pid / "ses-02" / "anat"
    ses1.mkdir(parents=True)
    ses2.mkdir(parents=True)
    for n in range(1, 5):
        meta = json.loads((src / f"{pid}_echo-{n}_part-phase_MEGRE.json").read_text())
        (bids / f"echo-{n}_MEGRE.json").write_text(json.dumps({"EchoTime": meta["EchoTime"]}))
        for part in ("mag", "phase"):
            f = src / f"{pid}_echo-{n}_part-{part}_MEGRE.nii.gz"
            for run in (1, 2) if n < 4 else (2,):
                shutil.copy(f, ses1 / f"{pid}_ses-01_run-{run}_echo-{n}_part-{part}_MEGRE.nii.gz")
    (bids / pid / f"{pid}_MEGRE.json").write_text(json.dumps({"MagneticFieldStrength": 3.0}))
    for d, ses in ((ses1, "01"), (ses2, "02")):
        shutil.copy(src / f"{pid}_T1w.nii.gz", d / f"{pid}_ses-{ses}_T1w.nii.gz")
    (bids / "participants.tsv").write_text(
        "participant_id\tgroup\tage\tsex\nsub-NC001\tNC\t50\tF\n"
    )
    (bids / "dataset_description.json").write_text('{"Name": "sessions", "BIDSVersion": "1.10.0"}')
    return bids, pid


def test_sessions_runs_and_inherited_sidecars(session_dataset):
    from qsmvbm.bids import gre_session, megre_series, missing_inputs, series_listing, t1w_file

    bids, pid = session_dataset
    assert sorted(megre_series(bids, pid)) == ["ses-01_run-1", "ses-01_run-2"]
    with pytest.raises(BidsInputError, match="2 MEGRE series"):
        megre_metadata(bids, pid)
    run2 = {"run": "2"}
    meta = megre_metadata(bids, pid, run2)
    assert meta["echo_times_s"] == pytest.approx([0.003, 0.0085, 0.014, 0.0195], abs=0.003)
    assert len(meta["files"]) == 4 and meta["field_strength_t"] == 3.0
    assert all("/ses-01/anat/" in f["phase"] for f in meta["files"])
    assert len(load_megre(bids, pid, filters=run2).echo_times_s) == 4
    assert len(megre_metadata(bids, pid, {"run": "1"})["files"]) == 3
    # two T1w images in two sessions: the GRE's session decides
    with pytest.raises(BidsInputError, match="2 T1w images"):
        t1w_file(bids, pid)
    assert gre_session(bids, pid, run2) == "01"
    assert t1w_file(bids, pid, session="01").name == f"{pid}_ses-01_T1w.nii.gz"
    assert missing_inputs(bids, pid, None, run2) is None
    assert series_listing(bids, pid, run2) == (
        f"{pid}: 2 MEGRE series (ses-01_run-1, ses-01_run-2); used: ses-01_run-2"
    )
    # the file's own sidecar and a deeper one win over the inherited ones
    for part in ("mag", "phase"):
        f = Path(meta["files"][0][part])
        f.with_name(f.name.replace(".nii.gz", ".json")).write_text('{"EchoTime": 0.004}')
    assert megre_metadata(bids, pid, run2)["echo_times_s"][0] == 0.004


def test_sessions_dataset_through_the_participant_level(session_dataset, tmp_path):
    """Issue 21's acceptance: the dataset with sessions, two GRE runs (run 2 chosen in the config) and
    inherited sidecars runs; the pre-flight lists both runs and the one used."""

    from qsmvbm.layout import Layout

    bids, pid = session_dataset
    out = tmp_path / "out"
    r = run_qsmvbm([bids, out, "participant", "--cores", "2", "--bids_filters.megre", "{run: '2'}"])
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert f"NOTE: {pid}: 2 MEGRE series (ses-01_run-1, ses-01_run-2); used: ses-01_run-2" in log
    lay = Layout(out)
    check = json.loads(lay.subject("input_check", pid).read_text())
    text = json.dumps(check)
    assert "ses-01_run-2_echo-4_part-phase" in text and "run-1" not in text
    assert f"{pid}_ses-01_T1w" in text and "ses-02" not in text
    assert lay.subject("template_chi", pid).is_file()


def test_dataset_root_is_the_folder_of_the_innermost_subject_folder(tmp_path):
    from qsmvbm.bids import dataset_root

    f = tmp_path / "sub-archive" / "bids" / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz"
    assert dataset_root(f) == tmp_path / "sub-archive" / "bids"
    with pytest.raises(BidsInputError, match="not inside a sub-"):
        dataset_root(tmp_path / "x.nii.gz")


def test_scanner_phase_saved_again_with_a_scale_slope_is_still_recognised():
    """Integers -4096..4094 re-saved as int16 times a slope of 0.125 (as an early qsmvbm-bidsify did
    to the XA30 field map) land up to 0.06 off the integers: still the scanner's convention."""
    from qsmvbm.bids import detect_phase_storage

    rng = np.random.default_rng(0)
    ints = rng.integers(-2048, 2048, (20, 20, 20)) * 2.0
    off = np.round((ints + 0.9375) / 0.125) * 0.125 - 0.9375 + rng.uniform(-0.06, 0.06, ints.shape)
    assert np.abs(off - np.round(off)).max() > 0.05
    assert detect_phase_storage(off).units == "scanner_pm4096"
