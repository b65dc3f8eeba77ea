"""The cohort simulator: BIDS layout, determinism, physics, planted effects, configs."""

import json
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from qsmvbm.bids import load_megre, megre_metadata, read_participants
from qsmvbm.config import ConfigError
from qsmvbm.layout import truth_table
from qsmvbm.simulate.cohort import draw_participants, effect_multipliers
from qsmvbm.simulate.cohort_io import effect_mask_path, simulate_one, truth_dir, write_cohort_tables
from qsmvbm.simulate.settings import load_simulation_config
from qsmvbm.simulate.subject import load_true_transform, truth_paths
from qsmvbm.transforms import sample, world_coords

from .conftest import ROOT, TINY

BIDS_NAME = re.compile(r"^sub-[A-Za-z0-9]+(_echo-\d+_part-(mag|phase)_MEGRE|_T1w)\.(nii\.gz|json)$")


def test_bids_layout_and_sidecars(tiny_cohort, tiny_cfg):
    desc = json.loads((tiny_cohort / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"]
    parts = read_participants(tiny_cohort, "group", ("ALS", "NC"))
    assert list(parts.columns[:4]) == ["participant_id", "group", "age", "sex"]
    assert {"alsfrs_r", "disease_duration_months", "umn_score"} <= set(parts.columns)
    # controls have n/a clinical scores, patients have values in range
    nc = parts[parts.group == "NC"]
    als = parts[parts.group == "ALS"]
    assert nc["alsfrs_r"].isna().all() and als["alsfrs_r"].notna().all()
    assert "n/a" in (tiny_cohort / "participants.tsv").read_text()
    assert als["umn_score"].between(0, 16).all()
    for pid in parts.participant_id:
        files = sorted(p.name for p in (tiny_cohort / pid / "anat").iterdir())
        assert all(BIDS_NAME.match(f) for f in files), files
        assert len(files) == 2 * (2 * tiny_cfg["gre"]["n_echoes"] + 1)
        meta = megre_metadata(tiny_cohort, pid)
        tes = np.array(meta["echo_times_s"])
        expected = (
            tiny_cfg["gre"]["te1_ms"] + tiny_cfg["gre"]["delta_te_ms"] * np.arange(4)
        ) / 1000
        np.testing.assert_allclose(tes, expected)
        assert meta["field_strength_t"] == 3.0
        assert meta["shape"] == tiny_cfg["gre"]["matrix"]


def test_phase_stored_as_scanner_integers(tiny_cohort):
    pid = "sub-ALS001"
    raw = nib.load(tiny_cohort / pid / "anat" / f"{pid}_echo-2_part-phase_MEGRE.nii.gz")
    assert raw.get_data_dtype() == np.int16
    data = np.asarray(raw.dataobj)
    assert data.min() >= -4096 and data.max() <= 4095 and data.min() < -3000
    gre = load_megre(tiny_cohort, pid)
    assert gre.phase_units == "scanner_pm4096"
    assert gre.phase.min() >= -np.pi and gre.phase.max() < np.pi


def test_phase_matches_true_field(tiny_cohort, tiny_cfg):
    """Echo-to-echo phase difference equals 2 pi gamma B0 field dTE where the signal is strong."""
    pid = "sub-NC001"
    gre = load_megre(tiny_cohort, pid)
    tp = truth_paths(truth_dir(tiny_cohort), pid)
    field = nib.load(tp["total_field"]).get_fdata()
    mask = nib.load(tp["gre_mask"]).get_fdata() > 0
    dte = gre.echo_times_s[1] - gre.echo_times_s[0]
    dphi = np.angle(np.exp(1j * (gre.phase[..., 1] - gre.phase[..., 0])))
    expected = 2 * np.pi * 42.577478518e6 * 3.0 * field * 1e-6 * dte
    expected = np.angle(np.exp(1j * expected))
    err = np.angle(np.exp(1j * (dphi - expected)))[mask]
    assert np.median(np.abs(err)) < 0.05


def test_local_field_agrees_with_qsm_forward(tiny_cohort, tmp_path):
    """Independent forward model: qsm-forward's generate_bids on our true chi, via NIfTI files."""
    qf = pytest.importorskip("qsm_forward.qsm_forward")
    pid = "sub-ALS001"
    tp = truth_paths(truth_dir(tiny_cohort), pid)
    chi_img = nib.load(tp["chi"])
    chi = chi_img.get_fdata().astype(np.float32)
    mask = nib.load(tp["gre_mask"]).get_fdata() > 0
    vs = np.abs(np.diag(chi_img.affine)[:3])
    aff = np.diag([*vs, 1.0])
    nib.save(nib.Nifti1Image(chi, aff), tmp_path / "chi.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff), tmp_path / "mask.nii.gz")
    tissue = qf.TissueParams(
        chi=str(tmp_path / "chi.nii.gz"),
        mask=str(tmp_path / "mask.nii.gz"),
        seg=str(tmp_path / "mask.nii.gz"),
    )
    recon = qf.ReconParams(
        TEs=np.array([0.004]),
        B0=3,
        voxel_size=vs,
        peak_snr=np.inf,
        generate_phase_offset=False,
        generate_shim_field=False,
    )
    qf.generate_bids(tissue, recon, str(tmp_path / "qf"), save_field=True)
    theirs = nib.load(next((tmp_path / "qf").rglob("*_fieldmap-local.nii"))).get_fdata()[mask]
    ours = nib.load(tp["local_field"]).get_fdata()[mask]
    ours, theirs = ours - ours.mean(), theirs - theirs.mean()
    rel = np.sqrt(np.mean((ours - theirs) ** 2)) / np.sqrt(np.mean(theirs**2))
    assert rel < 1e-3, rel  # stated tolerance: 0.1% RMS (measured ~1e-7)


def test_background_field_is_large_and_not_uniform(tiny_cohort):
    tp = truth_paths(truth_dir(tiny_cohort), "sub-NC002")
    mask = nib.load(tp["gre_mask"]).get_fdata() > 0
    total = nib.load(tp["total_field"]).get_fdata()[mask]
    local = nib.load(tp["local_field"]).get_fdata()[mask]
    bg = total - local
    assert np.std(bg) > 5 * np.std(local)  # air/bone/cavities dominate the field
    assert np.ptp(bg) > 0.5  # ppm, varies across the brain


def test_determinism_and_independence_of_cohort_size(tiny_cohort, tiny_cfg, tmp_path):
    """Same seed -> same data; a subject's data does not depend on the cohort around it."""
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["groups"].append({"label": "PD", "n": 2, "male_fraction": 0.5, "clinical": False})
    cohort = write_cohort_tables(cfg, tmp_path)
    old = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    new = pd.read_csv(tmp_path / "participants.tsv", sep="\t")
    assert len(new) == len(old) + 2
    pd.testing.assert_frame_equal(old, new.iloc[: len(old)])
    simulate_one(cfg, tmp_path, "sub-NC002", cohort)
    for name in ("sub-NC002_echo-3_part-phase_MEGRE.nii.gz", "sub-NC002_T1w.nii.gz"):
        a = np.asarray(nib.load(tiny_cohort / "sub-NC002" / "anat" / name).dataobj)
        b = np.asarray(nib.load(tmp_path / "sub-NC002" / "anat" / name).dataobj)
        np.testing.assert_array_equal(a, b)
    p1 = draw_participants(tiny_cfg)
    p2 = draw_participants(tiny_cfg)
    pd.testing.assert_frame_equal(p1, p2)


def test_true_transform_is_diffeomorphic_and_maps_brain(tiny_cohort):
    tdir = truth_dir(tiny_cohort)
    info = json.loads(truth_paths(tdir, "sub-ALS002")["truth_json"].read_text())
    assert info["deformation_min_jacobian"] > 0.2
    tf = load_true_transform(tdir, "sub-ALS002")
    mask_img = nib.load(truth_paths(tdir, "sub-ALS002")["t1_mask"])
    world = world_coords(mask_img.shape, mask_img.affine)
    mni = tf.to_mni("T1w", world)
    from qsmvbm.templates import load_template

    tpl = load_template(2)
    warped_template_mask = sample(tpl.mask.astype(np.float32), tpl.affine, mni) > 0.5
    truth = mask_img.get_fdata() > 0
    dice = 2 * (truth & warped_template_mask).sum() / (truth.sum() + warped_template_mask.sum())
    assert dice > 0.97


def test_planted_effect_lands_where_configured(tiny_cohort, tiny_cfg):
    """The effect mask sits at the sphere inside the thalamus; the subject's true chi carries m * delta."""
    eff = pd.read_csv(truth_table(tiny_cohort, "effects"), sep="\t").iloc[0]
    centre = np.array([eff.centroid_x, eff.centroid_y, eff.centroid_z])
    assert np.linalg.norm(centre - [20, -17, 7]) < 5
    mask_img = nib.load(effect_mask_path(tiny_cohort, "thalamusR", 2))
    from qsmvbm.atlas import aal3_on_grid, region_mask

    labels = aal3_on_grid(mask_img.shape, mask_img.affine)
    m = mask_img.get_fdata() > 0
    assert region_mask(labels, "Thalamus_R")[m].all()
    # in subject space: chi inside the (warped) effect region exceeds the thalamus baseline by m * delta
    tdir = truth_dir(tiny_cohort)
    for pid in ("sub-ALS001", "sub-NC001"):
        info = json.loads(truth_paths(tdir, pid)["truth_json"].read_text())
        tf = load_true_transform(tdir, pid)
        chi_img = nib.load(truth_paths(tdir, pid)["chi"])
        mni = tf.to_mni("MEGRE", world_coords(chi_img.shape, chi_img.affine))
        w = sample(mask_img.get_fdata().astype(np.float32), mask_img.affine, mni) > 0.99
        thal = (
            sample(region_mask(labels, "Thalamus_R").astype(np.float32), mask_img.affine, mni)
            > 0.99
        )
        chi = chi_img.get_fdata()
        delta = (
            np.median(chi[w]) - np.median(chi[thal & ~w])
            if (thal & ~w).sum()
            else np.median(chi[w]) - info["tissue_chi_ppm"]["thalamus"]
        )
        planted = info["effect_multipliers"]["thalamusR"] * tiny_cfg["effects"][0]["chi_delta_ppm"]
        assert delta == pytest.approx(planted, abs=0.01), (pid, delta, planted)


def test_clinical_link_hits_target_correlation():
    cfg = load_simulation_config(ROOT / "config" / "simulation" / "study.yaml")
    parts = draw_participants(cfg)
    mult = effect_multipliers(cfg, parts)
    als = parts.group == "ALS"
    assert als.sum() == 34
    for e in cfg["effects"]:
        if not e.get("clinical"):
            continue
        r = np.corrcoef(mult.loc[als, f"m_{e['name']}"], parts.loc[als, e["clinical"]["score"]])[
            0, 1
        ]
        assert r == pytest.approx(e["clinical"]["r"], abs=0.03)
    # study defaults: sex counts like Table 1
    assert (parts[als].sex == "M").sum() == 23 and (parts[~als].sex == "M").sum() == 19


def test_truth_volumes_plausible(tiny_cohort):
    vols = []
    for pid in ("sub-ALS001", "sub-ALS002", "sub-NC001", "sub-NC002"):
        info = json.loads(truth_paths(truth_dir(tiny_cohort), pid)["truth_json"].read_text())
        vols.append((info["TIV_ml"], info["GM_ml"]))
    tiv, gm = np.array(vols).T
    assert ((tiv > 1100) & (tiv < 2000)).all(), tiv
    assert ((gm / tiv > 0.3) & (gm / tiv < 0.6)).all()


def test_figure_for_a_person(tiny_cohort, tmp_path):
    from qsmvbm.simulate.figure import plot_subject

    png = plot_subject(tiny_cohort, "sub-ALS001", tmp_path / "fig.png")
    assert png.stat().st_size > 20000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _bad(tmp_path, edit):
    cfg = yaml.safe_load(TINY.read_text())
    edit(cfg)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["effects"][0]["region"].update(atlas_labels=["Thalamus_X"]),
            "unknown AAL3 region 'Thalamus_X'",
        ),
        (
            lambda c: c["effects"][0]["region"].update(atlas_labels=["Precentrl_L"]),
            "did you mean Precentral_L",
        ),
        (lambda c: c["gre"].update(snr=-5), "gre.snr"),
        (lambda c: c["gre"].update(snrr=5), "unknown key 'snrr' (did you mean 'snr'?)"),
        (lambda c: c.update(subjects=3), "unknown key 'subjects'"),
        (lambda c: c["effects"][0].update(group="PD"), "group 'PD' is not one of"),
        (lambda c: c["effects"][0]["clinical"].update(score="moca"), "clinical score 'moca'"),
    ],
)
def test_bad_configs_fail_at_once(tmp_path, edit, message):
    with pytest.raises(ConfigError) as err:
        load_simulation_config(_bad(tmp_path, edit))
    assert message in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_thalamus_names_mean_the_nuclei():
    """AAL3's own Thalamus_L/R labels (81/82) are empty: the names resolve to the nuclei 121-150."""
    from qsmvbm.atlas import aal3_labels, label_values

    assert aal3_labels()["Thalamus_L"] == 81
    assert label_values("Thalamus_L") == tuple(range(121, 151, 2))
    assert label_values("Thalamus_R") == tuple(range(122, 151, 2))


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path):
    bad = _bad(tmp_path, lambda c: c["gre"].update(snr=-1))
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "qsmvbm.simulate.cli", str(bad), str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "gre.snr" in r.stderr
    assert not out.exists()


def test_planted_volume_change_is_a_local_contraction():
    """gm_change < 0 makes the region smaller in the subject: pull-map Jacobian > 1 there,
    about 1 far away, and the integrated volume change close to the planted one."""
    from qsmvbm.simulate.subject import atrophy_field, effect_weight
    from qsmvbm.transforms import jacobian_determinant

    region = {"sphere_mni": [20, -17, 7], "radius_mm": 10, "atlas_labels": ["Thalamus_R"]}
    eff = [{"name": "t", "region": region, "gm_change": -0.12}]
    assert atrophy_field(2, eff, {"t": 0.0}) is None
    aff, u = atrophy_field(2, eff, {"t": 1.0})
    jac = jacobian_determinant(u, 2.0)
    w = effect_weight(2, region) > 0.5
    assert jac[w].mean() > 1.05
    from scipy import ndimage

    far = ~ndimage.binary_dilation(w, iterations=6)
    assert np.abs(jac[far] - 1).max() < 0.01
    assert (jac - 1).sum() / w.sum() == pytest.approx(0.12, rel=0.2)
    # twice the multiplier, twice the displacement
    _, u2 = atrophy_field(2, eff, {"t": 2.0})
    np.testing.assert_allclose(u2, 2 * u, rtol=1e-5, atol=1e-7)


def test_planted_volume_change_is_realised_in_the_subject():
    """The subject's volume of a graded effect region, weighted by the effect profile w, is
    (1 + g w) times the template's: measured by pulling a 0.5 mm grid of subject points through
    the displacement (the way the simulator samples a subject), independent of any derivative
    stencil. The study's right-thalamus effect, whose peak lies on the label's edge."""
    from qsmvbm.simulate.phantom import build_head_model
    from qsmvbm.simulate.subject import atrophy_field, effect_weight
    from qsmvbm.transforms import sample

    hm = build_head_model(2)
    region = {
        "sphere_mni": [20, -17, 7],
        "radius_mm": 12,
        "atlas_labels": ["Thalamus_R"],
        "profile": "gaussian",
        "profile_fwhm_mm": 14,
    }
    g = -0.10
    aff, u = atrophy_field(2, [{"name": "t", "region": region, "gm_change": g}], {"t": 1.0})
    w = effect_weight(2, region)
    ax = [np.arange(c - 24 + 0.13, c + 24, 0.5) for c in region["sphere_mni"]]
    x = np.stack(np.meshgrid(*ax, indexing="ij")).astype(np.float32)
    y = x + np.stack([sample(c, aff, x, order=1) for c in u])
    wx = sample(w, hm.affine, x, order=1)
    realised = sample(w, hm.affine, y, order=1).sum() / wx.sum() - 1
    planted = g * (wx * wx).sum() / wx.sum()
    assert realised == pytest.approx(planted, rel=0.05)


def test_gaussian_effect_profile_peaks_at_the_centre():
    """A graded effect is 1 at the sphere centre, 1/2 at FWHM/2, with the uniform region as its support."""
    from qsmvbm.simulate.phantom import build_head_model, region_weight

    hm = build_head_model(2)
    region = {"sphere_mni": [20, -18, 6], "radius_mm": 12, "atlas_labels": ["Thalamus_R"]}
    uniform = region_weight(hm, region)
    graded = region_weight(hm, {**region, "profile": "gaussian", "profile_fwhm_mm": 8})
    assert ((graded > 0) == (uniform > 0)).all()
    c = world_coords(hm.shape, hm.affine)
    d = np.sqrt((c[0] - 20) ** 2 + (c[1] + 18) ** 2 + (c[2] - 6) ** 2)
    assert graded[d < 0.5].max() == pytest.approx(1.0)
    ring = (np.abs(d - 4.0) < 0.01) & (uniform > 0)
    assert ring.any() and np.allclose(graded[ring], 0.5, atol=1e-3)
    with pytest.raises(ValueError, match="unknown profile"):
        region_weight(hm, {**region, "profile": "box"})


def test_realistic_head_tissues_leave_the_layered_heads_random_stream_alone():
    """Adding fat, marrow and vitreous to the tissue table (anatomy.head: realistic) consumed three
    more draws per subject and silently gave the demo another noise realization (its GM effect fell
    from t 8.8 to 4.6); with zero SDs they take no draw and the stream is as before."""
    import numpy as np

    from qsmvbm.simulate.settings import load_tissue_table
    from qsmvbm.simulate.subject import HEAD_EXTRA_TISSUES, draw_tissue_values

    table = load_tissue_table()
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    with_extra = draw_tissue_values(a, table, 1.0)
    without = draw_tissue_values(b, table.drop(index=list(HEAD_EXTRA_TISSUES)), 1.0)
    assert a.random() == b.random()
    assert {k: with_extra[k] for k in without} == without
    assert with_extra["fat"] == table.loc["fat", "chi_ppm"]
