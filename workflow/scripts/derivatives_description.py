"""The derivatives' dataset-level files: dataset_description.json (BIDS derivatives, with provenance),
the label table of the T1w tissue segmentation, the .bidsignore of the files BIDS does not define, and
a README."""

from pathlib import Path

import pandas as pd

from qsmvbm.bids import RAW_DATASET
from qsmvbm.io import save_json, save_tsv
from qsmvbm.layout import bidsignore_lines
from qsmvbm.smk import logged
from qsmvbm.templates import TEMPLATE_SPACE
from qsmvbm.version import full_version

#: the labels of ``sub-*_space-T1w_dseg`` (Atropos' classes in the order of the template priors)
DSEG_LABELS = [
    (1, "Cerebrospinal fluid", "CSF"),
    (2, "Gray matter", "GM"),
    (3, "White matter", "WM"),
]


def description(bids_dir: str, config: dict) -> dict:
    """dataset_description.json: ``DatasetLinks`` names the raw dataset ``raw``, so that every
    ``Sources`` entry of the sidecars is a BIDS URI (``bids:raw:sub-X/anat/...``)."""
    raw = Path(bids_dir).resolve().as_uri()
    return {
        "Name": "qsmvbm derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "qsmvbm",
                "Version": full_version(),
                "CodeURL": "https://github.com/qsmvbm/qsmvbm",
            }
        ],
        "SourceDatasets": [{"URL": raw}],
        "DatasetLinks": {RAW_DATASET: raw},
        "TemplateSpace": TEMPLATE_SPACE,
        "Config": config,
    }


README = """# qsmvbm derivatives

Per-subject outputs of qsmvbm {version} (QSM and VBM group studies from multi-echo GRE and T1w), one
folder per subject, BIDS-derivatives names. Every image has a JSON sidecar saying what it is, its units
and the parameters that made it; dataset_description.json holds the whole configuration of the run.

- `anat/*_space-MEGRE_*`: on the subject's GRE grid: susceptibility (`Chimap`, ppm), R2* (`R2starmap`),
  masks, the first-echo magnitude, and the total, local and noise field (`*_field`, ppm of B0).
- `anat/*_space-T1w_*`: on the T1w grid: the bias-corrected T1w, brain mask, tissue probabilities
  (`probseg`) and labels (`dseg`, labels in `dseg.tsv`).
- `anat/*_space-{template}_res-*`: normalized to the {template} template: susceptibility, the
  Jacobian-modulated grey matter (`label-GM_desc-modulated`, mL/mL, not a probability), masks.
- `anat/*_xfm.*`: transforms (ANTs); `figures/`: QC images.

Files BIDS does not define (field maps in ppm, transforms, QC and volume tables, figures) are listed in
`.bidsignore`. Group-level results are in the run's `group/` folder, next to this one.
"""


def main(smk) -> None:
    with logged(smk.log[0]):
        save_json(description(smk.params.bids_dir, dict(smk.params.config)), smk.output.description)
        save_tsv(
            pd.DataFrame(DSEG_LABELS, columns=["index", "name", "abbreviation"]), smk.output.dseg
        )
        Path(smk.output.bidsignore).write_text("\n".join(bidsignore_lines()) + "\n")
        Path(smk.output.readme).write_text(
            README.format(version=full_version(), template=TEMPLATE_SPACE)
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
