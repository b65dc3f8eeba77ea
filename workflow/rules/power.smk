# Study power from this run (issue 23): built with power.enabled, or when asked for (`snakemake power`).

POWER_MODALITIES = list(config["power"]["modalities"])


rule power:
    input:
        unpack(power_inputs),
        resid_sd=expand(str(L.group("resid_sd")), modality=POWER_MODALITIES),
        svc_mask=expand(str(L.group("svc_mask")), modality=POWER_MODALITIES),
        glm=expand(str(L.group("glm_json")), modality=POWER_MODALITIES),
    output:
        table=L.group("power_table"),
        needed=L.group("power_needed"),
        json=L.group("power_json"),
        png=report(
            L.group("power_png"),
            caption="../report/power.rst",
            category="4. Study power",
        ),
        html=report(
            L.group("power_html"),
            caption="../report/power.rst",
            category="4. Study power",
        ),
    log:
        L.log("power"),
    benchmark:
        L.benchmark("power")
    conda:
        ENV
    threads: config["resources"]["power_threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        power=config["power"],
        config=config,
    script:
        "../scripts/power.py"
