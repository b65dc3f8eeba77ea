# Cohort-level normalization QC: every subject's verdict, with its reason, in one table.


rule normalization_qc:
    input:
        qc=normalization_qc_files,
        chi=template_chi_files,
        checks=input_check_files,
        qsm_json=qsm_sidecar_files,
        volumes=volume_files,
        participants=participants_tsv(),
    output:
        table=GROUP / "qc" / "normalization_qc.tsv",
    log:
        LOGS / "normalization_qc.log",
    benchmark:
        BENCH / "normalization_qc.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        qc=config["qc"],
        input_exclusions=INPUT_EXCLUDED,
        group_column=config["participants"]["group_column"],
    script:
        "../scripts/normalization_qc.py"
