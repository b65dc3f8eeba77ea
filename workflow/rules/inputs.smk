# Checking each subject's raw inputs before processing, and the derivatives' description.
# inputs_summary waits for the T1w checkpoint (anat.smk) so that, on a cluster, everything after
# the checkpoint (inputs summary, QSM, anatomy, registration, template maps) is ONE job per subject,
# and a changed GRE file does not re-run the checkpoint (the dry run then shows the full chain).


rule inputs_summary:
    input:
        megre=raw_megre,
        t1w=raw_t1w,
        t1check=ANAT / "{subject}_desc-t1check.json",
    output:
        DERIV / "{subject}" / "anat" / "{subject}_desc-inputs_summary.json",
    log:
        LOGS / "inputs_summary" / "{subject}.log",
    benchmark:
        BENCH / "inputs_summary" / "{subject}.tsv"
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
    script:
        "../scripts/inputs_summary.py"


rule derivatives_description:
    output:
        DERIV / "dataset_description.json",
    log:
        LOGS / "derivatives_description.log",
    benchmark:
        BENCH / "derivatives_description.tsv"
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
