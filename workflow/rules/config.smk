# The run's configuration (validated once, defaults filled from the schema), its output layout and
# the thread policy. Every path of the workflow comes from the layout `L` (qsmvbm.layout).
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version

from qsmvbm.config import ConfigError, validate as validate_config
from qsmvbm.layout import Layout

min_version("9.0")


# found beside this workflow, so that it runs from any folder (`snakemake -s .../Snakefile -d ...`)
configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


try:
    # messages name the key and suggest the closest allowed one; defaults are filled in
    _validated = validate_config(
        config,
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
        "workflow config (config/config.yaml + --config)",
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_validated)

# a relative simulation config not found from the working folder is read from the workflow's folder
_sim = Path(config["simulation"])
if (
    not _sim.is_absolute()
    and not _sim.exists()
    and (Path(workflow.basedir) / _sim).exists()
):
    config["simulation"] = str(Path(workflow.basedir) / _sim)

L = Layout.from_config(config)
RES = L.resolution
SIMULATED = config["bids_dir"] is None
BIDS = L.sim_bids if SIMULATED else Path(config["bids_dir"])
PCFG = config["participants"]
BIDS_FILTERS = config["bids_filters"]
MULTICHANNEL = config["anat"]["normalization"] == "multichannel"
ENV = "../../envs/qsmvbm.yaml"


def ants_threads():
    """Threads of the ANTs rules (they reach ITK): 1 when ``anat.deterministic`` (reproducible results),
    else ``resources.anat_threads``."""
    if config["anat"]["deterministic"]:
        return 1
    return config["resources"]["anat_threads"]


wildcard_constraints:
    subject=r"sub-[A-Za-z0-9]+",
