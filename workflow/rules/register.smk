# GRE -> T1w rigid registration, and the template-space maps (QSM, modulated GM) with QC.


rule register_gre:
    input:
        megre=raw_megre,
        t1=rules.anat_t1.output.preproc,
        t1_mask=rules.anat_t1.output.mask,
    output:
        xfm=ANAT / "{subject}_from-MEGRE_to-T1w_mode-image_xfm.mat",
        json=ANAT / "{subject}_from-MEGRE_to-T1w_mode-image_xfm.json",
    log:
        LOGS / "register_gre" / "{subject}.log",
    benchmark:
        BENCH / "register_gre" / "{subject}.tsv"
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
        chi=ANAT / f"{{subject}}_space-{TPL}_res-{RES}_desc-t1reg_Chimap.nii.gz",
        qsm_mask=ANAT / f"{{subject}}_space-{TPL}_res-{RES}_desc-t1regqsm_mask.nii.gz",
    log:
        LOGS / "qsm_t1reg_template_space" / "{subject}.log",
    benchmark:
        BENCH / "qsm_t1reg_template_space" / "{subject}.tsv"
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
        template=COHORT_QSM_TEMPLATE,
        json=str(COHORT_QSM_TEMPLATE).replace(".nii.gz", ".json"),
    log:
        LOGS / "qsm_cohort_template.log",
    benchmark:
        BENCH / "qsm_cohort_template.tsv"
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
        qsm_template=COHORT_QSM_TEMPLATE,
    output:
        affine=ANAT
        / f"{{subject}}_from-T1w_to-{TPL}_mode-image_desc-multichannelaffine_xfm.mat",
        warp=ANAT
        / f"{{subject}}_from-T1w_to-{TPL}_mode-image_desc-multichannelwarp_xfm.nii.gz",
        inverse_warp=ANAT
        / f"{{subject}}_from-{TPL}_to-T1w_mode-image_desc-multichannelwarp_xfm.nii.gz",
        json=ANAT / f"{{subject}}_from-T1w_to-{TPL}_desc-multichannel_xfm.json",
    log:
        LOGS / "register_multichannel" / "{subject}.log",
    benchmark:
        BENCH / "register_multichannel" / "{subject}.tsv"
    group:
        "subject_multichannel"
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=config["resources"]["anat_mem_mb"],
        runtime=30,
    params:
        anat=config["anat"],
    script:
        "../scripts/register_multichannel.py"


rule template_maps:
    input:
        chi=rules.qsm.output.chi,
        qsm_mask=rules.qsm.output.final_mask,
        gre_xfm=rules.register_gre.output.xfm,
        affine=normalization_xfm("affine"),
        warp=normalization_xfm("warp"),
        gm=rules.anat_t1.output.gm,
        t1=rules.anat_t1.output.preproc,
        t1_mask=rules.anat_t1.output.mask,
    output:
        chi=ANAT / f"{{subject}}_space-{TPL}_res-{RES}_Chimap.nii.gz",
        chi_smooth=ANAT
        / f"{{subject}}_space-{TPL}_res-{RES}_desc-smoothed_Chimap.nii.gz",
        qsm_mask=ANAT / f"{{subject}}_space-{TPL}_res-{RES}_desc-qsm_mask.nii.gz",
        gm_mod=ANAT
        / f"{{subject}}_space-{TPL}_res-{RES}_label-GM_desc-modulated_probseg.nii.gz",
        gm_mod_smooth=ANAT
        / f"{{subject}}_space-{TPL}_res-{RES}_label-GM_desc-modulatedsmoothed_probseg.nii.gz",
        qc=ANAT / f"{{subject}}_space-{TPL}_desc-normalization_qc.json",
        png=report(
            FIGS / f"{{subject}}_space-{TPL}_desc-normalization_qc.png",
            caption="../report/normalization_qc.rst",
            category="Normalization",
            subcategory="{subject}",
        ),
    log:
        LOGS / "template_maps" / "{subject}.log",
    benchmark:
        BENCH / "template_maps" / "{subject}.tsv"
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
