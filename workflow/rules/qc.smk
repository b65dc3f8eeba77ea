# Cohort-level normalization QC: every subject's verdict, with its reason, in one table.


rule normalization_qc:
    input:
        qc=subject_files(ANAT / f"{{subject}}_space-{TPL}_desc-normalization_qc.json"),
        chi=subject_files(ANAT / f"{{subject}}_space-{TPL}_res-{RES}_Chimap.nii.gz"),
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
        group_column=config["participants"]["group_column"],
    script:
        "../scripts/normalization_qc.py"
