"""Group statistics: GLM vs nilearn, RFT vs nipy, permutation vs nilearn, the study's numbers, FWE."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from qsmvbm.stats import clusters as cl
from qsmvbm.stats.glm import design_matrix, fit_glm
from qsmvbm.stats.permutation import _prepare, _t_batch, p_fwe_from_null, permutation_maxt
from qsmvbm.stats.rft import FOUR_LN2, estimate_smoothness, p_fwe_peak, p_fwe_rft, resel_counts
from qsmvbm.stats.tables import (
    correlation,
    correlation_table,
    demographics,
    group_test,
    r_to_p,
    sex_chi2,
)
from qsmvbm.stats.voxelwise import SvcParams, voxelwise_svc


def smooth_noise(rng, n, shape, fwhm_vox):
    """n Gaussian random fields, unit variance, Gaussian kernel of FWHM ``fwhm_vox``."""
    sigma = fwhm_vox / np.sqrt(8 * np.log(2))
    out = np.empty((n, *shape))
    for i in range(n):
        f = ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
        out[i] = f / f.std()
    return out


def two_groups(n1, n2):
    return np.r_[np.ones(n1), np.zeros(n2)]


# --- GLM ---------------------------------------------------------------------------------------------


def test_tmap_equals_nilearn_second_level_model():
    from nilearn.glm.second_level import SecondLevelModel

    rng = np.random.default_rng(1)
    shape = (12, 10, 8)
    n1, n2 = 9, 11
    x = two_groups(n1, n2)
    tiv = rng.normal(1500, 120, n1 + n2)
    data = smooth_noise(rng, n1 + n2, shape, 2.0) * 0.01 + 0.03
    data[:n1, 3:7, 3:6, 2:5] += 0.008
    data += (tiv - tiv.mean())[:, None, None, None] * 1e-5
    X = design_matrix(x, tiv[:, None])
    data = data.astype(np.float32)
    ours = fit_glm(data.reshape(len(x), -1), X).t.reshape(shape)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    imgs = [nib.Nifti1Image(d.astype(np.float32), aff) for d in data]
    dm = pd.DataFrame({"group": x, "intercept": 1.0, "tiv": tiv - tiv.mean()})
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), aff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slm = SecondLevelModel(mask_img=mask).fit(imgs, design_matrix=dm)
        ref = slm.compute_contrast(
            "group", second_level_stat_type="t", output_type="stat"
        ).get_fdata()
    assert np.abs(ours - ref).max() < 1e-4


def test_design_matrix_rejects_collinear_covariate():
    x = two_groups(5, 5)
    with pytest.raises(ValueError, match="rank deficient"):
        design_matrix(x, x[:, None])


# --- random field theory ---------------------------------------------------------------------------


def test_rft_box_matches_reference_values():
    R = resel_counts(np.ones((20, 15, 10), bool), [4, 4, 4])
    np.testing.assert_allclose(p_fwe_rft([3, 4, 5], 40, R), [0.65304, 0.12121, 0.01045], atol=1e-5)


@pytest.mark.parametrize("fwhm", [(4.0, 4.0, 4.0), (4.0, 3.0, 5.0)])
def test_rft_p_values_equal_nipy(fwhm):
    from nipy.algorithms.statistics import intvol, rft

    fwhm = np.asarray(fwhm)
    box = np.zeros((30, 25, 20), bool)
    box[2:22, 3:18, 4:14] = True
    two_boxes = np.zeros((30, 25, 20), bool)
    two_boxes[3:20, 4:18, 2:15] = True
    two_boxes[10:25, 10:22, 8:18] = True
    for mask in (box, two_boxes):
        coords = np.indices(mask.shape).astype(float) / fwhm[:, None, None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lkc = intvol.Lips3d(coords, mask.astype(np.uint8)) * FOUR_LN2 ** (np.arange(4) / 2)
            tstat = rft.TStat(dfd=40, search=lkc)
            for t in (3.0, 3.5, 4.0, 4.5, 5.0):
                ref = 1 - np.exp(-tstat(t))
                assert abs(p_fwe_rft(t, 40, resel_counts(mask, fwhm))[0] - ref) < 1e-3


def test_spm_p_is_min_of_rft_and_bonferroni():
    mask = np.zeros((10, 10, 10), bool)
    mask[5, 5, 3:6] = True  # a line of 3 voxels: Bonferroni is the tighter bound
    R = resel_counts(mask, [3, 3, 3])
    p = p_fwe_peak(3.5, 30, R, int(mask.sum()))[0]
    assert p == pytest.approx(min(p_fwe_rft(3.5, 30, R)[0], 3 * stats.t.sf(3.5, 30)))


def test_smoothness_estimate_recovers_fwhm():
    rng = np.random.default_rng(2)
    shape = (40, 40, 30)
    n = 30
    fields = smooth_noise(rng, n, shape, 4.0)
    X = design_matrix(two_groups(15, 15))
    fit = fit_glm(fields.reshape(n, -1), X)
    sd = np.sqrt(fit.rss / fit.df)
    res = (fields.reshape(n, -1) - X @ fit.beta) / sd
    est = estimate_smoothness((r.reshape(shape) for r in res), np.ones(shape, bool), n, fit.df)
    np.testing.assert_allclose(est["fwhm_vox"], 4.0, rtol=0.12)


# --- permutation -------------------------------------------------------------------------------------


def test_closed_form_permuted_t_equals_refit():
    rng = np.random.default_rng(3)
    n = 20
    Y = rng.normal(size=(n, 7))
    x = two_groups(9, 11)
    cov = rng.normal(size=(n, 2))
    X = design_matrix(x, cov)
    R, xr, Qz, _ = _prepare(Y, X[:, 0], X[:, 1:])
    perm = rng.permutation(n)
    t = _t_batch(R, (R**2).sum(0), xr, Qz, perm[None], n - X.shape[1])[0]
    # Freedman-Lane by hand: permuted reduced-model residuals + reduced fitted values, refit full model
    Z = X[:, 1:]
    fitted = Z @ np.linalg.lstsq(Z, Y, rcond=None)[0]
    Ystar = (Y - fitted)[perm] + fitted
    np.testing.assert_allclose(t, fit_glm(Ystar, X).t, atol=1e-10)


def test_permutation_progress_is_reported_without_changing_the_null():
    """The permutations report their progress after each batch (a long TFCE run logs it), and the
    hook changes no number."""
    from qsmvbm.stats.permutation import permutation_maxt
    from qsmvbm.stats.voxelwise import _progress_logger

    rng = np.random.default_rng(0)
    Y, x, Z = rng.standard_normal((12, 50)), np.r_[np.ones(6), np.zeros(6)], np.ones((12, 1))
    calls = []
    kw = dict(n_perm=1000, batch=100, seed=3)
    a = permutation_maxt(Y, x, Z, [np.ones(50, bool)], progress=lambda *c: calls.append(c), **kw)
    b = permutation_maxt(Y, x, Z, [np.ones(50, bool)], **kw)
    assert calls == [(d, 1000) for d in range(100, 1001, 100)]
    assert np.array_equal(a[1], b[1])
    lines = []
    report = _progress_logger(lines.append, "max-T", every=0.25)
    for done, total in calls:
        report(done, total)
    assert [ln.split(" in ")[0] for ln in lines] == [
        f"max-T permutations: {d} of 1000" for d in (300, 600, 900, 1000)
    ]


def test_permutation_p_matches_nilearn_permuted_ols():
    from nilearn.mass_univariate import permuted_ols

    rng = np.random.default_rng(4)
    n1 = n2 = 15
    x = two_groups(n1, n2)
    age = rng.normal(50, 9, n1 + n2)
    Y = smooth_noise(rng, n1 + n2, (10, 10, 6), 2.0).reshape(n1 + n2, -1)
    Y[:n1, :40] += 1.6
    n_perm = 2000
    X = design_matrix(x, age[:, None])
    t_obs, null = permutation_maxt(
        Y, X[:, 0], X[:, 1:], [np.ones(Y.shape[1], bool)], n_perm=n_perm, seed=0
    )
    ours = p_fwe_from_null(t_obs, null[:, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = permuted_ols(
            x[:, None],
            Y,
            confounding_vars=(age - age.mean())[:, None],
            model_intercept=True,
            n_perm=n_perm,
            two_sided_test=False,
            random_state=0,
            n_jobs=1,
            verbose=0,
            output_type="dict",
        )
    ref = 10 ** -out["logp_max_t"].ravel()
    np.testing.assert_allclose(t_obs, out["t"].ravel(), atol=1e-6)
    # Monte-Carlo error of a p estimated from 2000 permutations: sd <= 0.011; allow 4 sd
    se = np.sqrt(np.maximum(ref * (1 - ref), 0.01 * 0.99) / n_perm)
    assert np.all(np.abs(ours - ref) <= 4 * se + 2 / n_perm)
    assert ours.min() < 0.05  # the planted effect is found


def test_fwe_calibration_small():
    """Null data, 40 runs x 500 permutations (the benchmark runs 500 x 1000): false positive rates
    of both SVC methods stay within a binomial 99.9% band of 5%."""
    rng = np.random.default_rng(5)
    shape = (16, 16, 12)
    roi = np.zeros(shape, bool)
    roi[3:13, 3:13, 2:10] = True
    n1 = n2 = 34
    x = two_groups(n1, n2)
    X = design_matrix(x)
    runs, fp_rft, fp_perm = 40, 0, 0
    for _ in range(runs):
        Y = smooth_noise(rng, n1 + n2, shape, 3.0).reshape(n1 + n2, -1)
        fit = fit_glm(Y, X)
        res = (Y - X @ fit.beta) / np.sqrt(fit.rss / fit.df)
        fwhm = estimate_smoothness((r.reshape(shape) for r in res), roi, n1 + n2, fit.df)[
            "fwhm_vox"
        ]
        tmax = fit.t.reshape(shape)[roi].max()
        fp_rft += p_fwe_peak(tmax, fit.df, resel_counts(roi, fwhm), int(roi.sum()))[0] < 0.05
        t_obs, null = permutation_maxt(
            Y[:, roi.ravel()],
            X[:, 0],
            X[:, 1:],
            [np.ones(int(roi.sum()), bool)],
            n_perm=500,
            seed=int(rng.integers(1 << 30)),
        )
        fp_perm += p_fwe_from_null(t_obs.max(), null[:, 0])[0] < 0.05
    hi = stats.binom.isf(0.001, runs, 0.05)
    assert fp_perm <= hi and fp_rft <= hi


# --- clusters and the voxelwise analysis -------------------------------------------------------------


def test_sphere_and_clusters():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = -20
    s = cl.sphere_mask((21, 21, 21), aff, (0, 0, 0), 6.0)
    assert s[10, 10, 10] and s[13, 10, 10] and not s[14, 10, 10]
    t = np.zeros((21, 21, 21))
    t[2:5, 2:5, 2:5] = 4.0
    t[3, 3, 3] = 6.0
    t[15, 15, 15] = 5.0
    found = cl.find_clusters(t, np.ones_like(s), 3.0, aff)
    assert [c.n_voxels for c in found] == [27, 1]
    assert found[0].peak_mm == (-14.0, -14.0, -14.0) and found[0].volume_mm3 == pytest.approx(
        27 * 8
    )


def _planted_svc_case():
    """20 + 20 smooth-noise images (2 mm) with +0.012 (1.2 SD) in a 5 mm sphere at (-10, 0, 0) in
    the patients, and two ROIs (left holds the effect): (shape, affine, x, data, effect, L, R)."""
    rng = np.random.default_rng(6)
    shape = (24, 24, 16)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-24, -24, -16]
    n1 = n2 = 20
    x = two_groups(n1, n2)
    data = smooth_noise(rng, n1 + n2, shape, 2.5) * 0.01
    effect = cl.sphere_mask(shape, aff, (-10, 0, 0), 5.0)
    data[:n1][:, effect] += 0.012
    roi_l = np.zeros(shape, bool)
    roi_l[:11, 4:20, 3:13] = True
    roi_r = np.zeros(shape, bool)
    roi_r[13:, 4:20, 3:13] = True
    return shape, aff, x, data, effect, roi_l, roi_r


def _svc_case_run(x, data, shape, aff, rois, params):
    """voxelwise_svc of the case's data, every voxel valid, with ``rois`` and ``params``."""
    ones = np.ones(shape, bool)
    return voxelwise_svc(lambda i: (data[i], ones), design_matrix(x), 1.0, ones, rois, aff, params)


def test_voxelwise_svc_finds_planted_effect_only():
    shape, aff, x, data, effect, roi_l, roi_r = _planted_svc_case()
    res = _svc_case_run(
        x, data, shape, aff, {"L": roi_l, "R": roi_r}, SvcParams(n_perm=500, min_cluster_mm3=40)
    )
    sig = [c for c in res.clusters if c["significant"]]
    assert [c["roi"] for c in sig] == ["L"]
    peak = np.array([sig[0]["peak_x"], sig[0]["peak_y"], sig[0]["peak_z"]])
    assert np.linalg.norm(peak - [-10, 0, 0]) <= 6
    assert sig[0]["p_fwe_perm"] < 0.05 and sig[0]["p_fwe_rft"] < 0.05
    assert 1.5 < res.info["fwhm_vox"][0] < 4
    # wider FWE families: RFT Bonferroni over the 2 ROIs (x 2 modalities), permutation max over their union
    by = {}
    for fam in ("modality", "analysis"):
        r = _svc_case_run(
            x,
            data,
            shape,
            aff,
            {"L": roi_l, "R": roi_r},
            SvcParams(n_perm=500, min_cluster_mm3=40, fwe_family=fam, n_modalities=2),
        )
        by[fam] = r.clusters
        assert r.info["fwe_family"] == fam
    for c0, cm, ca in zip(res.clusters, by["modality"], by["analysis"]):
        assert cm["p_fwe_rft"] == pytest.approx(min(1, 2 * c0["p_fwe_rft"]))
        assert ca["p_fwe_rft"] == pytest.approx(min(1, 4 * c0["p_fwe_rft"]))
        assert cm["p_fwe_perm"] >= c0["p_fwe_perm"]
        assert ca["p_fwe_perm"] == pytest.approx(min(1, 2 * cm["p_fwe_perm"]))
    with pytest.raises(ValueError, match="fwe_family"):
        _svc_case_run(
            x, data, shape, aff, {"L": roi_l, "R": roi_r}, SvcParams(n_perm=10, fwe_family="brain")
        )


def test_tfce_matches_nilearn_up_to_the_step():
    """Same E, H and steps: our TFCE equals nilearn's calculate_tfce (fslmaths' convention, no dh
    factor) times dh, on a smooth random map; clusters are formed inside the search volume only."""
    from nilearn.mass_univariate._utils import calculate_tfce

    from qsmvbm.stats.tfce import tfce

    rng = np.random.default_rng(3)
    t = ndimage.gaussian_filter(rng.standard_normal((28, 26, 24)), 2.0) * 8
    dh = float(t.max()) / 40
    for conn, rank in ((6, 1), (18, 2), (26, 3)):
        ours = tfce(t, np.ones(t.shape, bool), dh=dh, connectivity=conn)
        ref = calculate_tfce(
            t[..., None],
            ndimage.generate_binary_structure(3, rank),
            E=0.5,
            H=2,
            dh=dh,
            two_sided_test=False,
        )[..., 0]
        np.testing.assert_allclose(ours, ref * dh, rtol=1e-10, atol=1e-12)
    half = np.zeros(t.shape, bool)
    half[:14] = True
    inside = tfce(t, half, dh=dh)
    assert not inside[~half].any()
    assert np.array_equal(inside[half], tfce(np.where(half, t, -np.inf), half, dh=dh)[half])


def test_tfce_batch_labels_each_map_on_its_own():
    """Many maps labelled as one 4D array give the maxima of the maps labelled one by one."""
    from qsmvbm.stats.tfce import max_tfce_batch, tfce

    rng = np.random.default_rng(4)
    search = np.zeros((14, 12, 10), bool)
    search[2:12, 1:11, 2:9] = True
    maps = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(search.shape), 1.5) * 6 for _ in range(7)]
    )
    vals = maps[:, search]
    batch = max_tfce_batch(vals, search, max_voxels=3 * search.size)  # chunks of 3 maps
    single = [tfce(m, search).max() for m in maps]
    np.testing.assert_allclose(batch, single, rtol=1e-12)


def test_tfce_batch_maxima_from_local_maxima_equal_the_maps():
    """The maxima scored at the local maxima only equal the maxima of the full TFCE maps, with
    plateaus and values exactly on the height steps (t rounded to dh), every connectivity, and a
    search volume of two separate pieces."""
    from qsmvbm.stats.tfce import max_tfce_batch

    rng = np.random.default_rng(8)
    search = np.zeros((16, 12, 10), bool)
    search[1:7, 1:11, 1:9] = True
    search[9:15, 2:10, 2:8] = True
    maps = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(search.shape), 1.2) * 8 for _ in range(9)]
    )
    vals = np.round(maps[:, search], 1)
    vals[0] = -1.0  # a map with nothing above the first step
    for conn in (6, 18, 26):
        fast = max_tfce_batch(vals, search, connectivity=conn, max_voxels=4 * search.size)
        full, tmaps = max_tfce_batch(vals, search, connectivity=conn, return_maps=True)
        np.testing.assert_array_equal(fast, full)
        np.testing.assert_array_equal(full, tmaps.reshape(len(vals), -1).max(axis=1))
        assert fast[0] == 0 and (fast[1:] > 0).all()


def test_voxelwise_svc_tfce_finds_planted_effect_only():
    """TFCE small-volume correction: the planted effect's cluster is significant by TFCE FWE p,
    the other ROI has none; voxelwise FWE p maps are written in the ROIs only."""
    shape, aff, x, data, effect, roi_l, roi_r = _planted_svc_case()
    for fam in ("roi", "modality"):
        res = _svc_case_run(
            x,
            data,
            shape,
            aff,
            {"L": roi_l, "R": roi_r},
            SvcParams(
                n_perm=300, min_cluster_mm3=40, significance="tfce", tfce=True, fwe_family=fam
            ),
        )
        sig = [c for c in res.clusters if c["significant"]]
        assert [c["roi"] for c in sig] == ["L"], fam
        assert sig[0]["p_fwe_tfce"] < 0.05 and sig[0]["peak_tfce"] > 0
        outside = ~(roi_l | roi_r)
        assert (res.tfce_pfwe[outside] == 1).all() and not res.tfce[outside].any()
        assert res.tfce_pfwe[effect & roi_l].min() < 0.05
        assert res.info["tfce"]["permutations"] == 300
    with pytest.raises(ValueError, match="tfce"):
        _svc_case_run(
            x, data, shape, aff, {"L": roi_l}, SvcParams(n_perm=0, significance="tfce", tfce=True)
        )


# --- the study's numbers -----------------------------------------------------------------------------


def test_study_numbers():
    assert sex_chi2((23, 19), (34, 34))[1] == pytest.approx(0.32, abs=0.005)
    assert r_to_p(0.40, 34) == pytest.approx(0.02, abs=0.0025)  # 0.019
    # the study prints 0.004 for r = -0.44 one-tailed: 0.0046 truncated (r = -0.444 gives 0.0042)
    assert 0.0035 < r_to_p(-0.44, 34, "less") < 0.005
    assert r_to_p(-0.48, 34) == pytest.approx(0.004, abs=0.0005)
    assert r_to_p(-0.36, 34) == pytest.approx(0.04, abs=0.005)  # 0.036, printed as 0.04


def test_correlation_and_partial_match_closed_form():
    rng = np.random.default_rng(7)
    n = 34
    a = rng.normal(size=n)
    d = pd.DataFrame({"x": a, "y": -0.44 * a + rng.normal(size=n), "age": rng.normal(50, 8, n)})
    res = correlation(d, "x", "y", alternative="less")
    r = np.corrcoef(d.x, d.y)[0, 1]
    assert res["r"] == pytest.approx(r) and res["p"] == pytest.approx(r_to_p(r, n, "less"))
    part = correlation(d, "x", "y", ["age"], "less")
    rx = d.x - np.polyval(np.polyfit(d.age, d.x, 1), d.age)
    ry = d.y - np.polyval(np.polyfit(d.age, d.y, 1), d.age)
    rp = np.corrcoef(rx, ry)[0, 1]
    tp = rp * np.sqrt((n - 3) / (1 - rp**2))
    assert part["r"] == pytest.approx(rp) and part["p"] == pytest.approx(stats.t.cdf(tp, n - 3))


def test_group_tests_and_tables():
    rng = np.random.default_rng(8)
    n = 34
    d = pd.DataFrame(
        {
            "group": ["ALS"] * n + ["NC"] * n,
            "tiv_ml": rng.normal(1450, 130, 2 * n),
            "age": rng.normal(51, 9, 2 * n),
            "sex": ["M"] * 23 + ["F"] * 11 + ["M"] * 19 + ["F"] * 15,
            "alsfrs_r": list(rng.integers(29, 46, n)) + [np.nan] * n,
        }
    )
    d["gm"] = (
        0.3 + 1e-4 * (d.tiv_ml - 1450) - 0.02 * (d.group == "ALS") + rng.normal(0, 0.01, 2 * n)
    )
    res = group_test(d, "gm", "group", "ALS", "NC", ["tiv_ml"])
    assert res["test"] == "ANCOVA" and res["F"] == pytest.approx(res["t"] ** 2, rel=1e-6)
    assert res["t"] < 0 and res["p"] < 0.05 and res["df"] == 2 * n - 3
    plain = group_test(d, "age", "group", "ALS", "NC")
    assert plain["p"] == pytest.approx(stats.ttest_ind(d.age[:n], d.age[n:]).pvalue)
    t1 = demographics(d, "group", "ALS", "NC", ["alsfrs_r"])
    sex = t1[t1.characteristic == "Sex (male)"].iloc[0]
    assert sex["p"] == pytest.approx(0.32, abs=0.005) and sex["ALS"].startswith("23 (67.6%)")
    assert t1[t1.characteristic == "alsfrs_r"].iloc[0]["NC"] == "n/a"
    d["qsm_c1"], d["gm_c1"] = rng.normal(size=2 * n), d["gm"]
    d["sex_male"] = (d.sex == "M").astype(float)
    table = correlation_table(
        d,
        [
            {"x": "qsm", "y": "gm", "groups": ["patients", "controls"], "alternative": "less"},
            {"x": "sex", "y": "qsm", "groups": ["all"]},
        ],
        ["c1"],
        ["alsfrs_r"],
        {"patients": ["ALS"], "controls": ["NC"], "all": ["ALS", "NC"]},
    )
    assert list(table.group) == ["ALS", "NC", "ALS+NC"] and list(table.n) == [n, n, 2 * n]
    assert table.method.iloc[2].startswith("point-biserial")


def test_rft_is_not_applied_with_too_few_degrees_of_freedom():
    """A 2+2 design (df 2): no RFT p-values, a note in the info; permutation p-values still given."""
    rng = np.random.default_rng(3)
    shape = (16, 16, 10)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    data = smooth_noise(rng, 4, shape, 2.0)
    data[:2, 4:9, 4:9, 3:7] += 3.0
    roi = np.zeros(shape, bool)
    roi[2:12, 2:12, 1:9] = True
    x = two_groups(2, 2)
    res = _svc_case_run(
        x, data, shape, aff, {"A": roi}, SvcParams(n_perm=10, min_cluster_mm3=0, significance="rft")
    )
    assert res.info["df"] == 2 and res.info["rft_applied"] is False
    assert "2 residual degrees of freedom < rft_min_df 10" in res.info["rft_note"]
    assert res.clusters and all(np.isnan(c["p_fwe_rft"]) for c in res.clusters)
    assert not any(c["significant"] for c in res.clusters)
    assert all(np.isfinite(c["p_fwe_perm"]) for c in res.clusters)
    ok = _svc_case_run(
        x, data, shape, aff, {"A": roi}, SvcParams(n_perm=10, min_cluster_mm3=0, rft_min_df=2)
    )
    assert ok.info["rft_applied"] and all(np.isfinite(c["p_fwe_rft"]) for c in ok.clusters)


def test_sex_is_read_one_way_in_the_model_and_table1():
    """'M', 'male', 'Male' are male and 'F', 'female' female, in the design (sex_male) and in
    Table 1 alike; anything else is missing."""
    from qsmvbm.stats.design import sex_male
    from qsmvbm.stats.tables import demographics

    values = ["M", "male", "Male ", "F", "female", "n/a", "x"]
    np.testing.assert_array_equal(sex_male(values), [1, 1, 1, 0, 0, np.nan, np.nan])
    df = pd.DataFrame(
        {
            "group": ["ALS", "ALS", "ALS", "NC", "NC"],
            "sex": ["male", "Male", "female", "M", "F"],
            "age": [50, 60, 55, 52, 58],
        }
    )
    t1 = demographics(df, "group", "ALS", "NC", []).set_index("characteristic")
    assert t1.loc["Sex (male)", "ALS"].startswith("2 (66.7%)")
    assert t1.loc["Sex (male)", "NC"].startswith("1 (50.0%)")


def test_group_tables_have_a_column_sidecar(tmp_path):
    """Every column of a group table is described in its JSON sidecar; study-dependent columns
    (group labels, participants.tsv columns) from patterns or participants.json."""
    import json

    from qsmvbm.stats.columns import column_sidecar, save_table

    stats_df = pd.DataFrame(columns=["region", "measure", "n_ALS", "mean_NC", "t", "p"])
    side = column_sidecar(stats_df, "roi_stats")
    assert side["n_ALS"]["Description"] == "number of ALS participants"
    assert side["mean_NC"]["Units"].startswith("ppm")
    design = pd.DataFrame({"participant_id": ["sub-01"], "alsfrs_r": [40], "tiv_ml": [1500.0]})
    out = save_table(
        design, tmp_path / "table.tsv", "design", {"alsfrs_r": {"Description": "ALSFRS-R"}}
    )
    meta = json.loads(out.with_suffix(".json").read_text())
    assert list(meta) == list(design.columns)
    assert meta["alsfrs_r"] == {"Description": "ALSFRS-R"} and meta["tiv_ml"]["Units"] == "mL"


# --- power analysis ------------------------------------------------------------------------------


def _box_model(sd=0.01, fwhm_mm=6.0):
    from qsmvbm.stats.power import PilotModel

    shape = (26, 26, 22)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-26, -26, -22]
    roi = np.zeros(shape, bool)
    roi[7:19, 7:19, 5:17] = True
    return PilotModel.from_maps(roi, np.ones(shape, bool), np.full(shape, sd), fwhm_mm, aff)


def test_voxelwise_svc_with_a_given_smoothness_skips_only_the_estimate():
    """``fwhm_mm`` given (a power analysis): the same t map, clusters and FWE p as when the same
    smoothness is estimated from the residuals; another smoothness changes only the RFT p."""
    shape, aff, x, data, _, roi_l, roi_r = _planted_svc_case()
    ones = np.ones(shape, bool)
    rois = {"L": roi_l, "R": roi_r}
    params = SvcParams(n_perm=200, min_cluster_mm3=40)

    def run(fwhm):
        load = lambda i: (data[i], ones)  # noqa: E731
        return voxelwise_svc(load, design_matrix(x), 1.0, ones, rois, aff, params, fwhm_mm=fwhm)

    est = run(None)
    given = run(est.info["fwhm_mm"])
    assert given.info["fwhm_from"] == "given" and est.info["fwhm_from"] == "residuals"
    np.testing.assert_allclose(given.info["fwhm_vox"], est.info["fwhm_vox"], rtol=1e-12)
    assert given.info["resels_per_voxel"] == pytest.approx(
        1 / np.prod(est.info["fwhm_vox"]), rel=0.2
    )
    np.testing.assert_array_equal(given.tmap, est.tmap)
    for a, b in zip(given.clusters, est.clusters):
        assert a["p_fwe_rft"] == pytest.approx(b["p_fwe_rft"], rel=1e-9)
        assert a["p_fwe_perm"] == b["p_fwe_perm"]
    smoother = run(np.asarray(est.info["fwhm_mm"]) * 2)  # fewer resels: a smaller RFT p
    assert smoother.clusters[0]["p_fwe_rft"] < est.clusters[0]["p_fwe_rft"]
    assert smoother.clusters[0]["p_fwe_perm"] == est.clusters[0]["p_fwe_perm"]


def test_power_noise_has_unit_variance_and_the_asked_smoothness():
    from qsmvbm.stats.power import smooth_noise
    from qsmvbm.stats.rft import estimate_smoothness

    rng = np.random.default_rng(0)
    imgs = smooth_noise(rng, 30, (40, 40, 40), 3.0)
    assert imgs.std() == pytest.approx(1.0, abs=0.08)
    res = imgs - imgs.mean(axis=0)
    sm = estimate_smoothness(
        [r / res.std(axis=0) for r in res], np.ones((40, 40, 40), bool), 30, 29
    )
    assert np.mean(sm["fwhm_vox"]) == pytest.approx(3.0, rel=0.15)
    # a degenerate smoothness (a pilot of a few subjects) gives a bounded grid and unit variance
    flat = smooth_noise(rng, 200, (12, 10, 8), 1e4)
    assert flat.std(axis=0).mean() == pytest.approx(1.0, abs=0.1)
    assert np.corrcoef(flat[:, 0, 0, 0], flat[:, -1, -1, -1])[0, 1] > 0.99


def test_power_is_low_without_effect_and_full_for_a_large_one():
    """The map-level Monte Carlo: no planted effect gives few detections (false positives), an
    effect of 2 SD in a 9 mm sphere with 20 per group is always found within 6 mm."""
    from qsmvbm.stats.power import power_table
    from qsmvbm.stats.voxelwise import SvcParams

    model = _box_model()
    tab = power_table(
        model, "box", [0.0, 0.02], [20], runs=12, params=SvcParams(n_perm=0), methods=["rft"]
    )
    p = dict(zip(tab.effect, tab.power))
    assert p[0.0] <= 2 / 12 and p[0.02] == 1.0
    assert set(tab.columns) >= {"power", "ci_low", "ci_high", "detections", "runs"}


def test_best_p_is_the_continuous_outcome_of_detection():
    """On random cluster tables, an effect is detected by a method exactly when its best p (the
    smallest FWE p of a cluster near the centre that passes the extent rule) is below alpha; the
    per-study record of power_table agrees with its detection counts."""
    from qsmvbm.stats.power import best_p, detected, power_table
    from qsmvbm.stats.voxelwise import SvcParams

    rng = np.random.default_rng(3)
    params = SvcParams(min_cluster_mm3=100.0)
    for _ in range(300):
        clusters = [
            {
                "roi": str(rng.choice(["box", "other"])),
                "peak_x": rng.uniform(-15, 15),
                "peak_y": rng.uniform(-15, 15),
                "peak_z": rng.uniform(-15, 15),
                "volume_mm3": rng.choice([8.0, 96.0, 100.0, 400.0]),
                "p_fwe_rft": rng.uniform(0, 0.12),
                "p_fwe_perm": rng.uniform(0, 0.12),
                "p_fwe_tfce": rng.choice([np.nan, rng.uniform(0, 0.12)]),
            }
            for _ in range(rng.integers(0, 4))
        ]
        for centre in (None, np.zeros(3)):
            for m in ("rft", "perm", "tfce", "both", "either"):
                p = best_p(clusters, "box", centre, 10.0, params, m)
                assert (p < params.alpha) == detected(clusters, "box", centre, 10.0, params, m)
    assert best_p([], "box", None, 6.0, params, "rft") == 1.0
    record = []
    tab = power_table(
        _box_model(),
        "box",
        [0.0, 0.006],
        [10],
        runs=6,
        params=SvcParams(n_perm=0),
        methods=["rft"],
        record=record,
    )
    rec = pd.DataFrame(record)
    assert len(rec) == 12 and rec.p_rft.between(0, 1).all()
    hits = (rec.p_rft < 0.05).groupby(rec.effect).sum()
    assert hits.to_dict() == dict(zip(tab.effect, tab.detections))


def test_residual_noise_keeps_the_pilots_covariance_and_its_null():
    """A pilot whose residuals share a component over the ROI (a subject offset, as the thalamic
    QSM maps have): noise drawn from its residual basis has unit variance and the pilot's mean
    correlation within the ROI (0.4, not the stationary model's few percent), and its pooled null
    of the ROI's maximum t is lower, as the permutations of such data are."""
    from qsmvbm.stats.glm import design_matrix
    from qsmvbm.stats.power import (
        PilotModel,
        pooled_null,
        residual_basis,
        smooth_noise,
        unit_noise,
    )
    from qsmvbm.stats.voxelwise import SvcParams

    rng = np.random.default_rng(7)
    box = _box_model()
    shape, n = box.roi.shape, 60
    shared = rng.standard_normal((n, 1, 1, 1)).astype(np.float32)
    pilot = np.sqrt(0.6) * smooth_noise(rng, n, shape, 3.0) + np.sqrt(0.4) * shared
    pilot = 0.01 * pilot + 0.002 * np.r_[np.ones(n // 2), np.zeros(n // 2)][:, None, None, None]
    X = design_matrix(np.r_[np.ones(n // 2), np.zeros(n // 2)])
    basis = residual_basis([(pilot[:30], X[:30]), (pilot[30:], X[30:])])  # two pooled studies
    assert basis.shape == (n, *shape)
    np.testing.assert_allclose((basis**2).sum(axis=0), 1.0, rtol=1e-5)
    model = PilotModel.from_maps(box.roi, box.mask, box.sd, box.fwhm_mm, box.affine, basis=basis)
    noise = unit_noise(rng, model, 400)
    assert noise[:, model.mask].var(axis=0).mean() == pytest.approx(1.0, abs=0.08)

    def mean_corr(maps):
        z = maps[:, model.roi]
        return float((z.mean(axis=1) ** 2).mean())

    assert mean_corr(noise) == pytest.approx(0.4, abs=0.1)
    assert mean_corr(unit_noise(rng, box, 400)) < 0.1
    # (measured 4.66 against 4.96 with 400 permutations; 800 here, a standard error about 0.07)
    params = SvcParams(n_perm=800, tfce=False)
    with_basis = np.quantile(pooled_null(rng, model, 10, params, 4)[0], 0.95)
    stationary = np.quantile(pooled_null(rng, box, 10, params, 4)[0], 0.95)
    assert with_basis < stationary - 0.15
    with pytest.raises(ValueError, match="basis shape"):
        PilotModel.from_maps(box.roi, box.mask, box.sd, 6.0, box.affine, basis=basis[:, :3])


def test_power_effect_profile_replaces_the_uniform_sphere():
    """A profile equal to the sphere gives the sphere's table exactly (same noise); a profile of
    half the height is the effect halved; a profile of the wrong shape is refused."""
    from qsmvbm.stats.power import power_table
    from qsmvbm.stats.voxelwise import SvcParams

    model = _box_model()
    centre = model.centroid_mm()
    sphere = cl.sphere_mask(model.roi.shape, model.affine, centre, 9.0).astype(float)
    kw = dict(runs=8, params=SvcParams(n_perm=0), methods=["rft"], centre_mm=centre)
    uniform = power_table(model, "box", [0.004, 0.008], [10], **kw)
    same = power_table(model, "box", [0.004, 0.008], [10], profile=sphere, **kw)
    half = power_table(model, "box", [0.008], [10], profile=0.5 * sphere, **kw)
    pd.testing.assert_frame_equal(uniform, same)
    assert half.detections.iloc[0] == uniform[uniform.effect == 0.004].detections.iloc[0]
    with pytest.raises(ValueError, match="profile shape"):
        power_table(model, "box", [0.01], [10], profile=np.ones((3, 3, 3)), **kw)


def test_relative_effects_scale_with_the_reference_map():
    """A relative effect (scale: a reference map, e.g. the controls' mean GM) is a fraction of the
    reference in each voxel: a reference of 0.5 everywhere gives the absolute table at half the
    effect exactly (same noise); a reference that is 0 in half the sphere carries the effect in the
    other half only, so it is found less often; a sign of the reference does not flip the effect."""
    from qsmvbm.stats.power import effect_text, effect_weight, power_table
    from qsmvbm.stats.voxelwise import SvcParams

    model = _box_model()
    centre = model.centroid_mm()
    kw = dict(runs=12, params=SvcParams(n_perm=0), methods=["rft"], centre_mm=centre)
    absolute = power_table(model, "box", [0.003, 0.006], [10], **kw)
    half = np.full(model.roi.shape, 0.5)
    relative = power_table(model, "box", [0.006, 0.012], [10], scale=half, **kw)
    assert list(relative.detections) == list(absolute.detections)
    w = effect_weight(model, centre, 9.0)
    np.testing.assert_array_equal(effect_weight(model, centre, 9.0, scale=-half), 0.5 * w)
    # the reference is 0 on one side of the centre: the effect covers half the sphere
    x = np.arange(model.roi.shape[0])[:, None, None] * np.ones(model.roi.shape)
    side = np.where(x >= np.argwhere(w > 0)[:, 0].mean(), 1.0, 0.0)
    covered = effect_weight(model, centre, 9.0, scale=side)
    assert 0.3 < covered.sum() / w.sum() < 0.7
    big = dict(kw, runs=30)
    whole = power_table(model, "box", [0.006], [10], scale=np.ones(model.roi.shape), **big)
    partial = power_table(model, "box", [0.006], [10], scale=side, **big)
    assert partial.power.iloc[0] < whole.power.iloc[0]
    with pytest.raises(ValueError, match="scale shape"):
        power_table(model, "box", [0.01], [10], scale=np.ones((3, 3, 3)), **kw)
    assert effect_text(0.05, "GM probability", relative=True) == (
        "5% of the controls' mean GM probability"
    )
    assert effect_text(0.01, "ppm") == "0.01 ppm"


def test_effect_spread_keeps_the_integral_and_lowers_the_power():
    """The pipeline's point spread (spread_mm, a Gaussian FWHM): the effect keeps its integral (a
    sum over the crop), its peak falls and it reaches beyond the sphere, and a focal effect spread
    by 12 mm is found less often than the same effect unspread (same noise)."""
    from qsmvbm.stats.power import effect_weight, power_table
    from qsmvbm.stats.voxelwise import SvcParams

    model = _box_model()
    centre = model.centroid_mm()
    sharp = effect_weight(model, centre, 6.0)
    spread = effect_weight(model, centre, 6.0, spread_mm=12.0)
    assert spread.sum() == pytest.approx(sharp.sum(), rel=0.02)
    assert spread.max() < 0.8 * sharp.max()
    assert ((spread > 0.05) & (sharp == 0)).sum() > 0.5 * (sharp > 0).sum()
    kw = dict(runs=30, params=SvcParams(n_perm=0), methods=["rft"], centre_mm=centre)
    focal = power_table(model, "box", [0.008], [10], radius_mm=6.0, **kw)
    blurred = power_table(model, "box", [0.008], [10], radius_mm=6.0, spread_mm=12.0, **kw)
    assert blurred.power.iloc[0] < focal.power.iloc[0]


def test_pilot_noise_range_covers_the_true_noise():
    """The bootstrap over a pilot's subjects of its noise where the effect lies: for Gaussian pilots
    of 10 + 10 whose noise is one value shared over the effect (a whole-ROI offset, the thalami's
    case: the exact range is the scaled chi's of df 18), the 95% range covers the true noise
    (the pilot's estimate over it) in 0.88-0.99 of 150 pilots, and its median ends are the exact
    ones; noise independent over the voxels is known far better (a narrower range)."""
    from scipy import stats as st

    from qsmvbm.stats.glm import design_matrix
    from qsmvbm.stats.power import noise_scale_bootstrap, noise_scale_range

    rng = np.random.default_rng(5)
    x = np.r_[np.ones(10), np.zeros(10)]
    X = design_matrix(x)
    weight = np.ones((3, 3, 2))
    hits, ends = [], []
    for p in range(150):
        noise = rng.standard_normal((20, 1, 1, 1)) + 0.0 * weight  # one value over the effect
        g = np.sqrt(
            ((noise[:, 0, 0, 0] - X @ np.linalg.lstsq(X, noise[:, 0, 0, 0])[0]) ** 2).sum() / 18
        )
        low, high, nu = noise_scale_range(noise_scale_bootstrap(noise, X, x, weight, 200, p), 20)
        hits.append(low <= g <= high)
        ends.append((low, high))
    assert 0.88 <= np.mean(hits) <= 0.99
    exact = np.sqrt(st.chi2.ppf([0.025, 0.975], 18) / 18)
    np.testing.assert_allclose(np.median(ends, axis=0), exact, atol=0.05)
    independent = rng.standard_normal((20, 6, 6, 6))
    low, high, nu = noise_scale_range(
        noise_scale_bootstrap(independent, X, x, np.ones((6, 6, 6))), 20
    )
    assert high - low < 0.6 * (exact[1] - exact[0]) and nu > 100
    with pytest.raises(ValueError, match="every stratum"):
        noise_scale_bootstrap(independent[:11], X[:11], x[:11], np.ones((6, 6, 6)))


def test_power_at_the_ends_of_the_pilot_range():
    """pilot_range simulates each effect also at effect x low and x high on the same studies: a
    range (1, 1) repeats the power exactly, a wide one brackets it."""
    from qsmvbm.stats.power import power_table
    from qsmvbm.stats.voxelwise import SvcParams

    model = _box_model()
    kw = dict(runs=30, params=SvcParams(n_perm=0), methods=["rft"])
    same = power_table(model, "box", [0.008], [6, 12], pilot_range=(1.0, 1.0), **kw)
    assert (same.pilot_low == same.power).all() and (same.pilot_high == same.power).all()
    wide = power_table(model, "box", [0.008], [6, 12], pilot_range=(0.5, 2.0), **kw)
    assert (wide.pilot_low <= wide.power).all() and (wide.power <= wide.pilot_high).all()
    assert wide.pilot_low.sum() < wide.power.sum() < wide.pilot_high.sum()
    plain = power_table(model, "box", [0.008], [6, 12], **kw)
    assert "pilot_low" not in plain.columns
    pd.testing.assert_series_equal(plain.power, wide.power)  # the same studies
    with pytest.raises(ValueError, match="pilot_range"):
        power_table(model, "box", [0.008], [6], pilot_range=(1.2, 0.8), **kw)


@pytest.mark.parametrize("null", ["pooled", "per_study"])
def test_power_with_permutation_nulls_pooled_or_per_study(null):
    """Max-T and TFCE power from a pooled null (the default) and from each study's own permutations:
    nothing planted gives few detections, a 2 SD effect with 20 per group is always found."""
    from qsmvbm.stats.power import power_table
    from qsmvbm.stats.voxelwise import SvcParams

    tab = power_table(
        _box_model(),
        "box",
        [0.0, 0.02],
        [12, 20],
        runs=6,
        params=SvcParams(n_perm=100),
        methods=["perm", "tfce"],
        null=null,
        null_studies=4,
    )
    big = tab[(tab.effect == 0.02) & (tab.n_per_group == 20)]
    assert (big.power == 1.0).all() and len(big) == 2
    # without an effect, false positives only (at 5% per cell; the pooled cells share their noise)
    assert tab[tab.effect == 0.0].detections.max() <= 2
    with pytest.raises(ValueError, match="null must be one of"):
        power_table(_box_model(), "box", [0.0], [12], runs=1, null="exact")


def test_pooled_null_matches_independent_null_studies():
    """The pooled null (1,000 permutations of 10 null studies) against the maxima of 300 independent
    null studies, each analysed once: the 95th percentiles of max-T and max-TFCE agree within their
    Monte Carlo error, and the pooled thresholds hold the FWE of those studies near 5%."""
    from qsmvbm.stats.glm import design_matrix, fit_glm
    from qsmvbm.stats.power import pooled_null, simulate_study
    from qsmvbm.stats.tfce import max_tfce_batch
    from qsmvbm.stats.voxelwise import SvcParams

    model, n = _box_model(), 10
    rng = np.random.default_rng(3)
    max_t, max_tfce = pooled_null(rng, model, n, SvcParams(n_perm=1000, tfce=True), 10)
    assert max_t.shape == max_tfce.shape == (1000, 1)
    search = model.roi & model.mask
    X = design_matrix(np.r_[np.ones(n), np.zeros(n)])
    direct_t, direct_tfce = [], []
    for _ in range(300):
        y = simulate_study(rng, model, n, 0.0, None, 0.0)[:, search].astype(np.float64)
        t = fit_glm(y, X).t
        direct_t.append(t.max())
        direct_tfce.append(max_tfce_batch(t[None], search)[0])
    q_t, q_tfce = np.quantile(max_t, 0.95), np.quantile(max_tfce, 0.95)
    assert q_t == pytest.approx(np.quantile(direct_t, 0.95), abs=0.35)
    assert q_tfce == pytest.approx(np.quantile(direct_tfce, 0.95), rel=0.2)
    # 300 studies at a true 5%: 95% of binomial draws fall in 8-24 (2.7-8.0%)
    assert 8 <= np.sum(np.array(direct_t) >= q_t) <= 24
    assert 8 <= np.sum(np.array(direct_tfce) >= q_tfce) <= 24


def test_power_model_spends_the_covariates_degrees_of_freedom():
    """With k covariates (TIV for GM) a simulated study's design has the analysis' 2n - 2 - k
    degrees of freedom, and the pooled null's max-t threshold rises with the heavier tails
    (5 per group: df 8 -> 5)."""
    from qsmvbm.stats.power import model_design, pooled_null
    from qsmvbm.stats.voxelwise import SvcParams

    X = model_design(5, 3)
    assert X.shape == (10, 5) and np.linalg.matrix_rank(X) == 5
    assert X[:, 0].tolist() == [1.0] * 5 + [0.0] * 5
    assert np.array_equal(model_design(5, 0), model_design(5))
    model, params = _box_model(), SvcParams(n_perm=400)
    q = [
        np.quantile(pooled_null(np.random.default_rng(1), model, 5, params, 4, k)[0], 0.95)
        for k in (0, 3)
    ]
    assert q[1] > q[0] + 0.3, q


def test_n_for_power_interpolates_between_group_sizes():
    """The n per group for the target power, linear between sizes (NaN when none reaches it), and
    at either end of the pilot's noise range; the paragraph carries them or the range's factors."""
    from qsmvbm.stats.power import justification, n_for_power

    tab = pd.DataFrame(
        {
            "roi": "R",
            "effect": 0.01,
            "method": "rft",
            "n_per_group": [10, 20, 30, 40],
            "power": [0.2, 0.6, 0.9, 1.0],
        }
    )
    need = n_for_power(tab, 0.8)
    assert need["n_per_group_for_power"].iloc[0] == 27  # 20 + (0.8 - 0.6) / 0.3 * 10 = 26.7
    none = n_for_power(tab.assign(power=[0.1, 0.2, 0.3, 0.4]), 0.8)
    assert np.isnan(none["n_per_group_for_power"].iloc[0])
    text = justification(need, "QSM", "ppm", "a pilot")
    assert "27 per group" in text and "80% power" in text
    # at the ends of the pilot's noise range (power_table's pilot_low, pilot_high)
    ends = tab.assign(pilot_low=[0.1, 0.3, 0.5, 0.7], pilot_high=[0.5, 0.9, 1.0, 1.0])
    need = n_for_power(ends, 0.8)
    row = need.iloc[0]
    assert (row.n_per_group_for_power, row.n_per_group_pilot_optimistic) == (27, 18)
    assert np.isnan(row.n_per_group_pilot_pessimistic)
    text = justification(need, "QSM", "ppm", "a pilot", pilot_ranges={"R": (0.8, 1.2)}, pilot_n=20)
    assert "27 per group (18 to more than 40 over the pilot's noise range)" in text
    assert "R 0.80-1.20" in text and "its 20 subjects" in text
    flat = need.assign(n_per_group_pilot_optimistic=27.0, n_per_group_pilot_pessimistic=27.0)
    assert "27 per group (the same over the pilot's noise range)" in justification(
        flat, "QSM", "ppm", "a pilot"
    )
    bare = justification(
        need.iloc[:, :4].assign(target_power=0.8, largest_n_simulated=40),
        "QSM",
        "ppm",
        "a pilot",
        pilot_ranges={"R": (0.8, 1.2)},
    )
    assert "pilot_bands: true" in bare


def test_gm_spread_caveat_names_the_unspread_rois_only():
    """GM sample sizes modelled without the pipeline's spread carry the measured caution; ROIs
    with a spread none."""
    from qsmvbm.stats.power import gm_spread_caveat

    text = gm_spread_caveat({"Precentral_L": 0.0, "Thalamus_R": 0.0, "Thalamus_L": 18.0})
    assert "(Precentral_L, Thalamus_R)" in text and "18 mm in Thalamus_L" in text
    assert "spread_mm" in text
    assert gm_spread_caveat({"Thalamus_L": 18.0, "Thalamus_R": 4.0}) == ""


def test_rft_caveat_only_with_rft():
    """The measured RFT caution (the model's thalamic RFT power was optimistic against the
    full-pipeline cohorts) goes with RFT only."""
    from qsmvbm.stats.power import rft_caveat

    assert "5 of 14" in rft_caveat(["rft", "perm"])
    assert rft_caveat(["perm", "tfce"]) == ""


def _group_outputs(lay, tpl, modality: str, sd: float, fwhm: float, df: int) -> None:
    """A finished run's group outputs that qsmvbm-power reads: a uniform residual SD in the
    template mask, the mask as the analysis mask, and the GLM record (FWHM in mm)."""
    import json

    nib.save(
        nib.Nifti1Image(np.where(tpl.mask, sd, 0).astype(np.float32), tpl.affine),
        lay.group("resid_sd", modality),
    )
    nib.save(
        nib.Nifti1Image(tpl.mask.astype(np.uint8), tpl.affine), lay.group("svc_mask", modality)
    )
    record = {"fwhm_mm": [fwhm] * 3, "n": 16, "df": df}
    lay.group("glm_json", modality).write_text(json.dumps(record))


def test_power_command_on_a_finished_run(tmp_path):
    """qsmvbm-power reads a run's residual SD, analysis mask and GLM record and writes the power
    table, the sample sizes, the figure and the paragraph."""
    import json

    import yaml

    from qsmvbm.config import workflow_defaults
    from qsmvbm.layout import Layout
    from qsmvbm.stats.power_cli import main
    from qsmvbm.templates import load_template

    lay = Layout.from_config(workflow_defaults(), tmp_path / "run")
    tpl = load_template(2)
    lay.group_dir.mkdir(parents=True)
    _group_outputs(lay, tpl, "qsm", sd=0.01, fwhm=5.0, df=14)
    cfg = tmp_path / "power.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "run": str(lay.output_dir),
                "n_per_group": [8, 16],
                "runs": 3,
                "methods": ["rft"],
                "noise": "gaussian",
                "pilot_bootstrap": 0,  # no subject maps yet
                "modalities": {"qsm": {"rois": ["Thalamus_L", "Thalamus_R"], "effects": [0.02]}},
            }
        )
    )
    assert main([str(cfg)]) == 0
    tab = pd.read_csv(lay.group("power_table"), sep="\t")
    assert len(tab) == 4 and set(tab.method) == {"rft"}
    # two processes, one ROI each: the same table
    assert main([str(cfg), "--jobs", "2"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(lay.group("power_table"), sep="\t"), tab)
    assert lay.group("power_png").exists() and lay.group("power_needed").exists()
    out = json.loads(lay.group("power_json").read_text())
    assert "Sample size (QSM)" in out["sample_size_paragraphs"]["qsm"]
    assert out["models"][0]["noise"] == "gaussian"
    # thalamic QSM with RFT: the measured RFT caution (max-T and TFCE agreed), no other
    assert "Caution (RFT)" in out["sample_size_paragraphs"]["qsm"]
    assert "Caution (Thalamus" not in out["sample_size_paragraphs"]["qsm"]
    # GM without the pipeline's spread: the paragraph carries the measured caution
    _group_outputs(lay, tpl, "gm", sd=0.03, fwhm=7.0, df=13)
    gm_cfg = tmp_path / "power_gm.yaml"
    gm = yaml.safe_load(cfg.read_text())
    gm["modalities"] = {
        "gm": {"rois": ["Thalamus_L", "Thalamus_R"], "effects": [0.05], "scale": "absolute"}
    }
    gm_cfg.write_text(yaml.safe_dump(gm))
    assert main([str(gm_cfg)]) == 0
    gm_text = json.loads(lay.group("power_json").read_text())["sample_size_paragraphs"]["gm"]
    assert "Caution (Thalamus_L, Thalamus_R)" in gm_text and "Caution (RFT)" not in gm_text
    # the default noise: the run's residuals, from its design and subject maps; here each
    # subject's left thalamus is offset as a whole (shared over the ROI), which the model keeps
    rng = np.random.default_rng(0)
    pids = [f"sub-{g}{i}" for g in ("ALS", "NC") for i in range(4)]
    pd.DataFrame(
        {"participant_id": pids, "group": [p[4:-1] for p in pids], "included": True}
    ).to_csv(lay.group("design"), sep="\t", index=False)
    from qsmvbm.atlas import aal3_on_grid, region_mask

    thal = region_mask(aal3_on_grid(tpl.mask.shape, tpl.affine), ["Thalamus_L"])
    for pid in pids:
        path = lay.group_map("qsm", pid)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = 0.01 * rng.standard_normal(tpl.mask.shape) + 0.02 * rng.standard_normal() * thal
        nib.save(nib.Nifti1Image(data.astype(np.float32), tpl.affine), path)
    text = yaml.safe_load(cfg.read_text())
    del text["noise"], text["pilot_bootstrap"]
    cfg.write_text(yaml.safe_dump(text))
    assert main([str(cfg)]) == 0
    out = json.loads(lay.group("power_json").read_text())
    models = {m["roi"]: m for m in out["models"]}
    assert models["Thalamus_L"]["noise"] == "residuals"
    assert models["Thalamus_L"]["roi_mean_correlation"] > 0.5
    assert models["Thalamus_R"]["roi_mean_correlation"] < 0.1
    # the pilot's bootstrap (on by default): 4 + 4 subjects know a noise shared over the left
    # thalamus far worse than the right's independent noise
    lo_l, hi_l = models["Thalamus_L"]["pilot_noise_range"]
    lo_r, hi_r = models["Thalamus_R"]["pilot_noise_range"]
    assert lo_l < lo_r < 1 < hi_r < hi_l
    assert "pilot knows its noise" in out["sample_size_paragraphs"]["qsm"]
    # pilot_bands: the table and the needed n at the range's ends
    text["pilot_bands"] = True
    cfg.write_text(yaml.safe_dump(text))
    assert main([str(cfg)]) == 0
    banded = pd.read_csv(lay.group("power_table"), sep="\t")
    assert (banded.pilot_low <= banded.pilot_high).all()
    assert "n_per_group_pilot_pessimistic" in pd.read_csv(lay.group("power_needed"), sep="\t")
    del text["pilot_bands"]
    cfg.write_text(yaml.safe_dump(text))
    # GM effects relative by default: fractions of the controls' mean map (0.4 in the left
    # thalamus here, 0.3 in the patients), read from the subject maps
    for pid in pids:
        path = lay.group_map("gm", pid)
        path.parent.mkdir(parents=True, exist_ok=True)
        level = 0.4 if pid.startswith("sub-NC") else 0.3
        data = (level * thal + 0.01 * rng.standard_normal(tpl.mask.shape)) * tpl.mask
        nib.save(nib.Nifti1Image(data.astype(np.float32), tpl.affine), path)
    gm["modalities"] = {"gm": {"rois": ["Thalamus_L"], "effects": [0.05]}}
    gm_cfg.write_text(yaml.safe_dump(gm))
    assert main([str(gm_cfg)]) == 0
    out = json.loads(lay.group("power_json").read_text())
    assert out["modalities"]["gm"]["scale"] == "relative"
    assert out["models"][0]["reference_median_in_roi"] == pytest.approx(0.4, abs=0.01)
    assert "5% of the controls' mean" in out["sample_size_paragraphs"]["gm"]
    # with the measured spread: no caution, and the spread reaches the model
    gm["modalities"]["gm"]["spread_mm"] = {"Thalamus_L": 20.0}
    gm_cfg.write_text(yaml.safe_dump(gm))
    assert main([str(gm_cfg)]) == 0
    out = json.loads(lay.group("power_json").read_text())
    assert out["models"][0]["spread_mm"] == 20.0
    assert "Caution" not in out["sample_size_paragraphs"]["gm"]
    lay.group_map("qsm", pids[0]).unlink()
    assert main([str(cfg)]) == 2
    cfg.write_text(
        yaml.safe_dump(
            {
                "run": str(tmp_path / "nowhere"),
                "modalities": {"qsm": {"rois": ["Thalamus_L"], "effects": [0.01]}},
            }
        )
    )
    assert main([str(cfg)]) == 2
