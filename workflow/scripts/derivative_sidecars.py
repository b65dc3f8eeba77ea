"""JSON sidecars of one subject's derivative images: what each is (qsmvbm.layout.IMAGE_META),
SkullStripped, Units, Resolution, SpatialReference (BIDS URIs of the raw images that define the GRE
and T1w grids) and the parameters of the stage that made it."""

import json
from pathlib import Path

from qsmvbm.bids import bids_uri
from qsmvbm.io import save_json
from qsmvbm.layout import SUBJECT_FILES, image_sidecar
from qsmvbm.smk import logged


def sidecars(keys, chi_json: dict, t1w_uri: str, params: dict, resolution: int) -> dict:
    """key -> sidecar content. The GRE grid's reference is the first echo's magnitude, the first of the
    QSM sidecar's ``Sources``; ``Sources`` are the raw images (BIDS URIs) the image derives from: the
    GRE's for the GRE grid, the T1w for the T1w grid, both for the template-space QSM."""
    gre = list(chi_json["Sources"])
    refs = {"MEGRE": gre[0], "T1w": t1w_uri}
    out = {}
    for key in keys:
        space = SUBJECT_FILES[key]["entities"].get("space")
        stage = "qsm" if space == "MEGRE" else "anat"
        if space == "MEGRE":
            sources = gre
        elif space == "T1w" or key in ("template_t1", "template_mask", "gm_mod", "gm_mod_smooth"):
            sources = [t1w_uri]
        else:  # template-space QSM and its masks: the GRE through the T1w's transforms
            sources = gre + [t1w_uri]
        out[key] = image_sidecar(
            key,
            resolution,
            refs.get(space),
            Sources=sources,
            Parameters={stage: params[stage]},
        )
    return out


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        chi_json = json.loads(Path(smk.input.chi_json).read_text())
        t1w_uri = bids_uri(smk.input.t1w, smk.params.bids_dir)
        keys = list(smk.params.images)
        made = sidecars(keys, chi_json, t1w_uri, dict(smk.params.stages), smk.params.resolution)
        for key, path in zip(keys, smk.output):
            save_json(made[key], path)
        log.info("%s: %d sidecars", smk.wildcards.subject, len(keys))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
