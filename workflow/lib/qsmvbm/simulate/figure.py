"""A figure of one simulated subject: magnitude, wrapped phase, true chi and T1w."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from ..bids import detect_phase_units, phase_to_radians  # noqa: E402
from ..io import atomic_path  # noqa: E402
from .subject import truth_paths  # noqa: E402


def _mid(a: np.ndarray, axis: int, frac: float = 0.5) -> np.ndarray:
    idx = int(round((a.shape[axis] - 1) * frac))
    return np.rot90(np.take(a, idx, axis=axis))


def plot_subject(bids_dir: Path, pid: str, out_png: Path, echo: int = 4) -> Path:
    """Axial and coronal slices of echo-1 magnitude, echo-``echo`` wrapped phase, true chi (ppm) and T1w."""
    bids_dir = Path(bids_dir)
    anat = bids_dir / pid / "anat"
    mag = nib.load(anat / f"{pid}_echo-1_part-mag_MEGRE.nii.gz").get_fdata()
    ph_path = anat / f"{pid}_echo-{echo}_part-phase_MEGRE.nii.gz"
    ph = np.asarray(nib.load(ph_path).dataobj)
    ph = phase_to_radians(ph, detect_phase_units(ph, ph_path))
    t1 = nib.load(anat / f"{pid}_T1w.nii.gz").get_fdata()
    chi = nib.load(truth_paths(bids_dir / "derivatives" / "simulation", pid)["chi"]).get_fdata()
    panels = [
        ("magnitude, echo 1 (a.u.)", mag, "gray", None),
        (f"phase, echo {echo} (rad, wrapped)", ph, "twilight", (-np.pi, np.pi)),
        ("true chi (ppm)", chi, "gray", (-0.1, 0.15)),
        ("T1w (a.u.)", t1, "gray", None),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(14, 7), constrained_layout=True)
    for col, (title, img, cmap, lim) in enumerate(panels):
        for row, (axis, frac) in enumerate(((2, 0.55), (1, 0.52))):
            sl = _mid(img, axis, frac)
            vmin, vmax = lim if lim else (np.percentile(sl, 1), np.percentile(sl, 99.5))
            im = axes[row, col].imshow(sl, cmap=cmap, vmin=vmin, vmax=vmax)
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(title)
        fig.colorbar(im, ax=axes[:, col], shrink=0.6)
    fig.suptitle(f"{pid}: simulated acquisition and ground truth (axial, coronal)")
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out_png
