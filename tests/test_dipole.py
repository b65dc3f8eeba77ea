"""The dipole kernel and forward model."""

import numpy as np
import pytest

from qsmvbm.dipole import b0_direction_from_affine, dipole_kernel, forward_field
from qsmvbm.transforms import rotation_matrix


def test_kernel_dc_range_and_symmetry():
    d = dipole_kernel((32, 30, 28), (1.0, 1.2, 1.5), (0, 0, 1))
    assert d[0, 0, 0] == 0
    assert d.min() >= -2 / 3 - 1e-6 and d.max() <= 1 / 3 + 1e-6
    # D(k) = D(-k): the kernel is real and even
    flipped = np.roll(d[::-1, ::-1, ::-1], 1, axis=(0, 1, 2))
    np.testing.assert_allclose(d, flipped, atol=1e-7)
    # along kz the kernel is -2/3, in the kx-ky plane +1/3
    assert d[0, 0, 3] == pytest.approx(-2 / 3)
    assert d[5, 0, 0] == pytest.approx(1 / 3)


def test_kernel_zero_on_magic_angle_cone():
    n = 64
    d = dipole_kernel((n, n, n), (1, 1, 1), (0, 0, 1))
    k = np.fft.fftfreq(n)
    kx, ky, kz = np.meshgrid(k, k, k, indexing="ij")
    with np.errstate(invalid="ignore"):
        cos2 = kz**2 / (kx**2 + ky**2 + kz**2)
    sel = np.isclose(cos2, 1 / 3, atol=1e-3)
    assert sel.sum() > 0
    assert np.abs(d[sel]).max() < 2e-3


def test_b0_direction_from_affine():
    assert np.allclose(b0_direction_from_affine(np.diag([1, 1, 1, 1.0])), [0, 0, 1])
    r = rotation_matrix([20, 0, 0])
    aff = np.eye(4)
    aff[:3, :3] = r @ np.diag([0.8, 0.8, 2.0])
    b = b0_direction_from_affine(aff)
    assert np.allclose(b, r.T @ [0, 0, 1])
    # a flipped axis flips the voxel-axis component
    assert np.allclose(b0_direction_from_affine(np.diag([-1, 1, -1, 1.0])), [0, 0, -1])


def test_sphere_field_matches_analytic():
    """Uniform sphere: zero inside (Lorentz), 2 chi a^3 / (3 r^3) on the B0 axis outside."""
    n, a, chi = 96, 8.0, 1.0
    c = (n - 1) / 2
    x, y, z = np.meshgrid(*(np.arange(n) - c,) * 3, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    sphere = (r <= a).astype(np.float32) * chi
    f = forward_field(sphere, (1, 1, 1), (0, 0, 1), pad=48)
    assert abs(f[r < a - 2]).max() < 0.02
    ic = int(round(c))
    for dist in (16, 20, 24):
        expected = 2 * chi * a**3 / (3 * dist**3)
        measured = f[ic, ic, ic + dist]
        assert measured == pytest.approx(expected, rel=0.08)
    # equatorial plane: -chi a^3 / (3 r^3)
    assert f[ic + 20, ic, ic] == pytest.approx(-chi * a**3 / (3 * 20**3), rel=0.1)
