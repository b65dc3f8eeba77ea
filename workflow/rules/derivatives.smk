# JSON sidecars of each subject's derivative images (BIDS derivatives: what each image is, units,
# SkullStripped, Resolution, SpatialReference, the stage's parameters). The QSM's own sidecar is
# written by the qsm rule.

SIDECAR_KEYS = L.sidecar_keys(MULTICHANNEL)


rule derivative_sidecars:
    input:
        images=[L.subject(k) for k in SIDECAR_KEYS],
        chi_json=L.subject("chi_json"),
        t1w=raw_t1w,
    output:
        [L.sidecar(k) for k in SIDECAR_KEYS],
    log:
        L.log("derivative_sidecars", "{subject}"),
    benchmark:
        L.benchmark("derivative_sidecars", "{subject}")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        images=SIDECAR_KEYS,
        bids_dir=str(BIDS),
        stages={"qsm": config["qsm"], "anat": config["anat"]},
        resolution=config["anat"]["template_resolution"],
    script:
        "../scripts/derivative_sidecars.py"
