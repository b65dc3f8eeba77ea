# Group analysis: design, voxelwise GLMs with small-volume correction, ROI values and statistics.

MODALITIES = ["qsm", "gm"]


wildcard_constraints:
    modality="qsm|gm",


rule group_design:
    input:
        participants=participants_tsv(),
        qc=rules.normalization_qc.output.table,
        volumes=volume_files,
    output:
        GROUP / "design.tsv",
    log:
        LOGS / "group_design.log",
    benchmark:
        BENCH / "group_design.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        group_column=PCFG["group_column"],
        patient=PCFG["patient_label"],
        control=PCFG["control_label"],
        rate=config["group"]["progression_rate"],
    script:
        "../scripts/group_design.py"


rule group_glm:
    input:
        unpack(glm_inputs),
        design=rules.group_design.output[0],
    output:
        tstat=GROUP / "{modality}_tstat.nii.gz",
        effect=GROUP / "{modality}_effect.nii.gz",
        clusters=GROUP / "{modality}_clusters.nii.gz",
        mask=GROUP / "{modality}_mask.nii.gz",
        table=GROUP / "{modality}_clusters.tsv",
        json=GROUP / "{modality}_glm.json",
    log:
        LOGS / "group_glm_{modality}.log",
    benchmark:
        BENCH / "group_glm_{modality}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        group=config["group"],
        patient=PCFG["patient_label"],
        control=PCFG["control_label"],
        resolution=RES,
    script:
        "../scripts/group_glm.py"


rule cluster_table:
    input:
        expand(GROUP / "{modality}_clusters.tsv", modality=MODALITIES),
    output:
        GROUP / "clusters.tsv",
    log:
        LOGS / "cluster_table.log",
    benchmark:
        BENCH / "cluster_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/cluster_table.py"


rule roi_values:
    input:
        unpack(roi_value_inputs),
        clusters=rules.cluster_table.output[0],
        cluster_maps=expand(GROUP / "{modality}_clusters.nii.gz", modality=MODALITIES),
        design=rules.group_design.output[0],
    output:
        tsv=GROUP / "roi_values.tsv",
        json=GROUP / "roi_values.json",
    log:
        LOGS / "roi_values.log",
    benchmark:
        BENCH / "roi_values.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        group=config["group"],
    script:
        "../scripts/roi_values.py"


rule roi_statistics:
    input:
        values=rules.roi_values.output.tsv,
        columns=rules.roi_values.output.json,
        design=rules.group_design.output[0],
    output:
        stats=GROUP / "roi_stats.tsv",
        correlations=GROUP / "correlations.tsv",
    log:
        LOGS / "roi_statistics.log",
    benchmark:
        BENCH / "roi_statistics.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        group=config["group"],
        patient=PCFG["patient_label"],
        control=PCFG["control_label"],
    script:
        "../scripts/roi_statistics.py"


rule demographics:
    input:
        rules.group_design.output[0],
    output:
        GROUP / "demographics.tsv",
    log:
        LOGS / "demographics.log",
    benchmark:
        BENCH / "demographics.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        patient=PCFG["patient_label"],
        control=PCFG["control_label"],
        clinical=config["group"]["clinical_scores"],
    script:
        "../scripts/demographics.py"
