# The study report: group figures, tables and the generated methods text (snakemake --report).


rule report_figures:
    input:
        qsm_tstat=L.group("tstat", "qsm"),
        gm_tstat=L.group("tstat", "gm"),
        qsm_clusters=L.group("cluster_map", "qsm"),
        gm_clusters=L.group("cluster_map", "gm"),
        qsm_glm=L.group("glm_json", "qsm"),
        gm_glm=L.group("glm_json", "gm"),
        clusters=rules.cluster_table.output[0],
        values=rules.roi_values.output.tsv,
        columns=rules.roi_values.output.json,
        stats=rules.roi_statistics.output.stats,
        correlations=rules.roi_statistics.output.correlations,
        design=rules.group_design.output[0],
    output:
        qsm_svc=report(
            L.report("fig1", "qsm"),
            caption="../report/fig_svc.rst",
            category="1. Group results",
            subcategory="Figure 1: SVC t-maps",
        ),
        gm_svc=report(
            L.report("fig1", "gm"),
            caption="../report/fig_svc.rst",
            category="1. Group results",
            subcategory="Figure 1: SVC t-maps",
        ),
        roi_groups=report(
            L.report("fig2"),
            caption="../report/fig_roi_groups.rst",
            category="1. Group results",
            subcategory="Figure 2: ROI values per group",
        ),
        qsm_vs_gm=report(
            L.report("fig3"),
            caption="../report/fig_qsm_vs_gm.rst",
            category="1. Group results",
            subcategory="Figure 3: QSM vs GM",
        ),
        clinical=report(
            L.report("fig4"),
            caption="../report/fig_clinical.rst",
            category="1. Group results",
            subcategory="Figure 4: clinical correlations",
        ),
        # the same figures as SVG, for a paper
        qsm_svc_svg=L.report_svg("fig1", "qsm"),
        gm_svc_svg=L.report_svg("fig1", "gm"),
        roi_groups_svg=L.report_svg("fig2"),
        qsm_vs_gm_svg=L.report_svg("fig3"),
        clinical_svg=L.report_svg("fig4"),
    log:
        L.log("report_figures"),
    benchmark:
        L.benchmark("report_figures")
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
            L.report("table1"),
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "Table 1: demographics"},
        ),
        clusters=report(
            L.report("table2"),
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "Clusters"},
        ),
        roi_stats=report(
            L.report("table3"),
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "ROI statistics"},
        ),
        correlations=report(
            L.report("table4"),
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "Correlations"},
        ),
        qc=report(
            L.report("table5"),
            caption="../report/table.rst",
            category="2. Tables",
            labels={"table": "QC exclusions"},
        ),
    log:
        L.log("report_tables"),
    benchmark:
        L.benchmark("report_tables")
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
            L.report("qc_summary"),
            caption="../report/qc_summary.rst",
            category="3. Quality control",
        ),
    log:
        L.log("qc_figure"),
    benchmark:
        L.benchmark("qc_figure")
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
        qsm_glm=L.group("glm_json", "qsm"),
        gm_glm=L.group("glm_json", "gm"),
    output:
        html=report(
            L.report("methods_html"),
            caption="../report/methods.rst",
            category="0. Methods",
        ),
        md=L.report("methods_md"),
    log:
        L.log("methods_text"),
    benchmark:
        L.benchmark("methods_text")
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
