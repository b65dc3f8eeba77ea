# Input functions and targets. Paths come from the layout `L`; the subjects from subjects.smk.
import json

from qsmvbm.bids import gre_session, megre_candidates, t1w_file
from qsmvbm.inputs import exclusion_summary
from qsmvbm.simulate.subject import bids_paths, truth_paths
from qsmvbm.smk import cancel_pending_timers, single_reevaluation_timer
from qsmvbm.stats.power_cli import uses_subject_maps


def sim_subject_outputs():
    """Output patterns of one simulated subject's raw BIDS files and sidecars."""
    return [str(p) for p in bids_paths(L.sim_bids, "{subject}", N_SIM_ECHOES).values()]


def sim_truth_outputs():
    """Output patterns of one simulated subject's ground truth."""
    return [str(p) for p in truth_paths(L.sim_bids, "{subject}").values()]


def raw_megre(wildcards):
    """A subject's multi-echo GRE files (NIfTI + JSON). Simulated: the simulator's outputs."""
    if SIMULATED:
        return [
            str(p).format(subject=wildcards.subject)
            for p in sim_subject_outputs()
            if "MEGRE" in str(p)
        ]
    return [
        str(p) for p in megre_candidates(BIDS, wildcards.subject, BIDS_FILTERS["megre"])
    ]


def raw_t1w(wildcards):
    """A subject's T1w image."""
    if SIMULATED:
        return str(bids_paths(L.sim_bids, wildcards.subject, N_SIM_ECHOES)["T1w"])
    session = gre_session(BIDS, wildcards.subject, BIDS_FILTERS["megre"])
    return str(t1w_file(BIDS, wildcards.subject, BIDS_FILTERS["t1w"], session))


def qsm_mask_inputs(wildcards):
    """The T1w brain mask, the GRE->T1w rigid that brings it over and the T1w volumes: the QSM mask
    (``qsm.mask.source: t1``) or the reference its plausibility is checked against."""
    return {
        key: str(L.subject(key, wildcards.subject))
        for key in ("t1_mask", "gre_xfm", "volumes")
    }


def normalization_xfm(kind):
    """The subject->template transform used for the template-space maps (``kind``: 'affine' or
    'warp'): the multichannel SyN's or the T1-only SyN's."""
    return L.subject(f"mc_{kind}" if MULTICHANNEL else kind)


#: the ``anat`` keys that each ANTs step reads. Each gets only its own keys, so that a change of
#: another stage's option (smoothing, deep-grey measure) does not rerun it (the params trigger)
ANAT_KEYS = {
    "anat_t1": (
        "template_resolution",
        "registration",
        "brain_extraction_init",
        "brain_extraction_bet_f",
        "brain_extraction_voxel_mm",
        "brain_extraction_registration",
        "n4_shrink_factor",
        "random_seed",
        "deterministic",
        "atropos",
    ),
    "register_multichannel": ("template_resolution", "multichannel", "random_seed"),
    "refine_deep_grey": ("template_resolution", "random_seed"),
}


def anat_params(step):
    """The ``anat`` config section as the step ``step`` reads it (see ANAT_KEYS); the
    deep-grey refinement gets ``deep_grey.refine`` alone."""
    out = {key: config["anat"][key] for key in ANAT_KEYS[step]}
    if step == "refine_deep_grey":
        out["deep_grey"] = {"refine": config["anat"]["deep_grey"]["refine"]}
    return out


def deep_grey_refinement(wildcards):
    """The deep-grey refinement's field as the template maps' ``refine`` input, when
    ``anat.deep_grey.refine.enabled`` (else nothing)."""
    if not config["anat"]["deep_grey"]["refine"]["enabled"]:
        return {}
    return {"refine": str(L.subject("deepgrey_warp", wildcards.subject))}


def template_maps_group():
    """Cluster job group of the template-space maps: with multichannel normalization they wait for
    the cohort QSM template, so they form a second per-subject group after it."""
    return "subject_multichannel" if MULTICHANNEL else "subject"


def participants_tsv():
    return str(BIDS / "participants.tsv")


def subject_files(key, subjects=None):
    """The per-subject file ``key`` (qsmvbm.layout.SUBJECT_FILES) of every subject in ``subjects``
    (default: every subject of the run)."""
    return expand(
        str(L.subject(key)), subject=SUBJECTS if subjects is None else subjects
    )


def input_check_files(wildcards):
    return subject_files("input_check")


def ok_subjects():
    """Subjects whose raw inputs passed the input check (evaluates the cohort's checkpoint)."""
    with open(checkpoints.input_checks.get().output[0]) as f:
        verdicts = json.load(f)["subjects"]
    return [s for s in SUBJECTS if verdicts[s]["ok"]]


def ok_subject_files(key):
    """An input function: file ``key`` of every subject that passed the input check."""

    def files(wildcards):
        return subject_files(key, ok_subjects())

    return files


def t1reg_qsm_files(wildcards):
    """Every T1-normalized template-space QSM (and its mask): the cohort QSM template's inputs."""
    subjects = ok_subjects()
    return {
        "chi": subject_files("t1reg_chi", subjects),
        "mask": subject_files("t1reg_qsm_mask", subjects),
    }


def glm_inputs(wildcards):
    """Template-space maps of every subject that reached normalization (QC filters in the design);
    for QSM also each subject's template-space QSM mask."""
    subjects = ok_subjects()
    files = {"maps": expand(str(L.group_map(wildcards.modality)), subject=subjects)}
    if wildcards.modality == "qsm":
        files["valid"] = subject_files("template_qsm_mask", subjects)
    return files


def power_inputs(wildcards):
    """The analysed subject maps and the design, which the model reads for a modality whose noise is
    the run's own residuals (power.noise: residuals), whose effects are relative to the controls'
    mean map (scale: relative) or whose noise the pilot's bootstrap resamples (pilot_bootstrap):
    declared, so Snakemake knows every file the rule reads (power_cli.uses_subject_maps).
    """
    modalities = [
        m
        for m, c in config["power"]["modalities"].items()
        if uses_subject_maps(config["power"], c["scale"] == "relative")
    ]
    if not modalities:
        return {}
    subjects = ok_subjects()
    return {
        "design": str(L.group("design")),
        "maps": [str(L.group_map(m, s)) for m in modalities for s in subjects],
    }


def roi_value_inputs(wildcards):
    subjects = ok_subjects()
    return {
        f"{m}_maps": expand(str(L.group_map(m)), subject=subjects)
        for m in ("qsm", "gm")
    }


def group_targets():
    tables = (
        "clusters",
        "roi_stats",
        "correlations",
        "demographics",
        "design",
        "qc_table",
    )
    return [str(L.group(t).with_suffix(".json")) for t in tables] + [
        str(p)
        for p in (
            L.group("clusters"),
            L.group("roi_values"),
            L.group("roi_stats"),
            L.group("correlations"),
            L.group("demographics"),
            L.report("fig1", "qsm"),
            L.report("table1"),
            L.report("qc_summary"),
            L.report("methods_html"),
        )
    ]


def dataset_files():
    """The derivatives' dataset-level files: description, dseg label table, .bidsignore, README."""
    return [
        str(p)
        for p in (
            L.dataset_description(),
            L.dseg_table(),
            L.bidsignore(),
            L.derivatives_readme(),
        )
    ]


def subject_sidecars(subjects):
    """The JSON sidecars of the derivative images of ``subjects`` (rule derivative_sidecars)."""
    return [str(L.sidecar(k, s)) for s in subjects for k in SIDECAR_KEYS]


def participant_targets(wildcards):
    """The participant level (BIDS App): every chosen subject's QSM, template-space maps and
    normalization QC, for the subjects that passed the input check."""
    subjects = ok_subjects()
    targets = dataset_files()
    targets += subject_sidecars(subjects)
    for key in (
        "inputs_summary",
        "chi",
        L.group_map_key("qsm"),
        L.group_map_key("gm"),
        "normalization_qc",
    ):
        targets += subject_files(key, subjects)
    return targets


def all_targets(wildcards):
    """The default targets; per-subject ones for the subjects that passed the input check."""
    subjects = ok_subjects()
    targets = dataset_files()
    targets += subject_sidecars(subjects)
    targets += subject_files("inputs_summary", subjects)
    targets += subject_files("chi", subjects)
    targets.append(str(L.group("qc_table")))
    targets += group_targets()
    if config["power"]["enabled"]:
        targets.append(str(L.group("power_html")))
    if SIMULATED:
        targets += expand(str(L.simulation_figure()), subject=SUBJECTS)[:1]
    return targets
