"""The left-right check's similarity measure against an independent implementation."""

import numpy as np
from sklearn.metrics import mutual_info_score

from qsmvbm.anat.laterality import left_right_axis, normalized_mutual_information


def _entropy(labels):
    p = np.bincount(labels) / labels.size
    p = p[p > 0]
    return -(p * np.log(p)).sum()


def test_nmi_matches_scikit_learn_on_binned_images():
    """Studholme's NMI = (H(a) + H(b)) / H(a, b) = 1 + MI / H(a, b), with MI from scikit-learn."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 20, 20))
    b = np.tanh(a) + 0.5 * rng.normal(size=a.shape)
    mask = np.ones(a.shape, bool)
    mask[:5] = False
    bins = 16

    def binned(x):
        lo, hi = np.percentile(x[mask], [1, 99])
        return np.clip(np.round((x[mask] - lo) / (hi - lo) * (bins - 1)), 0, bins - 1).astype(int)

    la, lb = binned(a), binned(b)
    mi = mutual_info_score(la, lb)
    h_joint = _entropy(la * bins + lb)
    assert np.isclose(normalized_mutual_information(a, b, mask, bins), 1 + mi / h_joint)
    assert np.isclose(normalized_mutual_information(a, a, mask, bins), 2.0)
    assert normalized_mutual_information(a, rng.normal(size=a.shape), mask, bins) < 1.05


def test_left_right_axis_of_axial_sagittal_and_oblique_grids():
    assert left_right_axis(np.diag([-2.0, 2.0, 2.0, 1.0])) == 0
    sagittal = np.array([[0, 0, -1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    assert left_right_axis(sagittal) == 2
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    oblique = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]) @ np.diag(
        [1.0, 3.0, 1.0, 1.0]
    )
    assert left_right_axis(oblique) == 0
