"""One subject's raw inputs checked before any processing: the verdict that decides whether the subject
goes on or is excluded (with the reason) while the rest of the study runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bids import BidsInputError, load_megre, read_data
from .io import read_tsv


def check_subject_inputs(
    bids_dir: str | Path,
    pid: str,
    t1w: str | Path,
    phase_units: str = "auto",
    phase_scale: float | None = None,
    megre_filters: dict | None = None,
    left_right: dict | None = None,
) -> dict:
    """Read and check a subject's T1w and multi-echo GRE in full (every voxel of every echo).

    T1w: readable, 3D, finite, a whole brain in the field of view (:func:`qsmvbm.anat.t1.check_t1`).
    GRE: :func:`qsmvbm.bids.load_megre` (series choice, echoes, sidecars, phase scaling, swapped parts,
    truncated files). Both readable: the T1w must not be mirrored left-right relative to the GRE
    (:func:`qsmvbm.anat.laterality.left_right_check`; ``left_right`` holds its keyword arguments, or
    ``{"check": False}`` to skip it). A problem found is returned as the reason, never raised; other
    exceptions (bugs) propagate.

    Returns
    -------
    ``{"ok": bool, "reason": str, "t1w": {...}, "gre": {...}, "left_right": {...}}``: ``reason`` is "ok" or
    the problems, each naming the file; ``gre`` holds echo times (s), field strength (T), the phase
    storage and its cycle; ``left_right`` the check's figures (empty when it did not run).
    """
    from .anat.laterality import left_right_check
    from .anat.t1 import check_t1
    from .bids import _load

    reasons = []
    t1_data = gre_mag = None
    try:
        img = _load(Path(t1w))
        t1_data = read_data(t1w)
        t1 = check_t1(t1_data, img.affine)
        if not t1["ok"]:
            reasons.append(f"T1w check failed: {t1['reason']} ({t1w})")
    except BidsInputError as e:
        t1 = {"ok": False, "reason": str(e), "brain_ml": 0.0, "edge_fraction": 1.0}
        reasons.append(f"T1w check failed: cannot read T1w: {e}")
    t1["file"] = str(t1w)
    try:
        g = load_megre(bids_dir, pid, phase_units, phase_scale, megre_filters)
        gre = {
            "ok": True,
            "echo_times_s": g.echo_times_s.tolist(),
            "field_strength_t": g.field_strength_t,
            "shape": list(g.mag.shape[:3]),
            "voxel_size_mm": np.round(g.voxel_size, 4).tolist(),
            "phase_units": g.phase_units,
            "phase_period": g.phase_period,
            "files": [{k: v and str(v) for k, v in f.items()} for f in g.files],
        }
        gre_mag, gre_affine = g.mag[..., 0].copy(), g.affine
        del g
    except BidsInputError as e:
        gre = {"ok": False, "reason": str(e)}
        reasons.append(f"GRE input: {e}")
    lr_args = dict(left_right or {})
    lr = {}
    if lr_args.pop("check", True) and t1["ok"] and gre["ok"]:
        lr = left_right_check(gre_mag, gre_affine, t1_data, img.affine, **lr_args)
        if not lr["ok"]:
            reasons.append(
                f"left-right check failed: {lr['reason']} ({t1w}; {gre['files'][0]['mag']})"
            )
    return {
        "ok": not reasons,
        "reason": "; ".join(reasons) or "ok",
        "t1w": t1,
        "gre": gre,
        "left_right": lr,
    }


def exclusion_summary(qc_table: str | Path) -> str | None:
    """One line for the end of a run from the cohort QC table (``group/qc/normalization_qc.tsv``):
    ``"qsmvbm: 5 of 6 subjects included; excluded: sub-X (reason); ..."``, or None if there is none."""
    path = Path(qc_table)
    if not path.is_file():
        return None
    qc = read_tsv(path)
    inc = qc["included"].astype(str).str.lower().isin(["true", "1"])
    line = f"qsmvbm: {int(inc.sum())} of {len(qc)} subjects included"
    if (~inc).any():
        line += "; excluded: " + "; ".join(
            f"{r.participant_id} ({r.reason})" for r in qc[~inc].itertuples()
        )
    return line
