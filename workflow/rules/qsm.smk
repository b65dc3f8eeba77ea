# Per-subject QSM reconstruction (native GRE space).


rule qsm:
    input:
        unpack(qsm_mask_inputs),
        megre=raw_megre,
        checked=rules.inputs_summary.output[0],
    output:
        chi=L.subject("chi"),
        chi_json=L.subject("chi_json"),
        mask=L.subject("gre_brain_mask"),
        final_mask=L.subject("qsm_mask"),
        total_field=L.subject("total_field"),
        local_field=L.subject("local_field"),
        noise=L.subject("noise"),
        r2star=L.subject("r2star"),
        magnitude=L.subject("magnitude"),
        qc=report(
            L.subject("qsm_qc_png"),
            caption="../report/qsm_qc.rst",
            category="QSM",
            subcategory="{subject}",
        ),
    log:
        L.log("qsm", "{subject}"),
    benchmark:
        L.benchmark("qsm", "{subject}")
    group:
        "subject"
    conda:
        ENV
    threads: config["resources"]["qsm_threads"]
    resources:
        mem_mb=config["resources"]["qsm_mem_mb"],
        runtime=30,
    params:
        qsm=config["qsm"],
        megre_filters=config["bids_filters"]["megre"],
    script:
        "../scripts/qsm.py"
