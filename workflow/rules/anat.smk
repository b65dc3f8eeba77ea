# Per-subject T1w processing: N4, brain extraction, SyN to the template, Atropos, TIV. Only subjects
# that passed the input check (inputs.smk) are asked for; the check is not an input here, so a changed
# GRE file (which reruns the check) does not rerun the anatomy.


rule anat_t1:
    input:
        t1w=raw_t1w,
    output:
        preproc=L.subject("t1_preproc"),
        mask=L.subject("t1_mask"),
        gm=L.subject("gm"),
        wm=L.subject("wm"),
        csf=L.subject("csf"),
        dseg=L.subject("dseg"),
        affine=L.subject("affine"),
        warp=L.subject("warp"),
        inverse_warp=L.subject("inverse_warp"),
        template_t1=L.subject("template_t1"),
        template_mask=L.subject("template_mask"),
        volumes=L.subject("volumes"),
    log:
        L.log("anat_t1", "{subject}"),
    benchmark:
        L.benchmark("anat_t1", "{subject}")
    group:
        "subject"
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=config["resources"]["anat_mem_mb"],
        runtime=60,
    params:
        anat=anat_params("anat_t1"),
    script:
        "../scripts/anat_t1.py"
