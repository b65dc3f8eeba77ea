# The study report: group figures, tables and the generated methods text (snakemake --report).

REPORT = GROUP / "report"


rule report_figures:
    input:
        qsm_tstat=GROUP / "qsm_tstat.nii.gz",
        gm_tstat=GROUP / "gm_tstat.nii.gz",
        qsm_clusters=GROUP / "qsm_clusters.nii.gz",
        gm_clusters=GROUP / "gm_clusters.nii.gz",
        qsm_glm=GROUP / "qsm_glm.json",
        gm_glm=GROUP / "gm_glm.json",
        clusters=rules.cluster_table.output[0],
        values=rules.roi_values.output.tsv,
        columns=rules.roi_values.output.json,
        stats=rules.roi_statistics.output.stats,
        correlations=rules.roi_statistics.output.correlations,
        design=rules.group_design.output[0],
    output:
        qsm_svc=report(
            REPORT / "fig1_qsm_svc.png",
            caption="../report/fig_svc.rst",
            category="1. Group results",
            subcategory="Figure 1: SVC t-maps",
        ),
        gm_svc=report(
            REPORT / "fig1_gm_svc.png",
            caption="../report/fig_svc.rst",
            category="1. Group results",
            subcategory="Figure 1: SVC t-maps",
        ),
        roi_groups=report(
            REPORT / "fig2_roi_groups.png",
            caption="../report/fig_roi_groups.rst",
            category="1. Group results",
            subcategory="Figure 2: ROI values per group",
        ),
        qsm_vs_gm=report(
            REPORT / "fig3_qsm_vs_gm.png",
            caption="../report/fig_qsm_vs_gm.rst",
            category="1. Group results",
            subcategory="Figure 3: QSM vs GM",
        ),
        clinical=report(
            REPORT / "fig4_clinical.png",
            caption="../report/fig_clinical.rst",
            category="1. Group results",
            subcategory="Figure 4: clinical correlations",
        ),
    log:
        LOGS / "report_figures.log",
    benchmark:
        BENCH / "report_figures.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=15,
    params:
        patient=PCFG["patient_label"],
        control=PCFG["control_label"],
        clinical=config["group"]["clinical_scores"],
        rois=config["group"]["rois"],
        resolution=RES,
    script:
        "../scripts/report_figures.py"


rule report_tables:
    input:
        demographics=rules.demographics.output[0],
        clusters=rules.cluster_table.output[0],
        roi_stats=rules.roi_statistics.output.stats,
        correlations=rules.roi_statistics.output.correlations,
        qc=rules.normalization_qc.output.table,
    output:
        demographics=report(
            REPORT / "table1_demographics.html",
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "Table 1: demographics"},
        ),
        clusters=report(
            REPORT / "table2_clusters.html",
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "Clusters"},
        ),
        roi_stats=report(
            REPORT / "table3_roi_stats.html",
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "ROI statistics"},
        ),
        correlations=report(
            REPORT / "table4_correlations.html",
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "Correlations"},
        ),
        qc=report(
            REPORT / "table5_qc_exclusions.html",
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "QC exclusions"},
        ),
    log:
        LOGS / "report_tables.log",
    benchmark:
        BENCH / "report_tables.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/report_tables.py"


rule qc_figure:
    input:
        rules.normalization_qc.output.table,
    output:
        report(
            REPORT / "qc_summary.png",
            caption="../report/qc_summary.rst",
            category="3. Quality control",
        ),
    log:
        LOGS / "qc_figure.log",
    benchmark:
        BENCH / "qc_figure.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        qc=config["qc"],
    script:
        "../scripts/qc_figure.py"


rule methods_text:
    input:
        design=rules.group_design.output[0],
        qc=rules.normalization_qc.output.table,
        qsm_glm=GROUP / "qsm_glm.json",
        gm_glm=GROUP / "gm_glm.json",
    output:
        html=report(
            REPORT / "methods.html",
            caption="../report/methods.rst",
            category="0. Methods",
        ),
        md=REPORT / "methods.md",
    log:
        LOGS / "methods_text.log",
    benchmark:
        BENCH / "methods_text.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        config=config,
        simulation=config["simulation"] if SIMULATED else None,
    script:
        "../scripts/methods_text.py"
