"""The derivatives' dataset_description.json (BIDS derivatives, with provenance) and the label table
of the T1w tissue segmentation."""

from pathlib import Path

import pandas as pd

from qsmvbm.bids import RAW_DATASET
from qsmvbm.io import save_json, save_tsv
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


def main(smk) -> None:
    with logged(smk.log[0]):
        save_json(description(smk.params.bids_dir, dict(smk.params.config)), smk.output.description)
        save_tsv(
            pd.DataFrame(DSEG_LABELS, columns=["index", "name", "abbreviation"]), smk.output.dseg
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
