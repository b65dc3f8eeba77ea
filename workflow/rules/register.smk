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
    threads: itk_threads()
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        seed=config["anat"]["random_seed"],
        itk_threads=itk_threads(),
    script:
        "../scripts/register_gre.py"


rule template_maps:
    input:
        chi=rules.qsm.output.chi,
        qsm_mask=rules.qsm.output.final_mask,
        gre_xfm=rules.register_gre.output.xfm,
        affine=rules.anat_t1.output.affine,
        warp=rules.anat_t1.output.warp,
        gm=rules.anat_t1.output.gm,
        template_t1=rules.anat_t1.output.template_t1,
        template_mask=rules.anat_t1.output.template_mask,
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
        "subject"
    conda:
        ENV
    threads: itk_threads()
    resources:
        mem_mb=config["resources"]["anat_mem_mb"],
        runtime=20,
    params:
        anat=config["anat"],
        itk_threads=itk_threads(),
    script:
        "../scripts/template_maps.py"
