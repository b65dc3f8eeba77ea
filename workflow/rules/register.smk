# GRE -> T1w rigid registration, and the template-space maps (QSM, modulated GM) with QC.


rule register_gre:
    input:
        megre=raw_megre,
        t1=rules.anat_t1.output.preproc,
        t1_mask=rules.anat_t1.output.mask,
    output:
        xfm=L.subject("gre_xfm"),
        json=L.subject("gre_xfm_json"),
    log:
        L.log("register_gre", "{subject}"),
    benchmark:
        L.benchmark("register_gre", "{subject}")
    group:
        "subject"
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        seed=config["anat"]["random_seed"],
        megre_filters=config["bids_filters"]["megre"],
    script:
        "../scripts/register_gre.py"


rule qsm_t1reg_template_space:
    input:
        chi=rules.qsm.output.chi,
        qsm_mask=rules.qsm.output.final_mask,
        gre_xfm=rules.register_gre.output.xfm,
        affine=rules.anat_t1.output.affine,
        warp=rules.anat_t1.output.warp,
    output:
        chi=L.subject("t1reg_chi"),
        qsm_mask=L.subject("t1reg_qsm_mask"),
    log:
        L.log("qsm_t1reg_template_space", "{subject}"),
    benchmark:
        L.benchmark("qsm_t1reg_template_space", "{subject}")
    group:
        "subject"
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        template_resolution=RES,
    script:
        "../scripts/qsm_to_template.py"


rule qsm_cohort_template:
    input:
        unpack(t1reg_qsm_files),
    output:
        template=L.cohort_qsm_template(),
        json=L.cohort_qsm_template(".json"),
    log:
        L.log("qsm_cohort_template"),
    benchmark:
        L.benchmark("qsm_cohort_template")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=20,
    params:
        multichannel=config["anat"]["multichannel"],
        template_resolution=RES,
    script:
        "../scripts/qsm_cohort_template.py"


rule register_multichannel:
    input:
        t1=rules.anat_t1.output.preproc,
        t1_mask=rules.anat_t1.output.mask,
        affine=rules.anat_t1.output.affine,
        chi=rules.qsm.output.chi,
        qsm_mask=rules.qsm.output.final_mask,
        gre_xfm=rules.register_gre.output.xfm,
        qsm_template=L.cohort_qsm_template(),
    output:
        affine=L.subject("mc_affine"),
        warp=L.subject("mc_warp"),
        inverse_warp=L.subject("mc_inverse_warp"),
        json=L.subject("mc_json"),
    log:
        L.log("register_multichannel", "{subject}"),
    benchmark:
        L.benchmark("register_multichannel", "{subject}")
    group:
        "subject_multichannel"
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=config["resources"]["anat_mem_mb"],
        runtime=30,
    params:
        anat=anat_params("register_multichannel"),
    script:
        "../scripts/register_multichannel.py"


rule refine_deep_grey:
    input:
        t1=rules.anat_t1.output.preproc,
        affine=normalization_xfm("affine"),
        warp=normalization_xfm("warp"),
    output:
        field=L.subject("deepgrey_warp"),
        json=L.subject("deepgrey_json"),
    log:
        L.log("refine_deep_grey", "{subject}"),
    benchmark:
        L.benchmark("refine_deep_grey", "{subject}")
    group:
        template_maps_group()
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=config["resources"]["anat_mem_mb"],
        runtime=20,
    params:
        anat=anat_params("refine_deep_grey"),
    script:
        "../scripts/refine_deep_grey.py"


rule template_maps:
    input:
        unpack(deep_grey_refinement),
        chi=rules.qsm.output.chi,
        qsm_mask=rules.qsm.output.final_mask,
        gre_xfm=rules.register_gre.output.xfm,
        affine=normalization_xfm("affine"),
        warp=normalization_xfm("warp"),
        gm=rules.anat_t1.output.gm,
        t1=rules.anat_t1.output.preproc,
        t1_mask=rules.anat_t1.output.mask,
    output:
        **{key: L.subject(key) for key in L.smoothed_keys()},
        chi=L.subject("template_chi"),
        qsm_mask=L.subject("template_qsm_mask"),
        gm_mod=L.subject("gm_mod"),
        qc=L.subject("normalization_qc"),
        # the smoothed copies, only for a modality smoothed at all (FWHM > 0)
        png=report(
            L.subject("normalization_qc_png"),
            caption="../report/normalization_qc.rst",
            category="Normalization",
            subcategory="{subject}",
        ),
    log:
        L.log("template_maps", "{subject}"),
    benchmark:
        L.benchmark("template_maps", "{subject}")
    group:
        template_maps_group()
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=config["resources"]["anat_mem_mb"],
        runtime=20,
    params:
        anat=config["anat"],
    script:
        "../scripts/template_maps.py"
