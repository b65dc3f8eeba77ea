"""Check a subject's raw inputs (MEGRE series and T1w) and summarise them as JSON."""

from pathlib import Path

import nibabel as nib
import numpy as np

from qsmvbm.bids import BidsInputError, megre_metadata
from qsmvbm.io import load_json, save_json
from qsmvbm.smk import logged


def summarise(
    bids_dir: Path, subject: str, t1w: Path, check: dict | None = None, filters: dict | None = None
) -> dict:
    """Header-level facts of the inputs plus the phase storage that the input check found."""
    meta = megre_metadata(bids_dir, subject, filters)
    if check is not None:
        meta["phase_units"] = check["gre"]["phase_units"]
        meta["phase_period"] = check["gre"]["phase_period"]
    img = nib.load(t1w)
    if len(img.shape) != 3:
        raise BidsInputError(f"{t1w}: expected a 3D T1w image, got shape {img.shape}")
    meta["t1w"] = {
        "file": str(t1w),
        "shape": list(img.shape),
        "voxel_size_mm": np.linalg.norm(img.affine[:3, :3], axis=0).tolist(),
    }
    return meta


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        check = load_json(smk.input.check) if hasattr(smk.input, "check") else None
        meta = summarise(
            Path(smk.params.bids_dir),
            smk.wildcards.subject,
            Path(smk.input.t1w),
            check,
            dict(getattr(smk.params, "megre_filters", {}) or {}),
        )
        save_json(meta, smk.output[0])
        log.info(
            "%s: %d echoes, B0 %.1f T",
            smk.wildcards.subject,
            len(meta["echo_times_s"]),
            meta["field_strength_t"],
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
