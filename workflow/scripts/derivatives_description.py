"""The derivatives' dataset_description.json (BIDS derivatives, with provenance)."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import qsmvbm  # noqa: E402
from qsmvbm.io import save_json  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402
from qsmvbm.templates import TEMPLATE_SPACE  # noqa: E402


def description(bids_dir: str, config: dict) -> dict:
    return {
        "Name": "qsmvbm derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "qsmvbm", "Version": qsmvbm.__version__,
                         "CodeURL": "https://github.com/qsmvbm/qsmvbm"}],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        "TemplateSpace": TEMPLATE_SPACE,
        "Config": config,
    }


def main(smk) -> None:
    with logged(smk.log[0]):
        save_json(description(smk.params.bids_dir, dict(smk.params.config)), smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
