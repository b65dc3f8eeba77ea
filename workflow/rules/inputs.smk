# Checking each subject's raw inputs before processing, and the derivatives' description.


rule inputs_summary:
    input:
        megre=raw_megre,
        t1w=raw_t1w,
        participants=participants_tsv(),
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
