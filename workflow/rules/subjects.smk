# The subjects of the run and the pre-flight checks: every run-level problem stops the run here,
# before any per-subject job; a subject whose input files are missing is excluded with the reason.
from qsmvbm.bids import (
    BidsInputError,
    missing_inputs,
    read_participants,
    series_listing,
)
from qsmvbm.preflight import (
    anat_setting_problems,
    cohort_notes,
    group_setting_problems,
    output_inside_input,
    power_setting_problems,
    select_participants,
)
from qsmvbm.simulate.cohort import participant_columns, participant_ids
from qsmvbm.simulate.settings import load_simulation_config

try:
    if SIMULATED:
        SIM_CONFIG = load_simulation_config(config["simulation"])
        SUBJECTS = participant_ids(SIM_CONFIG)
        N_SIM_ECHOES = SIM_CONFIG["gre"]["n_echoes"]
    else:
        SIM_CONFIG = None
        PARTICIPANTS = read_participants(
            BIDS,
            PCFG["group_column"],
            (PCFG["patient_label"], PCFG["control_label"]),
            require_groups=config["analysis_level"] == "group",
        )
        SUBJECTS = list(PARTICIPANTS["participant_id"])
        for _grp in PARTICIPANTS.attrs["missing_groups"]:
            logger.warning(
                f"NOTE: participants.tsv has no {PCFG['group_column']} {_grp!r} row: per-subject maps "
                "only; the group level needs both groups"
            )
        for _pid, _grp in PARTICIPANTS.attrs["other_groups"].items():
            logger.warning(
                f"NOTE: {_pid} is in group {_grp!r}, neither {PCFG['patient_label']!r} nor "
                f"{PCFG['control_label']!r}: not processed"
            )
except (ConfigError, BidsInputError) as err:
    raise WorkflowError(str(err)) from None

_problems = []
if not SIMULATED:
    _inside = output_inside_input(L.output_dir, BIDS)
    if _inside:
        _problems.append(_inside)
    _columns = set(PARTICIPANTS.columns)
    _folders = [d for d in BIDS.glob("sub-*") if d.is_dir()]
else:
    _columns = set(participant_columns(SIM_CONFIG))
    _folders = []
for _note in cohort_notes(SUBJECTS, _folders, PCFG["exclude"]):
    logger.warning(f"NOTE: {_note}")
_group_problems = group_setting_problems(config["group"], _columns)
_group_problems += power_setting_problems(config["power"])
if config["analysis_level"] == "group":
    _problems += _group_problems
else:  # per-subject maps do not depend on the group settings: checked again at the group level
    for _note in _group_problems:
        logger.warning(f"NOTE (group level): {_note}")
_problems += anat_setting_problems(config["anat"])
SUBJECTS, _unknown = select_participants(SUBJECTS, PCFG["participant_label"])
if _unknown:
    _problems.append(
        f"participants.participant_label (--participant-label) names {', '.join(_unknown)}, "
        "not in participants.tsv"
    )
if _problems:
    raise WorkflowError(
        "the configuration cannot run on this dataset (nothing was computed):\n  "
        + "\n  ".join(_problems)
    )
SUBJECTS = [s for s in SUBJECTS if s not in set(PCFG["exclude"])]

# subjects of a real dataset whose input files are missing (found from file names only; the
# input_check rule reads them): excluded with the reason, recorded in the QC table
INPUT_EXCLUDED = {}
if not SIMULATED:
    for _s in SUBJECTS:
        _listing = series_listing(BIDS, _s, BIDS_FILTERS["megre"])
        if _listing:
            logger.warning(f"NOTE: {_listing}")
        _why = missing_inputs(BIDS, _s, BIDS_FILTERS["t1w"], BIDS_FILTERS["megre"])
        if _why:
            INPUT_EXCLUDED[_s] = _why
            logger.warning(f"EXCLUDED {_s}: {_why}")
    SUBJECTS = [s for s in SUBJECTS if s not in INPUT_EXCLUDED]
