# Per-subject QSM reconstruction (native GRE space).


rule qsm:
    input:
        unpack(qsm_mask_inputs),
        megre=raw_megre,
        checked=rules.inputs_summary.output[0],
    output:
        chi=DERIV / "{subject}" / "anat" / "{subject}_space-MEGRE_Chimap.nii.gz",
        chi_json=DERIV / "{subject}" / "anat" / "{subject}_space-MEGRE_Chimap.json",
        mask=DERIV
        / "{subject}"
        / "anat"
        / "{subject}_space-MEGRE_desc-brain_mask.nii.gz",
        final_mask=DERIV
        / "{subject}"
        / "anat"
        / "{subject}_space-MEGRE_desc-qsm_mask.nii.gz",
        total_field=DERIV
        / "{subject}"
        / "anat"
        / "{subject}_space-MEGRE_desc-total_fieldmap.nii.gz",
        local_field=DERIV
        / "{subject}"
        / "anat"
        / "{subject}_space-MEGRE_desc-local_fieldmap.nii.gz",
        noise=DERIV
        / "{subject}"
        / "anat"
        / "{subject}_space-MEGRE_desc-noise_fieldmap.nii.gz",
        r2star=DERIV / "{subject}" / "anat" / "{subject}_space-MEGRE_R2starmap.nii.gz",
        magnitude=DERIV
        / "{subject}"
        / "anat"
        / "{subject}_space-MEGRE_desc-echo1_magnitude.nii.gz",
        qc=report(
            DERIV / "{subject}" / "figures" / "{subject}_space-MEGRE_desc-qsm_qc.png",
            caption="../report/qsm_qc.rst",
            category="QSM",
            subcategory="{subject}",
        ),
    log:
        LOGS / "qsm" / "{subject}.log",
    benchmark:
        BENCH / "qsm" / "{subject}.tsv"
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
