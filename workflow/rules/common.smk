# Shared setup: config validation, paths, subjects, input functions.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "lib"))

from qsmvbm.bids import BidsInputError, read_participants, t1w_file  # noqa: E402
from qsmvbm.config import ConfigError, validate as validate_with_hints  # noqa: E402
from qsmvbm.simulate.cohort import participant_ids  # noqa: E402
from qsmvbm.simulate.settings import load_simulation_config  # noqa: E402
from qsmvbm.simulate.subject import bids_paths, truth_paths  # noqa: E402
from qsmvbm.templates import TEMPLATE_SPACE  # noqa: E402


configfile: "config/config.yaml"


CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    # our validator first: its messages name the key and suggest the closest allowed one
    validate_with_hints(
        config, CONFIG_SCHEMA, "workflow config (config/config.yaml + --config)"
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, "../schemas/config.schema.yaml")

OUT = Path(config["output_dir"])
DERIV = OUT / "derivatives" / "qsmvbm"
ANAT = DERIV / "{subject}" / "anat"
FIGS = DERIV / "{subject}" / "figures"
TPL = TEMPLATE_SPACE
RES = config["anat"]["template_resolution"]
GROUP = OUT / "group"
LOGS = OUT / "logs"
BENCH = OUT / "benchmarks"
SIMULATED = config["bids_dir"] is None
SIM_BIDS = OUT / "sim_bids"
BIDS = SIM_BIDS if SIMULATED else Path(config["bids_dir"])
PCFG = config["participants"]
GROUP_LABELS = (PCFG["patient_label"], PCFG["control_label"])
ENV = "../../envs/qsmvbm.yaml"

try:
    if SIMULATED:
        SIM_CONFIG = load_simulation_config(config["simulation"])
        SUBJECTS = participant_ids(SIM_CONFIG)
        N_SIM_ECHOES = SIM_CONFIG["gre"]["n_echoes"]
    else:
        SIM_CONFIG = None
        PARTICIPANTS = read_participants(BIDS, PCFG["group_column"], GROUP_LABELS)
        SUBJECTS = list(PARTICIPANTS["participant_id"])
except (ConfigError, BidsInputError) as err:
    raise WorkflowError(str(err)) from None
SUBJECTS = [s for s in SUBJECTS if s not in set(PCFG["exclude"])]


wildcard_constraints:
    subject=r"sub-[A-Za-z0-9]+",


def sim_subject_outputs():
    """Output patterns of one simulated subject's raw BIDS files and sidecars."""
    return [str(p) for p in bids_paths(SIM_BIDS, "{subject}", N_SIM_ECHOES).values()]


def sim_truth_outputs():
    """Output patterns of one simulated subject's ground truth."""
    return [
        str(p)
        for p in truth_paths(
            SIM_BIDS / "derivatives" / "simulation", "{subject}"
        ).values()
    ]


def raw_megre(wildcards):
    """A subject's multi-echo GRE files (NIfTI + JSON). Simulated: the simulator's outputs."""
    if SIMULATED:
        return [
            str(p).format(subject=wildcards.subject)
            for p in sim_subject_outputs()
            if "MEGRE" in str(p)
        ]
    anat = BIDS / wildcards.subject / "anat"
    return sorted(str(p) for p in anat.glob(f"{wildcards.subject}_echo-*_MEGRE.*"))


def raw_t1w(wildcards):
    """A subject's T1w image."""
    if SIMULATED:
        return str(
            SIM_BIDS / wildcards.subject / "anat" / f"{wildcards.subject}_T1w.nii.gz"
        )
    return str(t1w_file(BIDS, wildcards.subject))


def participants_tsv():
    return str(BIDS / "participants.tsv")


def subject_files(pattern):
    """Expand a path pattern with {subject} over the included subjects."""
    return expand(str(pattern), subject=SUBJECTS)


def all_targets():
    targets = [str(DERIV / "dataset_description.json")]
    targets += subject_files(
        DERIV / "{subject}" / "anat" / "{subject}_desc-inputs_summary.json"
    )
    targets += subject_files(
        DERIV / "{subject}" / "anat" / "{subject}_space-MEGRE_Chimap.nii.gz"
    )
    targets += subject_files(
        DERIV
        / "{subject}"
        / "anat"
        / f"{{subject}}_space-{TPL}_desc-normalization_qc.json"
    )
    if SIMULATED:
        targets += subject_files(
            OUT / "simulation" / "figures" / "{subject}_simulation.png"
        )[:1]
    return targets
