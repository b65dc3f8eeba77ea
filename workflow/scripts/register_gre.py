"""GRE to T1w rigid registration (mutual information) of one subject."""

import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmvbm.anat import normalize, t1
from qsmvbm.anat.antsio import to_ants
from qsmvbm.bids import dataset_root, megre_files
from qsmvbm.io import save_json
from qsmvbm.qsm.mask import ball, brain_mask_from_magnitude
from qsmvbm.smk import logged, set_threads


def _load(path):
    img = nib.load(path)
    return img.get_fdata(dtype=np.float32), img.affine


def run(
    bids_dir: Path,
    subject: str,
    inp: dict,
    seed: int,
    out: dict,
    log,
    megre_filters: dict | None = None,
) -> dict:
    """Rigid GRE echo-1 magnitude -> T1w; each image masked by its own dilated brain mask."""
    mag, gaff = _load(megre_files(bids_dir, subject, megre_filters)[0]["mag"])
    gvs0 = np.linalg.norm(gaff[:3, :3], axis=0)
    gmask = brain_mask_from_magnitude(mag, gvs0).astype(np.float32)
    t1d, taff = _load(inp["t1"])
    tmask, _ = _load(inp["t1_mask"])
    gvs = np.linalg.norm(gaff[:3, :3], axis=0)
    tvs = np.linalg.norm(taff[:3, :3], axis=0)
    gm = ndimage.binary_dilation(gmask > 0, structure=ball(4.0 / gvs))
    tm = ndimage.binary_dilation(tmask > 0, structure=ball(4.0 / tvs))
    fixed = to_ants(t1d * tm, taff)
    moving = to_ants(mag * gm, gaff)
    with tempfile.TemporaryDirectory(dir=Path(out["xfm"]).parent, prefix=".ants_") as tmp:
        reg = t1.register(fixed, moving, "Rigid", str(Path(tmp) / "rigid_"), seed)
        shutil.copy(reg["fwdtransforms"][0], out["xfm"])
    warped_mask = (
        normalize.warp(fixed, to_ants((gmask > 0).astype(np.float32), gaff), [out["xfm"]]).numpy()
        > 0.5
    )
    info = {
        "Transform": "rigid, mutual information (ANTs Mattes), GRE echo-1 magnitude -> T1w",
        "RandomSeed": seed,
        "DiceQsmMaskVsT1Mask": normalize.dice(warped_mask, tmask > 0),
    }
    save_json(info, out["json"])
    log.info("GRE->T1 rigid: Dice of masks %.3f", info["DiceQsmMaskVsT1Mask"])
    return info


def main(smk) -> None:
    set_threads(smk.threads)
    with logged(smk.log[0]) as log:
        bids_dir = dataset_root(smk.input.megre[0])
        run(
            bids_dir,
            smk.wildcards.subject,
            dict(smk.input.items()),
            smk.params.seed,
            dict(smk.output.items()),
            log,
            dict(smk.params.megre_filters),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
