"""Quality-control pictures: slice mosaics with optional mask outlines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from .io import atomic_path  # noqa: E402


def slice_indices(mask_or_shape, n: int, axis: int = 2) -> list[int]:
    """``n`` evenly spaced slice indices along ``axis`` through a mask's extent (or the whole axis)."""
    if isinstance(mask_or_shape, np.ndarray) and mask_or_shape.any():
        idx = np.flatnonzero(mask_or_shape.any(axis=tuple(i for i in range(3) if i != axis)))
        lo, hi = idx[0], idx[-1]
    else:
        size = (
            mask_or_shape.shape[axis]
            if isinstance(mask_or_shape, np.ndarray)
            else mask_or_shape[axis]
        )
        lo, hi = 0, size - 1
    return [int(round(v)) for v in np.linspace(lo + (hi - lo) * 0.1, hi - (hi - lo) * 0.1, n)]


def mosaic_png(
    rows: list[tuple[str, np.ndarray, str, tuple[float, float] | None]],
    out_png: str | Path,
    title: str,
    mask: np.ndarray | None = None,
    n_slices: int = 8,
    aspect: float = 1.0,
    affine: np.ndarray | None = None,
    dpi: int = 150,
) -> Path:
    """Write a mosaic: one row per (label, volume, colormap, (vmin, vmax)) of axial slices.

    The outline of ``mask`` is drawn in red on every panel; a colour bar per row
    carries the label (with units). Volumes are (X, Y, Z), displayed radiological-free
    (left on the left, anterior up). With ``affine`` (voxel -> scanner mm) each slice is
    labelled by the scanner z (mm) of its centre, else by its voxel index.
    """
    idx = slice_indices(mask if mask is not None else rows[0][1].shape, n_slices)
    fig, axes = plt.subplots(
        len(rows),
        n_slices,
        figsize=(1.8 * n_slices, 2.0 * len(rows) + 0.6),
        squeeze=False,
        constrained_layout=True,
    )
    edge = None
    if mask is not None:
        edge = mask & ~ndimage.binary_erosion(mask)
    for r, (label, vol, cmap, lim) in enumerate(rows):
        inside = vol[mask] if mask is not None and mask.any() else vol.ravel()
        vmin, vmax = (
            lim if lim else (float(np.percentile(inside, 1)), float(np.percentile(inside, 99)))
        )
        for c, z in enumerate(idx):
            ax = axes[r, c]
            im = ax.imshow(
                np.rot90(vol[:, :, z]),
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                aspect=aspect,
                interpolation="nearest",
            )
            if edge is not None:
                e = np.rot90(edge[:, :, z]).astype(float)
                ax.imshow(
                    np.ma.masked_where(e == 0, e), cmap="autumn", alpha=0.8, interpolation="nearest"
                )
            ax.set_axis_off()
            if r == 0:
                if affine is not None:
                    centre = np.array([(vol.shape[0] - 1) / 2, (vol.shape[1] - 1) / 2, z, 1.0])
                    ax.set_title(f"z = {(affine @ centre)[2]:.0f} mm", fontsize=8)
                else:
                    ax.set_title(f"slice {z}", fontsize=8)
        cb = fig.colorbar(im, ax=axes[r, :], shrink=0.8, pad=0.01)
        cb.set_label(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return out_png
