"""The derivatives' dataset_description.json (BIDS derivatives, with provenance)."""

from pathlib import Path

import qsmvbm
from qsmvbm.io import save_json
from qsmvbm.smk import logged
from qsmvbm.templates import TEMPLATE_SPACE


def description(bids_dir: str, config: dict) -> dict:
    return {
        "Name": "qsmvbm derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "qsmvbm",
                "Version": qsmvbm.__version__,
                "CodeURL": "https://github.com/qsmvbm/qsmvbm",
            }
        ],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        "TemplateSpace": TEMPLATE_SPACE,
        "Config": config,
    }


def main(smk) -> None:
    with logged(smk.log[0]):
        save_json(description(smk.params.bids_dir, dict(smk.params.config)), smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
