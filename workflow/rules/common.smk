# Shared setup: config validation, paths, subjects, input functions.
import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "lib"))

from qsmvbm.bids import BidsInputError, read_participants, t1w_file  # noqa: E402
from qsmvbm.preflight import (  # noqa: E402
    cohort_notes,
    group_setting_problems,
    output_inside_input,
)
from qsmvbm.config import ConfigError, validate as validate_with_hints  # noqa: E402
from qsmvbm.inputs import exclusion_summary  # noqa: E402
from qsmvbm.simulate.cohort import participant_columns, participant_ids  # noqa: E402
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

# ---- pre-flight: every run-level problem stops the run here, before any per-subject job ----
_problems = []
if not SIMULATED:
    _inside = output_inside_input(OUT, BIDS)
    if _inside:
        _problems.append(_inside)
    _columns = set(PARTICIPANTS.columns)
    for _note in cohort_notes(
        SUBJECTS, [d for d in BIDS.glob("sub-*") if d.is_dir()], PCFG["exclude"]
    ):
        logger.warning(f"NOTE: {_note}")
else:
    _columns = set(participant_columns(SIM_CONFIG))
    for _note in cohort_notes(SUBJECTS, [], PCFG["exclude"]):
        logger.warning(f"NOTE: {_note}")
_problems += group_setting_problems(config["group"], _columns)
if _problems:
    raise WorkflowError(
        "the configuration cannot run on this dataset (nothing was computed):\n  "
        + "\n  ".join(_problems)
    )
SUBJECTS = [s for s in SUBJECTS if s not in set(PCFG["exclude"])]


def ants_threads():
    """Threads of the ANTs rules (they reach ITK): 1 when ``anat.deterministic`` (reproducible results),
    else ``resources.anat_threads``."""
    if config["anat"]["deterministic"]:
        return 1
    return config["resources"]["anat_threads"]


MULTICHANNEL = config["anat"]["normalization"] == "multichannel"
COHORT_QSM_TEMPLATE = (
    DERIV / "templates" / f"tpl-{TPL}_res-{RES}_desc-cohortmedian_Chimap.nii.gz"
)


def normalization_xfm(kind):
    """The subject->template transform used for the template-space maps (``kind``: 'affine' or
    'warp'): the multichannel SyN's or the T1-only SyN's output (call after both rules are defined).
    """
    producer = rules.register_multichannel if MULTICHANNEL else rules.anat_t1
    return producer.output[kind]


def template_maps_group():
    """Cluster job group of the template-space maps: with multichannel normalization they wait for
    the cohort QSM template, so they form a second per-subject group after it."""
    return "subject_multichannel" if MULTICHANNEL else "subject"


INPUT_CHECK = ANAT / "{subject}_desc-inputcheck.json"
BIDS_FILTERS = config["bids_filters"]


def missing_inputs(subject):
    """Reason a subject of a real BIDS dataset cannot be processed (no folder, no or several T1w
    images, no GRE phase images), or None. Found from file names only; the input check reads them.
    """
    anat = BIDS / subject / "anat"
    if not anat.is_dir():
        return f"no folder {anat}"
    try:
        t1w_file(BIDS, subject, BIDS_FILTERS["t1w"])
    except BidsInputError as err:
        return str(err)
    if not list(anat.glob(f"{subject}_*echo-*_part-phase_MEGRE.nii*")):
        return f"no multi-echo GRE phase images in {anat}"
    return None


INPUT_EXCLUDED = {}
if not SIMULATED:
    for _s in SUBJECTS:
        _why = missing_inputs(_s)
        if _why:
            INPUT_EXCLUDED[_s] = _why
            logger.warning(f"EXCLUDED {_s}: {_why}")
    SUBJECTS = [s for s in SUBJECTS if s not in INPUT_EXCLUDED]


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
    return sorted(str(p) for p in anat.glob(f"{wildcards.subject}_*echo-*_MEGRE.*"))


def raw_t1w(wildcards):
    """A subject's T1w image."""
    if SIMULATED:
        return str(
            SIM_BIDS / wildcards.subject / "anat" / f"{wildcards.subject}_T1w.nii.gz"
        )
    return str(t1w_file(BIDS, wildcards.subject, BIDS_FILTERS["t1w"]))


def qsm_mask_inputs(wildcards):
    """The T1w brain mask, the GRE->T1w rigid that brings it over and the T1w volumes: the QSM mask
    (``qsm.mask.source: t1``) or the reference its plausibility is checked against."""
    out = {
        "t1_mask": rules.anat_t1.output.mask,
        "gre_xfm": rules.register_gre.output.xfm,
        "volumes": rules.anat_t1.output.volumes,
    }
    return {k: str(v).format(subject=wildcards.subject) for k, v in out.items()}


def participants_tsv():
    return str(BIDS / "participants.tsv")


def subject_files(pattern):
    """Expand a path pattern with {subject} over the included subjects."""
    return expand(str(pattern), subject=SUBJECTS)


def input_check_files(wildcards):
    return subject_files(INPUT_CHECK)


def ok_subjects():
    """Subjects whose raw inputs passed the input check (evaluates the checkpoint)."""
    ok = []
    for s in SUBJECTS:
        with open(checkpoints.input_check.get(subject=s).output[0]) as f:
            if json.load(f)["ok"]:
                ok.append(s)
    return ok


def normalization_qc_files(wildcards):
    return expand(
        str(ANAT / f"{{subject}}_space-{TPL}_desc-normalization_qc.json"),
        subject=ok_subjects(),
    )


def template_chi_files(wildcards):
    return expand(
        str(ANAT / f"{{subject}}_space-{TPL}_res-{RES}_Chimap.nii.gz"),
        subject=ok_subjects(),
    )


def t1reg_qsm_files(wildcards):
    """Every T1-normalized template-space QSM (and its mask): the cohort QSM template's inputs."""
    out = rules.qsm_t1reg_template_space.output
    subjects = ok_subjects()
    return {
        "chi": expand(out.chi, subject=subjects),
        "mask": expand(out.qsm_mask, subject=subjects),
    }


def qsm_sidecar_files(wildcards):
    return expand(str(rules.qsm.output.chi_json), subject=ok_subjects())


def volume_files(wildcards):
    return expand(str(ANAT / "{subject}_desc-volumes.json"), subject=ok_subjects())


GROUP_MAPS = {
    "qsm": f"{{subject}}_space-{TPL}_res-{RES}_desc-smoothed_Chimap.nii.gz",
    "gm": f"{{subject}}_space-{TPL}_res-{RES}_label-GM_desc-modulatedsmoothed_probseg.nii.gz",
}


def glm_inputs(wildcards):
    """Template-space maps of every subject that reached normalization (QC filters in the design);
    for QSM also each subject's template-space QSM mask."""
    subjects = ok_subjects()
    files = {
        "maps": expand(str(ANAT / GROUP_MAPS[wildcards.modality]), subject=subjects)
    }
    if wildcards.modality == "qsm":
        files["valid"] = expand(
            str(ANAT / f"{{subject}}_space-{TPL}_res-{RES}_desc-qsm_mask.nii.gz"),
            subject=subjects,
        )
    return files


def roi_value_inputs(wildcards):
    subjects = ok_subjects()
    return {
        "qsm_maps": expand(str(ANAT / GROUP_MAPS["qsm"]), subject=subjects),
        "gm_maps": expand(str(ANAT / GROUP_MAPS["gm"]), subject=subjects),
    }


def group_targets():
    return [
        str(GROUP / name)
        for name in (
            "clusters.tsv",
            "roi_values.tsv",
            "roi_stats.tsv",
            "correlations.tsv",
            "demographics.tsv",
            "report/fig1_qsm_svc.png",
            "report/table1_demographics.html",
            "report/qc_summary.png",
            "report/methods.html",
        )
    ]


def all_targets(wildcards):
    """The default targets; per-subject ones for the subjects that passed the input check."""
    targets = [str(DERIV / "dataset_description.json")]
    subjects = ok_subjects()
    targets += expand(str(rules.inputs_summary.output[0]), subject=subjects)
    targets += expand(str(rules.qsm.output.chi), subject=subjects)
    targets.append(str(GROUP / "qc" / "normalization_qc.tsv"))
    targets += group_targets()
    if SIMULATED:
        targets += subject_files(
            OUT / "simulation" / "figures" / "{subject}_simulation.png"
        )[:1]
    return targets
