"""QSM reconstruction: unit tests of each stage and accuracy against ground truth."""

import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from qsmvbm.bids import load_megre
from qsmvbm.dipole import forward_field
from qsmvbm.qsm import background, echoes, inversion, reference, unwrap
from qsmvbm.qsm.pipeline import reconstruct
from qsmvbm.simulate.cohort_io import truth_dir, write_cohort_tables
from qsmvbm.simulate.settings import load_simulation_config, load_tissue_table
from qsmvbm.simulate.subject import simulate_subject, truth_paths

from .conftest import ROOT, run_qsmvbm


def _grid(n=64):
    c = (n - 1) / 2
    return np.meshgrid(*(np.arange(n, dtype=np.float32) - c,) * 3, indexing="ij")


def _harmonic_basis(x, y, z):
    """Harmonic polynomials up to degree 2 (plus the constant)."""
    return (
        np.stack([np.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, x * x - z * z])
        .reshape(9, -1)
        .T
    )


def test_laplacian_unwrap_recovers_up_to_a_harmonic_term():
    x, y, z = _grid(64)
    mask = (x**2 + y**2 + z**2) < 26**2
    true = (
        12 * np.exp(-((x - 5) ** 2 + y**2 + (z + 3) ** 2) / 300) + 0.15 * x + 0.002 * (y * y)
    ).astype(np.float32)
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    assert np.abs(true - wrapped).max() > 6  # really wrapped
    un = unwrap.laplacian_unwrap(wrapped, (1, 1, 1), mask)
    diff = (un - true)[mask]
    basis = _harmonic_basis(x[mask], y[mask], z[mask])
    coef, *_ = np.linalg.lstsq(basis, diff, rcond=None)
    resid = diff - basis @ coef
    inner = mask & ((x**2 + y**2 + z**2) < 20**2)
    assert np.sqrt(np.mean(resid[inner[mask]] ** 2)) < 0.05 * true[mask].std()


def test_path_unwrap_is_exact():
    x, y, z = _grid(48)
    mask = (x**2 + y**2 + z**2) < 20**2
    true = (0.4 * x + 6 * np.exp(-(x**2 + y**2 + z**2) / 200)).astype(np.float32)
    un = unwrap.path_unwrap(np.angle(np.exp(1j * true)).astype(np.float32), mask)
    k = np.round(np.median((un - true)[mask]) / (2 * np.pi))
    np.testing.assert_allclose(un[mask] - 2 * np.pi * k, true[mask], atol=1e-4)


def test_complex_fit_recovers_frequency_and_noise():
    rng = np.random.default_rng(1)
    shape, n_e = (20, 20, 10), 8
    p1_true = rng.uniform(-2.5, 2.5, shape).astype(
        np.float32
    )  # rad per echo spacing, wraps over echoes
    p0_true = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
    amp = np.exp(-0.05 * np.arange(n_e))[None, None, None, :] * 100
    n = np.arange(n_e)
    sig = amp * np.exp(1j * (p0_true[..., None] + n * p1_true[..., None]))
    sigma = 2.0
    sig = sig + rng.normal(0, sigma, sig.shape) + 1j * rng.normal(0, sigma, sig.shape)
    mask = np.ones(shape, bool)
    p1, p0, se, _ = echoes.fit_complex(np.abs(sig), np.angle(sig), mask)
    err = np.angle(np.exp(1j * (p1 - p1_true)))
    assert np.abs(err).max() < 0.1
    # the reported standard error matches the actual scatter
    assert np.std(err) == pytest.approx(np.median(se), rel=0.25)


def test_two_echo_fit_reports_the_noise_of_the_phase_difference():
    """Two echoes (a dual-echo GRE, a field map's phase difference) are fitted exactly, so the residual
    holds no noise: the standard error must come from the magnitudes (Cramer-Rao) and an estimate of
    the complex noise, and match the actual scatter of p1 (a residual-based SE was ~0 and the phase-
    quality mask kept random voxels of a real field map)."""
    rng = np.random.default_rng(2)
    shape = (40, 40, 30)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, k) for k in shape], indexing="ij")
    amp1 = 150 + 100 * x  # smooth magnitude 50..250
    amp = np.stack([amp1, 0.8 * amp1], -1)
    p1_true = (1.5 * y + 0.5 * z).astype(np.float32)
    p0_true = 0.8 * x * y
    sig = amp * np.exp(1j * (p0_true[..., None] + np.arange(2) * p1_true[..., None]))
    sigma = 4.0  # per component: complex noise variance 2 sigma^2
    sig = sig + rng.normal(0, sigma, sig.shape) + 1j * rng.normal(0, sigma, sig.shape)
    mask = np.ones(shape, bool)
    p1, _, se, _ = echoes.fit_complex(np.abs(sig), np.angle(sig), mask)
    err = np.angle(np.exp(1j * (p1 - p1_true)))
    cramer_rao = sigma * np.sqrt(1 / amp[..., 0] ** 2 + 1 / amp[..., 1] ** 2)
    assert np.median(se / cramer_rao) == pytest.approx(1.0, rel=0.1)
    z_score = err / se
    assert np.std(z_score) == pytest.approx(1.0, rel=0.1)
    assert echoes.complex_noise_variance(sig[..., 0], mask) == pytest.approx(2 * sigma**2, rel=0.1)


def test_unevenly_spaced_echoes_take_the_weighted_fit():
    """Echo times 3, 8, 15, 24 ms (not equally spaced): the default complex fit cannot model them,
    so the chain takes the weighted fit of unwrapped echoes, says so, and recovers the field of a
    paramagnetic sphere (local field against the forward model, inside the final mask)."""
    n = 48
    x, y, z = _grid(n)
    mask = (x**2 + y**2 + z**2) < 20**2
    chi = np.where((x**2 + y**2 + z**2) < 5**2, 0.2, 0.0).astype(np.float32)
    field = forward_field(chi, (1.0, 1.0, 1.0), (0, 0, 1)).astype(np.float32)  # ppm
    te = np.array([0.003, 0.008, 0.015, 0.024])
    b0 = 3.0
    omega = field * 1e-6 * 2 * np.pi * 42.577e6 * b0  # rad/s
    rng = np.random.default_rng(3)
    phase = np.angle(np.exp(1j * (0.5 + omega[..., None] * te)))
    phase = (phase + rng.normal(0, 0.01, phase.shape)).astype(np.float32)
    mag = np.where(mask, 1.0, 0.05)[..., None] * np.exp(-te / 0.05) * np.ones(4, np.float32)
    r = reconstruct(mag.astype(np.float32), phase, np.eye(4), te, b0, {"inversion": "tkd"}, mask)
    assert r.info["combination_used"].startswith("wls")
    fm = r.final_mask
    assert np.corrcoef(r.local_field[fm], field[fm])[0, 1] > 0.95
    assert r.chi[(x**2 + y**2 + z**2) < 3**2].mean() > 0.1


def test_wls_fit_recovers_frequency():
    te = np.array([0.002, 0.006, 0.010, 0.014])
    omega = np.full((4, 4, 4), 300.0)
    ph = 0.3 + omega[..., None] * te
    om, p0, se = echoes.fit_wls(ph.astype(np.float32), te, np.ones((4, 4, 4), bool))
    np.testing.assert_allclose(om, 300.0, rtol=1e-4)
    np.testing.assert_allclose(p0, 0.3, atol=1e-3)
    assert np.abs(se).max() < 1e-2


def test_vsharp_removes_harmonic_background():
    """A background from a source outside the mask disappears; the local field survives."""
    n = 80
    x, y, z = _grid(n)
    mask = (x**2 + y**2 + (z / 1.2) ** 2) < 28**2
    chi_in = np.where(mask & (((x - 6) ** 2 + y**2 + z**2) < 36), 0.1, 0).astype(np.float32)
    chi_in += np.where(mask & (((x + 8) ** 2 + (y - 5) ** 2 + z**2) < 25), -0.05, 0).astype(
        np.float32
    )
    chi_out = np.where(((x - 36) ** 2 + y**2 + (z + 10) ** 2) < 30, -9.0, 0).astype(np.float32)
    local = forward_field(chi_in, (1, 1, 1))
    bg = forward_field(chi_out, (1, 1, 1))
    assert bg[mask].std() > 3 * local[mask].std()
    est_total, m1 = background.vsharp(local + bg, mask, (1, 1, 1))
    est_local, m2 = background.vsharp(local, mask, (1, 1, 1))
    sel = m1 & m2
    residual_bg = (est_total - est_local)[sel]
    assert np.sqrt(np.mean(residual_bg**2)) < 0.02 * bg[sel].std()
    # in the interior the local field is kept (up to SHARP's low-frequency loss)
    interior = sel & ((x**2 + y**2 + z**2) < 15**2)
    a = est_local[interior] - est_local[interior].mean()
    b = local[interior] - local[interior].mean()
    assert np.corrcoef(a, b)[0, 1] > 0.95
    assert m1.sum() < mask.sum()


def _edge_phantom(n=80):
    """A head-like ellipsoid mask with local sources (one 2 voxels from the edge) and a strong
    source outside it: (mask, local field, background field, depth of each voxel in voxels)."""
    from scipy import ndimage

    x, y, z = _grid(n)
    mask = (x**2 + y**2 + (z / 1.2) ** 2) < 28**2
    chi_in = np.zeros(mask.shape, np.float32)
    for (cx, cy, cz), r2, v in (
        ((6, 0, 0), 36, 0.1),
        ((-8, 5, 0), 25, -0.05),
        ((24, 0, 0), 9, 0.1),
    ):
        chi_in += np.where(mask & (((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < r2), v, 0)
    chi_out = np.where(((x - 36) ** 2 + y**2 + (z + 10) ** 2) < 30, -9.0, 0).astype(np.float32)
    local = forward_field(chi_in.astype(np.float32), (1, 1, 1))
    bg = forward_field(chi_out, (1, 1, 1))
    return mask, local, bg, ndimage.distance_transform_edt(mask)


def _rel_error(est, local, sel, keep):
    """RMS error (after removing the mean offset over ``keep``) relative to the local field's SD."""
    d = est - local
    return float(np.sqrt(np.mean((d[sel] - d[keep].mean()) ** 2)) / local[keep].std())


@pytest.mark.parametrize("method", ["lbv", "ismv", "resharp"])
def test_edge_methods_remove_an_outside_source(method):
    """A background from a source outside the mask is removed to < 1% of its SD (the total field
    with and without it give the same local field), and the deep local field is kept."""
    mask, local, bg, depth = _edge_phantom()
    fn = {
        # rim_k=0: the Laplace solve itself (the rim test, which depends on the field, has its own)
        "lbv": lambda f: background.lbv(f, mask, (1, 1, 1), rim_k=0),
        "ismv": lambda f: background.ismv(f, mask, (1, 1, 1)),
        "resharp": lambda f: background.resharp(f, mask, (1, 1, 1)),
    }[method]
    est, keep = fn(local + bg)
    est_local, keep2 = fn(local)
    assert np.array_equal(keep, keep2)
    residual = (est - est_local)[keep]
    assert np.sqrt(np.mean(residual**2)) < 0.01 * bg[keep].std()
    deep = keep & (depth > 12)
    assert _rel_error(est, local, deep, keep) < 0.15
    if method == "lbv":  # no kernel erosion: only the boundary layer goes
        assert keep.sum() > 0.9 * mask.sum()
    else:  # the mask is eroded by the 5 mm kernel
        assert keep.any() and not (keep & (depth <= 4)).any()


def test_lbv_keeps_the_edge_better_than_vsharp():
    """Within 6 voxels of the edge, where the cortex lies, LBV's local field is closer to the truth
    than V-SHARP's (measured here: 0-3 voxels 0.20 vs 0.30, 3-6 voxels 0.13 vs 0.23 of the local
    field's SD), over the voxels both keep."""
    mask, local, bg, depth = _edge_phantom()
    v, kv = background.vsharp(local + bg, mask, (1, 1, 1), tsvd=0.02)
    # the mask is exact here, so no voxel need go before the solve (erode 0, no rim test; the
    # boundary, where LBV's local field is 0, is left out instead)
    lb, kl = background.lbv(local + bg, mask, (1, 1, 1), peel=1, erode=0, rim_k=0)
    both = kv & kl
    for lo, hi in ((0, 3), (3, 6)):
        sel = both & (depth > lo) & (depth <= hi)
        assert _rel_error(lb, local, sel, both) < 0.8 * _rel_error(v, local, sel, both), (lo, hi)


def _edge_phantom_chi(n=80):
    """The susceptibility inside :func:`_edge_phantom`'s mask (ppm) whose field is its local field."""
    x, y, z = _grid(n)
    mask = (x**2 + y**2 + (z / 1.2) ** 2) < 28**2
    chi = np.zeros(mask.shape, np.float32)
    for (cx, cy, cz), r2, v in (
        ((6, 0, 0), 36, 0.1),
        ((-8, 5, 0), 25, -0.05),
        ((24, 0, 0), 9, 0.1),
    ):
        chi += np.where(mask & (((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < r2), v, 0)
    return chi


def test_tfi_inverts_the_total_field_without_background_removal():
    """Total field inversion of the edge phantom's total field (an outside -9 ppm source, noise
    0.002 ppm): the chi error is below 20% of the truth's (NRMSE; measured 0.14) and below
    LBV + STAR's (0.34) overall and within 3 and 3-6 voxels of the edge (measured 0.0014 vs
    0.0029 and 0.0013 vs 0.0033 ppm RMS); the background alone leaves under 2% of the chi SD in
    the brain (measured 0.5%)."""
    mask, local, bg, depth = _edge_phantom()
    chi_true = _edge_phantom_chi()
    np.testing.assert_allclose(forward_field(chi_true, (1, 1, 1)), local, atol=1e-6)
    rng = np.random.default_rng(0)
    total = (local + bg + rng.normal(0, 0.002, local.shape)).astype(np.float32)
    chi, implied, info = inversion.tfi(total, mask, (1, 1, 1))
    assert info["outer_iterations"] >= 2
    lb, keep = background.lbv(total, mask, (1, 1, 1), rim_k=0)
    chi_lbv, _ = inversion.star(lb, keep, (1, 1, 1))

    def err(c, sel):
        e = (c - c[keep].mean()) - (chi_true - chi_true[keep].mean())
        return float(np.sqrt(np.mean(e[sel] ** 2)))

    truth_norm = float(np.sqrt(np.mean((chi_true[keep] - chi_true[keep].mean()) ** 2)))
    assert err(chi, keep) < 0.2 * truth_norm
    assert err(chi, keep) < 0.6 * err(chi_lbv, keep)
    for lo, hi in ((0, 3), (3, 6)):
        sel = keep & (depth > lo) & (depth <= hi)
        assert err(chi, sel) < 0.7 * err(chi_lbv, sel), (lo, hi)
    assert np.corrcoef(implied[mask], local[mask])[0, 1] > 0.98  # the local field TFI implies
    assert not chi[~mask].any()
    chi_bg, _, _ = inversion.tfi(bg.astype(np.float32), mask, (1, 1, 1))
    left = chi_bg[mask] - chi_bg[mask].mean()
    assert np.sqrt(np.mean(left**2)) < 0.02 * chi_true[mask].std()


def test_lbv_drops_a_mask_rim_that_holds_non_brain_sources():
    """A brain mask one voxel too large (partial volume, registration) holds a layer of bone
    (-2 ppm), whose field is not harmonic there: as Dirichlet data it spoils LBV everywhere
    (measured deep error 37 times the weak local field's SD). The default rim test drops that
    layer (and the brain's own outer layers where the bone's field bends sharply, the shell
    touching the brain everywhere here), and LBV's deep error is that of the exact mask; the
    former default, which dropped the whole outer layer (erode=1), did as well."""
    from scipy import ndimage

    mask, local, bg, depth = _edge_phantom()
    shell = ndimage.binary_dilation(mask, iterations=2) & ~mask
    bone = forward_field(np.where(shell, -2.0, 0).astype(np.float32), (1, 1, 1))
    given = ndimage.binary_dilation(mask)  # one voxel into the bone
    total = local + bg + bone + _noise(mask.shape)
    deep = mask & (depth > 8)
    info: dict = {}
    naive, k0 = background.lbv(total, given, (1, 1, 1), rim_k=0)
    robust, k1 = background.lbv(total, given, (1, 1, 1), info=info)
    exact, k2 = background.lbv(total, mask, (1, 1, 1), rim_k=0)
    eroded, k3 = background.lbv(total, given, (1, 1, 1), peel=0, erode=1, rim_k=0)
    assert np.array_equal(k3, mask) and (k1 & ~mask).sum() < 0.01 * (given & ~mask).sum()
    assert sum(info["rim_dropped"]) >= 0.99 * (given & ~mask).sum()
    sel = deep & k0 & k1 & k2
    e_naive, e_robust, e_exact, e_eroded = (
        _rel_error(e, local, sel, sel) for e in (naive, robust, exact, eroded)
    )
    assert e_naive > 10 * e_robust, (e_naive, e_robust)
    assert e_robust < 1.5 * e_exact and e_eroded < 1.5 * e_exact, (e_robust, e_eroded, e_exact)


def _noise(shape, sd=0.002, seed=0):
    """Field-map noise (ppm) of a 3 T multi-echo scan at SNR ~100."""
    return np.random.default_rng(seed).normal(0, sd, shape).astype(np.float32)


def test_harmonic_rim_keeps_a_clean_boundary():
    """Where the mask ends in tissue (no source in the boundary voxels), the rim test drops
    (almost) nothing with a real scan's noise, even beside a strong (-9 ppm) source 4.5 voxels
    outside the mask; noise-free, it drops only boundary voxels where that source's field bends
    sharply (within 17 voxels of it), and a constant field is left alone."""
    mask, local, bg, _ = _edge_phantom()
    x, y, z = _grid(80)
    kept, dropped = background.harmonic_rim(local + bg + _noise(mask.shape), mask)
    assert sum(dropped) <= 5 and not (kept & ~mask).any()
    kept, dropped = background.harmonic_rim(local + bg, mask)
    near = np.sqrt((x - 36) ** 2 + y**2 + (z + 10) ** 2) < 17
    gone = mask & ~kept
    assert gone.any() and not (gone & ~near).any()
    assert gone.sum() < 0.05 * background.mask_boundary(mask).sum()
    kept, dropped = background.harmonic_rim(np.ones(mask.shape, np.float32), mask)
    assert dropped == [] and np.array_equal(kept, mask)


def test_harmonic_rim_finds_an_air_pocket_two_layers_deep():
    """A mask that bulges two voxels into an air pocket (+9 ppm against tissue, a sinus in partial
    volume) over one patch of the edge: the rim test drops the pocket layer by layer (the second
    layer is exposed by the first) and the tissue voxels within 4.5 voxels of it where its field
    bends sharply, leaves the rest of the boundary, stops at ``max_layers``, and
    LBV's deep error comes back to the exact mask's, from many times it."""
    from scipy import ndimage

    mask, local, bg, depth = _edge_phantom()
    x, y, z = _grid(80)
    patch = (np.abs(y) <= 6) & (np.abs(z) <= 6) & (x < 0)
    pocket = ndimage.binary_dilation(mask, iterations=2) & ~mask & patch
    air = forward_field(np.where(pocket, 9.0, 0).astype(np.float32), (1, 1, 1))
    given = mask | pocket
    total = local + bg + air + _noise(mask.shape)
    kept, dropped = background.harmonic_rim(total, given)
    gone = given & ~kept
    assert len(dropped) >= 2 and sum(dropped) == gone.sum()
    assert (gone & pocket).sum() >= 0.9 * pocket.sum()
    # beside the pocket (and the -9 ppm source) the field bends too sharply for the 7-point
    # solve: those voxels go as well, no others
    near_source = np.sqrt((x - 36) ** 2 + y**2 + (z + 10) ** 2) < 17
    near_pocket = ndimage.distance_transform_edt(~pocket) <= 4.5
    assert not (gone & ~near_pocket & ~near_source).any()
    _, first = background.harmonic_rim(total, given, max_layers=1)
    assert first == dropped[:1]
    deep = mask & (depth > 8)
    exact, k_exact = background.lbv(total, mask, (1, 1, 1), rim_k=0)
    naive, k_naive = background.lbv(total, given, (1, 1, 1), rim_k=0)
    robust, k_robust = background.lbv(total, given, (1, 1, 1))
    sel = deep & k_exact & k_naive & k_robust
    e_exact, e_naive, e_robust = (_rel_error(e, local, sel, sel) for e in (exact, naive, robust))
    assert e_naive > 5 * e_exact and e_robust < 1.5 * e_exact, (e_exact, e_naive, e_robust)


def test_lbv_harmonic_solution_is_exact_for_a_harmonic_field():
    """A harmonic polynomial is its own Laplace solution from its boundary values: LBV returns a
    local field of ~0 (discretisation of the 7-point Laplacian is exact for degree <= 3)."""
    x, y, z = _grid(40)
    mask = (x**2 + (y / 1.3) ** 2 + z**2) < 15**2
    harmonic = (0.3 * x + 0.02 * (x * x - z * z) + 0.001 * (x**3 - 3 * x * y * y)).astype(
        np.float32
    )
    local, keep = background.lbv(harmonic, mask, (1, 1, 1), tol=1e-10, peel=1)
    assert np.abs(local[keep]).max() < 1e-4 * np.abs(harmonic[mask]).max()


def _residual_edge_case():
    """The edge phantom's deep local field (sources at depth > 8 voxels) plus a residual
    background confined to the outer 3 voxels (what a kernel method leaves at the edge), and a
    bright R2* tube crossing that band: (mask, local, residual, r2star, tube, depth)."""
    mask, _, _, depth = _edge_phantom()
    x, y, z = _grid(80)
    chi = np.zeros(mask.shape, np.float32)
    chi += np.where(((x - 6) ** 2 + y**2 + z**2) < 36, 0.1, 0).astype(np.float32)
    local = forward_field(chi, (1, 1, 1)) * mask
    residual = np.where(mask & (depth <= 3), 0.2 * np.exp(-(depth - 1) / 2.0), 0).astype(np.float32)
    residual *= np.where(x > 0, 1.0, -0.5).astype(np.float32)
    tube = mask & (depth <= 8) & (y**2 + z**2 <= 4) & (x > 0)
    r2star = np.where(mask, 20.0, 0).astype(np.float32) + np.where(tube, 80.0, 0)
    return mask, local, residual, r2star.astype(np.float32), tube, depth


def test_msmv_removes_a_residual_edge_background_and_spares_vessels():
    """mSMV (Roberts 2024) zeroes the edge-band voxels whose field exceeds the kernel limit: every
    such voxel of a residual background confined to the outer voxels is 0 afterwards, the RMS
    error there falls by > 30%; voxels deeper than the 5 mm band are untouched; a bright R2* tube
    in the band keeps its field."""
    mask, local, residual, r2star, tube, depth = _residual_edge_case()
    field = (local + residual).astype(np.float32)
    out, info = background.msmv(field, mask, (1, 1, 1), r2star=r2star)
    band = mask & (depth <= 3)
    before = np.sqrt(np.mean((field - local)[band] ** 2))
    after = np.sqrt(np.mean((out - local)[band & ~tube] ** 2))
    assert after < 0.7 * before, (after, before, info)
    strong = band & ~tube & (np.abs(field) > info["threshold"])
    assert strong.sum() > 0.1 * band.sum() and not out[strong].any()
    deep = mask & (depth > 6)
    assert np.array_equal(out[deep], field[deep])
    spared = tube & band & (np.abs(field) > info["threshold"])
    assert spared.any() and np.array_equal(out[spared], field[spared])
    assert info["removed_voxels"] > 0 and info["vessel_voxels"] > 0


def test_kernel_limit_of_a_spike_is_six_sevenths_of_it():
    """The smallest kernel (radius one voxel) is the voxel and its 6 face neighbours: a single
    spike of amplitude A deviates from its spherical mean by A - A/7, the largest deviation."""
    x, y, z = _grid(32)
    mask = (x**2 + y**2 + z**2) < 12**2
    field = np.zeros(mask.shape, np.float32)
    field[16, 16, 16] = 0.7
    t = background.smv_kernel_limit(field, mask, (1, 1, 1))
    assert t == pytest.approx(0.6, rel=1e-4)


def test_inversions_recover_a_known_source():
    n = 64
    x, y, z = _grid(n)
    mask = (x**2 + y**2 + z**2) < 26**2
    chi = np.where(((x - 4) ** 2 + y**2 + z**2) < 49, 0.1, 0).astype(np.float32)
    chi += np.where(((x + 10) ** 2 + (y + 3) ** 2 + (z - 4) ** 2) < 16, -0.05, 0).astype(np.float32)
    field = forward_field(chi, (1, 1, 1)) * mask
    src = ((x - 4) ** 2 + y**2 + z**2) < 25
    for name, fn in [
        ("tkd", lambda: inversion.tkd(field, mask, (1, 1, 1))),
        ("tvadmm", lambda: inversion.tv_admm(field, mask, (1, 1, 1))[0]),
        ("star", lambda: inversion.star(field, mask, (1, 1, 1))[0]),
        ("ilsqr", lambda: inversion.ilsqr(field, mask, (1, 1, 1))[0]),
    ]:
        est, _ = reference.reference(fn(), mask)
        tr, _ = reference.reference(chi, mask)
        contrast = est[src].mean() - est[mask & ~src].mean()
        assert contrast == pytest.approx(0.1, abs=0.03), name
        assert np.corrcoef(est[mask], tr[mask])[0, 1] > 0.8, name


def test_reference_modes():
    chi = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    mask = np.ones((3, 3, 3), bool)
    out, ref = reference.reference(chi, mask, "mean")
    assert ref == pytest.approx(13.0) and abs(out.mean()) < 1e-6
    csf = np.zeros_like(mask)
    csf[0, 0, 0] = True
    out, ref = reference.reference(chi, mask, "csf", csf)
    assert ref == 0.0
    with pytest.raises(ValueError, match="non-empty CSF mask"):
        reference.reference(chi, mask, "csf", np.zeros_like(mask))


# ---------------------------------------------------------------- accuracy on simulated data

DEMO = ROOT / "config" / "simulation" / "demo.yaml"


@pytest.fixture(scope="module")
def planted_pair(tmp_path_factory):
    """One 2 mm subject simulated twice from the same seed: without and with +0.01 ppm in the thalamus."""
    raw = yaml.safe_load(DEMO.read_text())
    raw["groups"] = [{"label": "ALS", "n": 1, "clinical": True}, {"label": "NC", "n": 1}]
    raw["effects"] = [
        {
            "name": "thal",
            "group": "ALS",
            "region": {"atlas_labels": ["Thalamus"]},
            "chi_delta_ppm": 0.01,
            "effect_cv": 0.0,
        }
    ]
    cfg = load_simulation_config(raw)
    tissue = load_tissue_table()
    out = {}
    for label, m in (("base", 0.0), ("plus", 1.0)):
        root = tmp_path_factory.mktemp(label)
        cohort = write_cohort_tables(cfg, root)
        row = cohort[cohort.participant_id == "sub-ALS001"].iloc[0].to_dict()
        simulate_subject(cfg, row, {"thal": m}, tissue, root, truth_dir(root))
        out[label] = root
    return out


def _score(root, pid, params=None):
    from qsm_ci.qsm_eval import score_arrays

    g = load_megre(root, pid)
    res = reconstruct(g.mag, g.phase, g.affine, g.echo_times_s, g.field_strength_t, params)
    tp = truth_paths(truth_dir(root), pid)
    truth = nib.load(tp["chi"]).get_fdata()
    seg = np.asarray(nib.load(tp["dseg"]).dataobj).astype(int)
    m = res.final_mask & (nib.load(tp["gre_mask"]).get_fdata() > 0)
    truth = np.where(m, truth - truth[m].mean(), 0)
    metrics, _ = score_arrays(res.chi, truth, m.astype(np.uint8), kind="chi", seg=seg)
    return res, truth, seg, m, metrics


def test_default_chain_beats_tkd_and_recovers_deep_grey(planted_pair):
    res, truth, seg, m, default = _score(planted_pair["base"], "sub-ALS001")
    _, _, _, _, tkd = _score(planted_pair["base"], "sub-ALS001", {"inversion": "tkd"})
    assert default["nrmse"] < tkd["nrmse"]
    for label in (1, 2, 3, 7):  # caudate, pallidum, putamen, thalamus (qsm-forward labels)
        sel = m & (seg == label)
        # 2 mm voxels: 0.015 ppm here; the 1 mm figure is in the closing note / benchmark
        assert res.chi[sel].mean() == pytest.approx(truth[sel].mean(), abs=0.015), label


@pytest.mark.slow
def test_tfi_chain_keeps_the_mask_and_recovers_deep_grey(planted_pair):
    """``background: tfi`` through the whole chain on the simulated 2 mm head (air, bone, scalp
    around the brain; BET mask): no voxel of the mask is lost; over the voxels the default chain
    keeps, NRMSE within 1.1 times the default's (measured 57.2% vs 55.9%); caudate, putamen and
    thalamus within 0.015 ppm. The pallidum comes out 0.023 ppm low (measured; the default -0.009):
    the reweighted-CG solver's TV bias on strong sources, which the STAR-like default avoids
    (docs/validation.md), so it is held to 0.03 here."""
    root, pid = planted_pair["base"], "sub-ALS001"
    res, truth, seg, m, _ = _score(root, pid, {"background": "tfi"})
    ref, _, _, m_ref, _ = _score(root, pid)
    assert np.array_equal(res.final_mask, res.mask)
    assert res.info["parameters"]["background"] == "tfi" and "lbv_rim_dropped" not in res.info
    common = m & m_ref

    def nrmse(chi):
        e = (chi - chi[common].mean()) - (truth - truth[common].mean())
        return np.linalg.norm(e[common]) / np.linalg.norm(truth[common] - truth[common].mean())

    assert nrmse(res.chi) < 1.1 * nrmse(ref.chi), (nrmse(res.chi), nrmse(ref.chi))
    for label, tol in ((1, 0.015), (2, 0.03), (3, 0.015), (7, 0.015)):
        sel = common & (seg == label)
        err = (res.chi[sel] - res.chi[common].mean()).mean() - (
            truth[sel] - truth[common].mean()
        ).mean()
        assert abs(err) < tol, (label, err)


def test_planted_thalamic_increase_is_recovered(planted_pair):
    pid = "sub-ALS001"
    res0 = _score(planted_pair["base"], pid)[0]
    res1 = _score(planted_pair["plus"], pid)[0]
    t0 = nib.load(truth_paths(truth_dir(planted_pair["base"]), pid)["chi"]).get_fdata()
    t1 = nib.load(truth_paths(truth_dir(planted_pair["plus"]), pid)["chi"]).get_fdata()
    region = (np.abs(t1 - t0 - 0.01) < 1e-3) & res0.final_mask & res1.final_mask
    assert region.sum() > 100
    diff = (res1.chi - res0.chi)[region].mean()
    assert diff == pytest.approx(0.01, rel=0.25), diff


def test_chain_on_qsm_forward_dataset(planted_pair, tmp_path):
    """Independent forward model: qsm-forward simulates the GRE from our true chi; we reconstruct it."""
    qf = pytest.importorskip("qsm_forward.qsm_forward")
    tp = truth_paths(truth_dir(planted_pair["base"]), "sub-ALS001")
    chi_img = nib.load(tp["chi"])
    vs = np.abs(np.diag(chi_img.affine)[:3])
    aff = np.diag([*vs, 1.0])
    mask = nib.load(tp["gre_mask"]).get_fdata() > 0
    chi = chi_img.get_fdata().astype(np.float32)
    nib.save(nib.Nifti1Image(chi, aff), tmp_path / "chi.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff), tmp_path / "mask.nii.gz")
    tissue = qf.TissueParams(
        chi=str(tmp_path / "chi.nii.gz"),
        mask=str(tmp_path / "mask.nii.gz"),
        seg=str(tmp_path / "mask.nii.gz"),
    )
    tes = np.array([2.1, 4.5, 6.9, 9.3, 11.7, 14.1]) * 1e-3
    recon = qf.ReconParams(
        TEs=tes,
        B0=3,
        voxel_size=vs,
        peak_snr=100,
        random_seed=3,
        generate_phase_offset=True,
        generate_shim_field=False,
    )
    qf.generate_bids(tissue, recon, str(tmp_path / "qf"))
    g = load_megre(tmp_path / "qf", "sub-1")
    assert g.mag.shape[-1] == 6
    from qsm_ci.qsm_eval import nrmse_challenge

    scores = {}
    for inv in ("star", "tkd"):
        res = reconstruct(
            g.mag, g.phase, g.affine, g.echo_times_s, g.field_strength_t, {"inversion": inv}
        )
        m = res.final_mask & mask
        assert m.sum() > 0.8 * mask.sum()
        scores[inv] = nrmse_challenge(res.chi, chi, m)[0]
    assert scores["star"] < scores["tkd"], scores
    assert scores["star"] < 75, scores


def test_config_schema_defaults_equal_library_defaults():
    """The workflow's qsm defaults (schema) and the library's DEFAULTS are one set."""
    from qsmvbm.config import validate
    from qsmvbm.qsm.pipeline import DEFAULTS

    cfg = validate({}, ROOT / "workflow" / "schemas" / "config.schema.yaml")
    schema_qsm = {k: v for k, v in cfg["qsm"].items() if k not in ("phase_units", "phase_scale")}
    schema_qsm["mask"] = {k: v for k, v in schema_qsm["mask"].items() if k != "source"}
    assert schema_qsm == DEFAULTS


def test_mask_plausibility_of_two_spheres():
    from qsmvbm.qsm.mask import mask_plausibility

    g = np.indices((40, 40, 40)).astype(float) - 20
    r = np.sqrt((g**2).sum(0))
    t1 = r <= 10
    big = r <= 12.6  # about twice the volume of t1
    p = mask_plausibility(big, t1, (2, 2, 2), tiv_ml=t1.sum() * 8 / 1000)
    assert p["t1_mask_ml"] == pytest.approx(t1.sum() * 8 / 1000)
    assert p["dice_t1"] == pytest.approx(2 * t1.sum() / (t1.sum() + big.sum()))
    assert p["outside_t1_fraction"] == pytest.approx(1 - t1.sum() / big.sum())
    assert p["mask_tiv_ratio"] == pytest.approx(big.sum() / t1.sum())
    assert mask_plausibility(t1, t1, (1, 1, 1))["dice_t1"] == 1.0


def test_phase_quality_refines_a_given_mask_too():
    """A given (T1w) mask keeps voxels of pure noise phase; the phase-quality refinement drops them."""
    rng = np.random.default_rng(2)
    shape = (32, 32, 24)
    te = np.array([0.004, 0.008, 0.012, 0.016])
    mask = np.zeros(shape, bool)
    mask[4:28, 4:28, 4:20] = True
    mag = np.ones(shape + (4,), np.float32) * 100
    phase = np.zeros(shape + (4,), np.float32)
    rim = mask & ~np.pad(np.ones((20, 20, 12), bool), ((6, 6), (6, 6), (6, 6)))
    mag[rim] = 1.0
    phase[rim] = rng.uniform(-np.pi, np.pi, (int(rim.sum()), 4))
    r = reconstruct(mag, phase, np.eye(4), te, 3.0, {"inversion": "tkd"}, mask)
    assert r.info["mask_voxels_before_quality"] == int(mask.sum())
    assert r.info["mask_voxels"] < int(mask.sum()) and (r.mask & rim).sum() < 0.2 * rim.sum()


def test_bet_magnitude_mask_holds_where_otsu_takes_the_face(tiny_cohort):
    """The magnitude mask methods against the simulator's true brain mask (GRE space). sub-ALS001's
    head makes the Otsu mask take face and neck tissue (measured: Dice 0.78, 36 % outside the brain);
    BET after N4 holds on it and on sub-NC001 (measured: Dice 0.98, 4-5 % outside, the CSF rim)."""
    import nibabel as nib

    from qsmvbm.bids import load_megre
    from qsmvbm.layout import truth_file
    from qsmvbm.qsm.mask import bet_magnitude_mask, brain_mask_from_magnitude

    outside = {}
    for pid in ("sub-ALS001", "sub-NC001"):
        gre = load_megre(tiny_cohort, pid)
        truth = nib.load(truth_file(tiny_cohort, "gre_mask", pid)).get_fdata() > 0.5
        bet = bet_magnitude_mask(gre.mag, gre.affine)
        dice = 2 * (bet & truth).sum() / (bet.sum() + truth.sum())
        assert dice > 0.95 and (bet & ~truth).sum() / bet.sum() < 0.08, (pid, dice)
        otsu = brain_mask_from_magnitude(gre.mag, gre.voxel_size, erode_mm=0.0)
        outside[pid] = (otsu & ~truth).sum() / otsu.sum()
    # the Otsu mask fails the plausibility limit (qc.qsm_mask_outside_max 0.15) on sub-ALS001 only
    assert outside["sub-ALS001"] > 0.15 > 0.08 > outside["sub-NC001"], outside


def test_realistic_head_fails_the_otsu_mask_not_the_default_chain(realistic_heads, tmp_path):
    """Issue 17: with fat and eyes around the brain the old magnitude mask (Otsu) takes them and fails
    the QC's plausibility check in every subject (measured: 35-37% of the mask outside the brain,
    Dice 0.78; on the layered head 1 of 4 tiny subjects failed); BET on the magnitude holds (Dice
    0.98), and the default chain (T1w brain mask brought to the GRE) passes every check."""

    from qsmvbm.anat.qc import mask_qc_columns, plausibility_problems
    from qsmvbm.config import validate
    from qsmvbm.layout import Layout, truth_file
    from qsmvbm.qsm.mask import bet_magnitude_mask, brain_mask_from_magnitude, mask_plausibility

    thr = validate({}, ROOT / "workflow" / "schemas" / "config.schema.yaml")["qc"]
    pids = ["sub-ALS001", "sub-NC001"]
    for pid in pids:
        gre = load_megre(realistic_heads, pid)
        truth = nib.load(truth_file(realistic_heads, "gre_mask", pid)).get_fdata() > 0.5
        otsu = brain_mask_from_magnitude(gre.mag, gre.voxel_size, erode_mm=0.0)
        why = plausibility_problems(
            mask_qc_columns(mask_plausibility(otsu, truth, gre.voxel_size)), thr
        )
        assert any("outside the T1w brain" in w for w in why), (pid, why)
        bet = bet_magnitude_mask(gre.mag, gre.affine)
        assert not plausibility_problems(
            mask_qc_columns(mask_plausibility(bet, truth, gre.voxel_size)), thr
        )
    out = tmp_path / "out"
    # the default chain on one of them (the other measured the same: Dice 0.999 vs 0.995)
    r = run_qsmvbm(
        [realistic_heads, out, "participant", "--participant-label", "NC001", "--cores", "2"]
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    lay = Layout(out)
    for pid in ["sub-NC001"]:
        chi_json = json.loads(lay.subject("chi_json", pid).read_text())
        vol = json.loads(lay.subject("volumes", pid).read_text())
        row = mask_qc_columns(chi_json["MaskPlausibility"])
        row |= {"tiv_ml": vol["TIV_ml"], "gm_tiv": vol["GM_ml"] / vol["TIV_ml"]}
        assert not plausibility_problems(row, thr), (pid, row)
        t1_truth = nib.load(truth_file(realistic_heads, "t1_mask", pid)).get_fdata() > 0.5
        t1_mask = nib.load(lay.subject("t1_mask", pid)).get_fdata() > 0.5
        dice = 2 * (t1_mask & t1_truth).sum() / (t1_mask.sum() + t1_truth.sum())
        assert dice > 0.95, (pid, dice)
