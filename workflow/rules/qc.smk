# Cohort-level normalization QC: every subject's verdict, with its reason, in one table.


rule normalization_qc:
    input:
        qc=ok_subject_files("normalization_qc"),
        chi=ok_subject_files("template_chi"),
        checks=input_check_files,
        qsm_json=ok_subject_files("chi_json"),
        volumes=ok_subject_files("volumes"),
        qsm_mask=ok_subject_files("template_qsm_mask"),
        participants=participants_tsv(),
    output:
        table=L.group("qc_table"),
        json=L.group("qc_table").with_suffix(".json"),
    log:
        L.log("normalization_qc"),
    benchmark:
        L.benchmark("normalization_qc")
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
        rois=config["group"]["rois"],
    script:
        "../scripts/normalization_qc.py"
