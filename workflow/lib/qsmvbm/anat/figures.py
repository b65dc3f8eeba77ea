"""Normalization overlay: template edges over the warped T1w and QSM."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from ..io import atomic_path  # noqa: E402


def template_edges(tpl) -> np.ndarray:
    """Edges of the template's brain mask and of its GM/WM boundary (bool, template grid)."""
    brain = tpl.mask
    wm = tpl.wm > 0.5
    e1 = brain & ~ndimage.binary_erosion(brain)
    e2 = wm & ~ndimage.binary_erosion(wm)
    return e1 | e2


def normalization_overlay(t1w: np.ndarray, chi: np.ndarray, tpl, out_png, title: str) -> Path:
    """Axial, coronal and sagittal slices through the template centre: warped T1w (top) and
    warped QSM (bottom, ppm) with the template's edges in red."""
    edges = template_edges(tpl)
    c = [
        int(round(v))
        for v in np.linalg.inv(tpl.affine)[:3, :3] @ [0, -18, 8] + np.linalg.inv(tpl.affine)[:3, 3]
    ]
    views = [
        ("axial", lambda a: a[:, :, c[2]]),
        ("coronal", lambda a: a[:, c[1], :]),
        ("sagittal", lambda a: a[c[0], :, :]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.5), constrained_layout=True)
    for row, (vol, cmap, lim, label) in enumerate(
        [(t1w, "gray", None, "warped T1w (a.u.)"), (chi, "gray", (-0.1, 0.2), "warped QSM (ppm)")]
    ):
        for col, (name, cut) in enumerate(views):
            sl = np.rot90(cut(vol))
            vmin, vmax = lim if lim else (0, float(np.percentile(vol[tpl.mask], 99)))
            im = axes[row, col].imshow(sl, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            e = np.rot90(cut(edges)).astype(float)
            axes[row, col].imshow(
                np.ma.masked_where(e == 0, e), cmap="autumn", alpha=0.9, interpolation="nearest"
            )
            axes[row, col].set_axis_off()
            axes[row, col].set_title(f"{label}, {name}", fontsize=9)
        fig.colorbar(im, ax=axes[row, :], shrink=0.7).set_label(label, fontsize=9)
    fig.suptitle(title + "\nred: template brain and white-matter edges", fontsize=10)
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    plt.close(fig)
    return out_png
