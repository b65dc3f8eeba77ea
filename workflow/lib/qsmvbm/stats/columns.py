"""Column dictionaries of the group tables: the BIDS JSON sidecar of each TSV.

Every group TSV gets a sidecar ``<name>.json`` mapping each column to ``{"Description", "Units"}``
(BIDS' tabular-file sidecar), so that a table read years later, or by someone else, says what
it holds. Columns that depend on the study (group labels, clinical scores) are described from
patterns.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..io import save_json, save_tsv

P_FWE = "family-wise error corrected p of the cluster's peak within its search"

COLUMNS: dict[str, dict[str, dict]] = {
    "clusters": {
        "modality": {
            "Description": "map analysed: qsm (susceptibility) or gm (modulated grey matter)"
        },
        "roi": {"Description": "AAL3 region (group.rois) whose small volume was searched"},
        "cluster_id": {"Description": "cluster label in <modality>_clusters.nii.gz"},
        "peak_x": {"Description": "peak coordinate x (template space)", "Units": "mm"},
        "peak_y": {"Description": "peak coordinate y (template space)", "Units": "mm"},
        "peak_z": {"Description": "peak coordinate z (template space)", "Units": "mm"},
        "peak_t": {"Description": "t at the peak, positive in the tested direction"},
        "p_unc": {"Description": "uncorrected one-sided p at the peak"},
        "p_fwe_rft": {"Description": P_FWE + ", random field theory (SPM's SVC)"},
        "p_fwe_perm": {"Description": P_FWE + ", Freedman-Lane permutation max-T over the ROI"},
        "peak_tfce": {
            "Description": "largest threshold-free cluster enhancement score in the cluster (E, H and "
            "dh of group.tfce; extent in voxels); empty when TFCE is off"
        },
        "p_fwe_tfce": {
            "Description": P_FWE + ", TFCE with Freedman-Lane permutations over the ROI (the "
            "smallest voxel FWE p in the cluster); empty when TFCE is off"
        },
        "n_voxels": {
            "Description": "cluster size at the cluster-forming threshold",
            "Units": "voxels",
        },
        "volume_mm3": {"Description": "cluster volume", "Units": "mm^3"},
        "peak_label": {"Description": "AAL3 label at the peak"},
        "significant": {
            "Description": "True when the FWE p of group.significance < group.fwe_alpha "
            "and the cluster is at least group.min_cluster_mm3"
        },
        "search_voxels": {"Description": "voxels of the search volume (RFT)", "Units": "voxels"},
        "search_resels": {"Description": "resel count of the search volume (RFT)"},
    },
    "roi_stats": {
        "region": {
            "Description": "region: a significant cluster (<modality><id>_<ROI>) or a pooled "
            "region (group.combine)"
        },
        "measure": {
            "Description": "qsm (mean susceptibility) or gm (mean modulated GM) in the region"
        },
        "value": {"Description": "column of the ROI values table tested"},
        "test": {"Description": "the test: two-sample t-test (QSM) or ANCOVA with covariates (GM)"},
        "covariates": {"Description": "covariates of the ANCOVA"},
        "t": {"Description": "t of the group difference (patients minus controls)"},
        "F": {"Description": "F of the group effect (ANCOVA)"},
        "df": {"Description": "residual degrees of freedom"},
        "p": {"Description": "two-sided p of the group difference, uncorrected"},
        "adjusted_difference": {
            "Description": "patients minus controls, adjusted for the covariates",
            "Units": "ppm for qsm, mL/mL for gm",
        },
    },
    "correlations": {
        "x": {
            "Description": "first variable (a column of the ROI values table or of participants.tsv)"
        },
        "y": {"Description": "second variable"},
        "group": {"Description": "participants correlated (a group label, or all)"},
        "n": {"Description": "participants with both values"},
        "r": {"Description": "correlation coefficient (partial when covariates are given)"},
        "p": {"Description": "p of r, uncorrected, for the stated alternative"},
        "alternative": {"Description": "two-sided, greater or less"},
        "covariates": {"Description": "variables partialled out"},
        "method": {"Description": "pearson, partial or point-biserial (male = 1)"},
        "ci95_low": {"Description": "lower bound of the 95% confidence interval of r (Fisher z)"},
        "ci95_high": {"Description": "upper bound of the 95% confidence interval of r (Fisher z)"},
    },
    "demographics": {
        "characteristic": {"Description": "row of Table 1"},
        "test": {"Description": "test comparing the groups"},
        "statistic": {"Description": "the test statistic (t or chi-squared)"},
        "p": {"Description": "p of the test, uncorrected"},
    },
    "design": {
        "participant_id": {"Description": "participant identifier"},
        "group": {"Description": "study group (participants.group_column)"},
        "included": {"Description": "True when the subject enters the group analyses"},
        "reason": {
            "Description": "why the subject is included or excluded (input check, QC, config)"
        },
        "tiv_ml": {"Description": "total intracranial volume (T1w segmentation)", "Units": "mL"},
        "sex_male": {"Description": "sex as the model reads it: 1 male, 0 female"},
    },
    "qc_table": {
        "participant_id": {"Description": "participant identifier"},
        "group": {"Description": "study group"},
        "dice_brain": {"Description": "Dice of the warped brain mask with the template's"},
        "t1_corr": {"Description": "correlation of the warped T1w with the template T1"},
        "gm_corr": {
            "Description": "correlation of the warped GM probability with the template's GM fraction"
        },
        "qsm_dgm_corr": {
            "Description": "correlation of the template-space QSM with the cohort median "
            "in the deep grey nuclei"
        },
        "qsm_dgm_robust_z": {
            "Description": "robust z of qsm_dgm_corr (MADs below the cohort median)"
        },
        "qsm_mask_in_template": {
            "Description": "share of the template brain covered by the QSM mask"
        },
        "qsm_roi_coverage": {
            "Description": "smallest share of a group ROI (group.rois) covered by the template-space QSM mask"
        },
        "qsm_mask_dice_t1": {
            "Description": "Dice of the QSM brain mask with the T1w brain mask in GRE space"
        },
        "qsm_mask_outside_t1": {"Description": "share of the QSM mask outside the T1w brain"},
        "qsm_mask_tiv_ratio": {"Description": "QSM mask volume over TIV"},
        "tiv_ml": {"Description": "total intracranial volume", "Units": "mL"},
        "gm_tiv": {"Description": "grey-matter volume over TIV"},
        "lr_nmi_as_stored": {
            "Description": "normalized mutual information of the T1w fitted rigidly to the GRE magnitude"
        },
        "lr_nmi_mirrored": {"Description": "the same for the T1w's left-right mirror image"},
        "lr_verdict": {
            "Description": "left-right check of the T1w against the GRE",
            "Levels": {
                "consistent": "the T1w as stored fits better",
                "mirrored": "the mirror image fits better: one header is flipped (excluded)",
                "undecided": "the two fits are alike (a near-symmetric head); passed",
            },
        },
        "passed_qc": {"Description": "True when every QC metric is within its threshold"},
        "included": {"Description": "True when the subject enters the group analyses"},
        "reason": {"Description": "the verdict's reason"},
    },
}

# study-dependent columns, described by pattern: (regex, description template, units)
PATTERNS = {
    "roi_stats": [
        (r"n_(.+)", "number of {0} participants", None),
        (r"mean_(.+)", "mean of the measure in {0}", "ppm for qsm, mL/mL for gm"),
        (r"sd_(.+)", "standard deviation of the measure in {0}", "ppm for qsm, mL/mL for gm"),
        (r"lilliefors_p_(.+)", "Lilliefors normality test p in {0}", None),
    ],
    "demographics": [(r"(.+)", "value in {0}: mean ± SD [range], or count (%)", None)],
    "design": [(r"(.+)", "participants.tsv column {0}", None)],
    "qc_table": [(r"(.+)", "QC column {0}", None)],
}


def column_sidecar(df: pd.DataFrame, table: str, participants_json: dict | None = None) -> dict:
    """The BIDS sidecar of a group table: every column of ``df`` with its description (and units).

    ``participants_json`` (the dataset's participants.json, if any) describes participants.tsv
    columns carried into the design.
    """
    fixed = COLUMNS[table]
    out = {}
    for col in df.columns:
        if col in fixed:
            out[col] = dict(fixed[col])
            continue
        if participants_json and col in participants_json:
            out[col] = dict(participants_json[col])
            continue
        for pattern, text, units in PATTERNS.get(table, []):
            m = re.fullmatch(pattern, str(col))
            if m:
                out[col] = {"Description": text.format(*m.groups())}
                if units:
                    out[col]["Units"] = units
                break
        else:
            out[col] = {"Description": str(col)}
    return out


def save_table(df: pd.DataFrame, path, table: str, participants_json: dict | None = None):
    """Write a group table as TSV and its column sidecar beside it (same name, ``.json``)."""
    path = Path(path)
    save_tsv(df, path)
    save_json(column_sidecar(df, table, participants_json), path.with_suffix(".json"))
    return path
