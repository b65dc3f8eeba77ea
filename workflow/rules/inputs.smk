# Checking each subject's raw inputs before processing, and the derivatives' description.
# input_check reads every voxel of the T1w and the GRE and checks that the T1w is not mirrored
# left-right relative to the GRE (a rigid fit of each handedness, about 3 s): a subject whose inputs fail is excluded with
# the reason (QC table, report, methods text) and the rest of the study goes on. One checkpoint for the
# cohort (input_checks) collects the subjects' verdicts: the per-subject chains (inputs summary, QSM,
# anatomy, registration, template maps; ONE job per subject on a cluster) are planned from it. A
# checkpoint per subject cost Snakemake one DAG update per subject and job (57% of a 1,000-subject
# dry run; benchmarks/dag_scaling.py).


rule input_check:
    input:
        megre=raw_megre,
        t1w=raw_t1w,
    output:
        L.subject("input_check"),
    log:
        L.log("input_check", "{subject}"),
    benchmark:
        L.benchmark("input_check", "{subject}")
    group:
        "subject"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["qsm_mem_mb"],
        runtime=10,
    params:
        bids_dir=str(BIDS),
        phase_units=config["qsm"]["phase_units"],
        phase_scale=config["qsm"]["phase_scale"],
        megre_filters=config["bids_filters"]["megre"],
        left_right={
            "check": config["qc"]["left_right_check"],
            "nmi_margin": config["qc"]["left_right_nmi_margin"],
            "rotation_margin_deg": config["qc"]["left_right_rotation_deg"],
            "n_starts": config["qc"]["left_right_starts"],
        },
    script:
        "../scripts/input_check.py"


checkpoint input_checks:
    input:
        input_check_files,
    output:
        L.input_checks(SUBJECTS),
    log:
        L.log("input_checks"),
    benchmark:
        L.benchmark("input_checks")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/input_checks.py"


rule inputs_summary:
    input:
        megre=raw_megre,
        t1w=raw_t1w,
        check=L.subject("input_check"),
    output:
        L.subject("inputs_summary"),
    log:
        L.log("inputs_summary", "{subject}"),
    benchmark:
        L.benchmark("inputs_summary", "{subject}")
    group:
        "subject"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        bids_dir=str(BIDS),
        megre_filters=config["bids_filters"]["megre"],
    script:
        "../scripts/inputs_summary.py"


rule derivatives_description:
    output:
        description=L.dataset_description(),
        dseg=L.dseg_table(),
        bidsignore=L.bidsignore(),
        readme=L.derivatives_readme(),
    log:
        L.log("derivatives_description"),
    benchmark:
        L.benchmark("derivatives_description")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        bids_dir=str(BIDS),
        config=config,
    script:
        "../scripts/derivatives_description.py"
