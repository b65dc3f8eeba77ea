"""Writing a simulated cohort: BIDS top-level files, effect tables and masks, subjects."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..io import atomic_path, read_tsv, save_json, save_nifti, save_tsv
from ..layout import effect_mask_name, truth_dir, truth_table
from ..templates import TEMPLATE_SPACE
from ..transforms import world_coords
from .cohort import draw_participants, effect_multipliers
from .phantom import build_head_model
from .settings import load_tissue_table
from .subject import _unit_atrophy_field, effect_weight, simulate_subject

PARTICIPANT_COLUMNS = {
    "participant_id": {"Description": "participant identifier"},
    "group": {"Description": "study group"},
    "age": {"Description": "age at scan", "Units": "years"},
    "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
    "alsfrs_r": {"Description": "Revised ALS Functional Rating Scale (0-48, higher is better)"},
    "disease_duration_months": {
        "Description": "months from symptom onset to MRI",
        "Units": "months",
    },
    "umn_score": {"Description": "Penn upper motor neuron score (0-16)"},
}

#: columns of the simulation truth's effects table (one row per planted effect)
EFFECT_COLUMNS = [
    "name",
    "group",
    "region",
    "chi_delta_ppm",
    "gm_change",
    "effect_cv",
    "clinical_score",
    "target_r",
    "realized_r_multiplier",
    "centroid_x",
    "centroid_y",
    "centroid_z",
    "weighted_centre_x",
    "weighted_centre_y",
    "weighted_centre_z",
    "profile",
    "volume_mm3",
    "mask",
]


def effect_mask_path(outdir: Path, name: str, resolution: int) -> Path:
    """Template-space mask of a planted effect under the simulated dataset ``outdir``."""
    return truth_dir(outdir) / "effects" / effect_mask_name(name, resolution, TEMPLATE_SPACE)


def write_cohort_tables(cfg: dict, outdir: Path, config_text: str | None = None) -> pd.DataFrame:
    """Write the dataset-level files; return participants merged with effect multipliers.

    Files: ``dataset_description.json``, ``README``, ``participants.tsv/json``;
    under ``derivatives/simulation``: ``dataset_description.json``,
    ``simulation_config.json``, ``subjects.tsv`` (effect multipliers),
    ``effects.tsv`` and one MNI mask per planted effect.
    """
    outdir = Path(outdir)
    parts = draw_participants(cfg)
    mult = effect_multipliers(cfg, parts)
    save_json(
        {
            "Name": "qsmvbm simulated cohort",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "GeneratedBy": [{"Name": "qsmvbm-simulate", "Version": __version__}],
        },
        outdir / "dataset_description.json",
    )
    with atomic_path(outdir / "README") as tmp:
        tmp.write_text(
            "Simulated multi-echo GRE + T1w cohort made by qsmvbm-simulate from the MNI152 2009 template.\n"
            "Ground truth is under derivatives/simulation. Not real patient data.\n"
        )
    save_tsv(parts, outdir / "participants.tsv")
    save_json(
        {c: PARTICIPANT_COLUMNS.get(c, {"Description": c}) for c in parts.columns},
        outdir / "participants.json",
    )
    tdir = truth_dir(outdir)
    save_json(
        {
            "Name": "qsmvbm simulation ground truth",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "qsmvbm-simulate", "Version": __version__}],
        },
        tdir / "dataset_description.json",
    )
    save_json(cfg, truth_table(outdir, "config"))
    save_tsv(
        parts[["participant_id", "group"]].merge(mult, on="participant_id"),
        truth_table(outdir, "subjects"),
    )
    res = cfg["anatomy"]["template_resolution"]
    hm = build_head_model(res) if cfg["effects"] else None
    rows = []
    for e in cfg["effects"]:
        w = effect_weight(res, e["region"])[hm.template_slices]
        aff = hm.affine.copy()
        aff[:3, 3] += aff[:3, :3] @ np.array([s.start for s in hm.template_slices])
        support = w > 0
        save_nifti(
            support.astype(np.uint8), aff, effect_mask_path(outdir, e["name"], res), dtype=np.uint8
        )
        coords = world_coords(w.shape, aff)
        centroid = [float(coords[i][support].mean()) for i in range(3)]
        # the effect-weighted centre: where a graded effect is strongest on average
        centre = [float((coords[i] * w).sum() / w.sum()) for i in range(3)]
        sel = parts["group"] == e["group"]
        clin = e.get("clinical") or {}
        realized = np.nan
        if clin:
            realized = float(
                np.corrcoef(mult.loc[sel, f"m_{e['name']}"], parts.loc[sel, clin["score"]])[0, 1]
            )
        rows.append(
            {
                "name": e["name"],
                "group": e["group"],
                "region": json.dumps(e["region"]),
                "chi_delta_ppm": e["chi_delta_ppm"],
                "gm_change": e["gm_change"],
                "effect_cv": e["effect_cv"],
                "clinical_score": clin.get("score", np.nan),
                "target_r": clin.get("r", np.nan),
                "realized_r_multiplier": realized,
                "centroid_x": centroid[0],
                "centroid_y": centroid[1],
                "centroid_z": centroid[2],
                "weighted_centre_x": centre[0],
                "weighted_centre_y": centre[1],
                "weighted_centre_z": centre[2],
                "profile": e["region"].get("profile", "uniform"),
                "volume_mm3": float(support.sum() * res**3),
                "mask": str(effect_mask_path(outdir, e["name"], res).relative_to(tdir)),
            }
        )
    save_tsv(
        pd.DataFrame(
            rows,
            columns=EFFECT_COLUMNS,
        ),
        truth_table(outdir, "effects"),
    )
    return parts.merge(mult, on="participant_id")


def read_cohort(outdir: Path) -> pd.DataFrame:
    """participants.tsv merged with the simulation's effect multipliers."""
    parts = read_tsv(Path(outdir) / "participants.tsv", keep_default_na=True)
    mult = pd.read_csv(truth_table(outdir, "subjects"), sep="\t").drop(columns="group")
    return parts.merge(mult, on="participant_id")


def simulate_one(
    cfg: dict, outdir: Path, participant_id: str, cohort: pd.DataFrame | None = None
) -> dict:
    """Simulate the subject ``participant_id`` of a cohort whose tables are written."""
    cohort = read_cohort(outdir) if cohort is None else cohort
    rows = cohort[cohort["participant_id"] == participant_id]
    if rows.empty:
        raise ValueError(f"{participant_id} is not in {Path(outdir) / 'participants.tsv'}")
    row = rows.iloc[0].to_dict()
    mult = {e["name"]: float(row[f"m_{e['name']}"]) for e in cfg["effects"]}
    tissue = load_tissue_table(cfg["susceptibility"]["tissue_table"])
    return simulate_subject(cfg, row, mult, tissue, Path(outdir), truth_dir(outdir))


def _worker(args):
    cfg, outdir, pid, cohort = args
    os.environ.setdefault("QSMVBM_THREADS", "1")
    return simulate_one(cfg, outdir, pid, cohort)


def simulate_cohort(
    cfg: dict, outdir: Path, jobs: int = 1, subjects: list[str] | None = None
) -> pd.DataFrame:
    """Write the whole cohort (tables, then every subject, ``jobs`` at a time)."""
    outdir = Path(outdir)
    cohort = write_cohort_tables(cfg, outdir)
    pids = list(cohort["participant_id"]) if not subjects else subjects
    unknown = sorted(set(pids) - set(cohort["participant_id"]))
    if unknown:
        raise ValueError(f"unknown participants {unknown}")
    # build the (cached) head model once so forked workers share it
    build_head_model(cfg["anatomy"]["template_resolution"])
    for e in cfg["effects"]:
        effect_weight(cfg["anatomy"]["template_resolution"], e["region"])
        if e["gm_change"]:
            _unit_atrophy_field(
                cfg["anatomy"]["template_resolution"], json.dumps(e["region"], sort_keys=True)
            )
    args = [(cfg, outdir, p, cohort) for p in pids]
    if jobs <= 1:
        summaries = [simulate_one(cfg, outdir, p, cohort) for p in pids]
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as ex:
            summaries = list(ex.map(_worker, args))
    table = pd.DataFrame(
        [
            {
                k: v
                for k, v in s.items()
                if k in ("participant_id", "group", "TIV_ml", "GM_ml", "WM_ml", "CSF_ml")
            }
            for s in summaries
        ]
    )
    if not subjects:
        save_tsv(table, truth_table(outdir, "volumes"))
    return table
