# qsmvbm: QSM and VBM group studies from BIDS multi-echo GRE + T1w.
# Run `snakemake --cores N` (config/config.yaml) or `--profile profiles/slurm`.


include: "workflow/rules/config.smk"
include: "workflow/rules/subjects.smk"
include: "workflow/rules/functions.smk"


report: "workflow/report/workflow.rst"


# Snakemake's rate-limit re-evaluations: one pending at a time, not a timer chain per finished job
# that re-examines every ready job's inputs (qsmvbm.smk.single_reevaluation_timer; issue 22)
single_reevaluation_timer()


if SIMULATED:

    include: "workflow/rules/simulate.smk"


include: "workflow/rules/inputs.smk"
include: "workflow/rules/qsm.smk"
include: "workflow/rules/anat.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/derivatives.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/group.smk"
include: "workflow/rules/power.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        input_check_files,
        all_targets,


# the participant level of the `qsmvbm` command (BIDS App): per-subject outputs, no group stage
rule participant:
    input:
        input_check_files,
        participant_targets,


# Steps that only read and write small tables or text run on the machine that runs Snakemake when
# the jobs go to a cluster (--profile profiles/slurm): a queue wait and a job start for each would
# cost more than the step itself.
localrules:
    all,
    participant,
    input_checks,
    derivatives_description,
    derivative_sidecars,
    group_design,
    cluster_table,
    roi_statistics,
    demographics,
    report_tables,
    methods_text,


onsuccess:
    # the summary line a user reads last: who was left out of the group analyses, and why
    _summary = exclusion_summary(L.group("qc_table"))
    if _summary:
        logger.warning(_summary)
    # the profiles' max-jobs-per-timespan leaves a scheduler timer that would hold the exit
    cancel_pending_timers()


onerror:
    cancel_pending_timers()
