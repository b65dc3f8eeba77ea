# Per-subject T1w processing: N4, brain extraction, SyN to the template, Atropos, TIV. Only subjects
# that passed the input check (inputs.smk) are asked for; the check is not an input here, so a changed
# GRE file (which reruns the check) does not rerun the anatomy.


rule anat_t1:
    input:
        t1w=raw_t1w,
    output:
        preproc=ANAT / "{subject}_space-T1w_desc-preproc_T1w.nii.gz",
        mask=ANAT / "{subject}_space-T1w_desc-brain_mask.nii.gz",
        gm=ANAT / "{subject}_space-T1w_label-GM_probseg.nii.gz",
        wm=ANAT / "{subject}_space-T1w_label-WM_probseg.nii.gz",
        csf=ANAT / "{subject}_space-T1w_label-CSF_probseg.nii.gz",
        dseg=ANAT / "{subject}_space-T1w_dseg.nii.gz",
        affine=ANAT / f"{{subject}}_from-T1w_to-{TPL}_mode-image_desc-affine_xfm.mat",
        warp=ANAT / f"{{subject}}_from-T1w_to-{TPL}_mode-image_desc-warp_xfm.nii.gz",
        inverse_warp=ANAT
        / f"{{subject}}_from-{TPL}_to-T1w_mode-image_desc-warp_xfm.nii.gz",
        template_t1=ANAT / f"{{subject}}_space-{TPL}_res-{RES}_desc-preproc_T1w.nii.gz",
        template_mask=ANAT / f"{{subject}}_space-{TPL}_res-{RES}_desc-brain_mask.nii.gz",
        volumes=ANAT / "{subject}_desc-volumes.json",
    log:
        LOGS / "anat_t1" / "{subject}.log",
    benchmark:
        BENCH / "anat_t1" / "{subject}.tsv"
    group:
        "subject"
    conda:
        ENV
    threads: ants_threads()
    resources:
        mem_mb=config["resources"]["anat_mem_mb"],
        runtime=60,
    params:
        anat=config["anat"],
    script:
        "../scripts/anat_t1.py"
