# Group analysis: design, voxelwise GLMs with small-volume correction, ROI values and statistics.

from qsmvbm.stats.voxelwise import tfce_on

MODALITIES = ["qsm", "gm"]
TFCE = tfce_on(config["group"])
TFCE_MAPS = {k: L.group(k) for k in ("tfce", "tfce_pfwe")} if TFCE else {}


wildcard_constraints:
    modality="qsm|gm",


rule group_design:
    input:
        participants=participants_tsv(),
        qc=rules.normalization_qc.output.table,
        volumes=ok_subject_files("volumes"),
    output:
        L.group("design"),
        json=L.group("design").with_suffix(".json"),
    log:
        L.log("group_design"),
    benchmark:
        L.benchmark("group_design")
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
        **TFCE_MAPS,
        tstat=L.group("tstat"),
        effect=L.group("effect"),
        clusters=L.group("cluster_map"),
        mask=L.group("svc_mask"),
        sd=L.group("resid_sd"),
        table=L.group("cluster_table"),
        json=L.group("glm_json"),
    log:
        L.log("group_glm_{modality}"),
    benchmark:
        L.benchmark("group_glm_{modality}")
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
        expand(L.group("cluster_table"), modality=MODALITIES),
    output:
        L.group("clusters"),
        json=L.group("clusters").with_suffix(".json"),
    log:
        L.log("cluster_table"),
    benchmark:
        L.benchmark("cluster_table")
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
        cluster_maps=expand(L.group("cluster_map"), modality=MODALITIES),
        design=rules.group_design.output[0],
    output:
        tsv=L.group("roi_values"),
        json=L.group("roi_values_json"),
    log:
        L.log("roi_values"),
    benchmark:
        L.benchmark("roi_values")
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
        stats=L.group("roi_stats"),
        correlations=L.group("correlations"),
        stats_json=L.group("roi_stats").with_suffix(".json"),
        correlations_json=L.group("correlations").with_suffix(".json"),
    log:
        L.log("roi_statistics"),
    benchmark:
        L.benchmark("roi_statistics")
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
        L.group("demographics"),
        json=L.group("demographics").with_suffix(".json"),
    log:
        L.log("demographics"),
    benchmark:
        L.benchmark("demographics")
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
