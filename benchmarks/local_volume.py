"""Does the T1w-to-template registration see local volume? Truth against Jacobian, per subject.

The regional GM of anat_validation.py tracks the truth (r 0.99 in the thalami) because a region's
volume follows the head's size, which any affine gets right. The planted atrophy is local: a
graded volume change around a peak. This benchmark asks whether the registration's Jacobian
follows local volume once head size is taken out.

For each subject of a simulated run and each planted effect's peak (the effects table of the
truth), it measures the volume in the subject of an MNI sphere of radius ``--radius-mm`` (6)
around the peak, relative to a sphere of ``--context-mm`` (30) about the same point:

* true: subject T1w voxels whose true subject-to-MNI image (pose, deformation, planted atrophy;
  ``qsmvbm.simulate.subject.load_true_transform``) falls in each sphere, times the voxel volume;
* measured: the sum of the Jacobian determinant of the template-to-subject map over the
  template voxels in each sphere, times the template voxel volume (``qsmvbm.anat.normalize.jacobian``,
  affine and nonlinear), from the run's own warps (``--registration existing``) or from a
  re-registration of the run's bias-corrected, brain-masked T1w with other settings (see
  ``CANDIDATES``).

Reported per effect: the Pearson r and slope of log(measured local / context) on log(true local /
context) across subjects (1 and 1 if the registration sees local volume), their SDs, and the
patients-minus-controls difference of the log ratio, true and measured (the planted atrophy as
the truth realised it and as the pipeline would see it, in %).

Usage: python benchmarks/local_volume.py RESULTS [--registration existing] [--subjects 8]
       [--out benchmarks/results/local_volume_<name>.json] [--table-only]
       [--same-subjects-as OTHER.tsv]
The first ``--subjects`` patients with the largest multiplier of the first effect and as many
controls (in turn: patient, control, ...); 0 = all. Truth volumes are cached under benchmarks/out/local_volume/; the per-subject
table (``--out`` with .tsv) is written after each subject, and a rerun goes on from it;
``--table-only`` summarises the table as it is (a run stopped early), ``--same-subjects-as`` only
the subjects of another registration's table (a paired comparison).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmvbm.anat import normalize
from qsmvbm.anat.antsio import to_ants
from qsmvbm.anat.refine import box_mask
from qsmvbm.anat.t1 import register
from qsmvbm.io import read_tsv
from qsmvbm.layout import Layout, truth_table
from qsmvbm.qsm.grid import bbox_slices, crop_affine
from qsmvbm.simulate.subject import bids_paths, load_true_transform
from qsmvbm.stats.power_cli import run_config
from qsmvbm.templates import load_template
from qsmvbm.transforms import world_coords

HERE = Path(__file__).resolve().parent
CACHE = HERE / "out" / "local_volume"

#: re-registration settings (ants.registration keywords) compared with the run's own warps
CANDIDATES = {
    "SyN": {"type_of_transform": "SyN"},  # ANTsPy's default: 40x20x0, Mattes MI
    "SyN_full": {"type_of_transform": "SyN", "reg_iterations": (100, 70, 50, 20)},
    "SyN_CC_full": {
        "type_of_transform": "SyN",
        "reg_iterations": (100, 70, 50, 20),
        "syn_metric": "CC",
        "syn_sampling": 2,
    },
    "antsRegistrationSyN[s]": {"type_of_transform": "antsRegistrationSyN[s]"},
}

#: Refinements of the run's own warps: a second, CC-driven SyN at the template's own resolution of
#: the subject's template-space T1w to the template T1, only in a box about the deep grey nuclei
#: (MNI mm, ``box``); its Jacobian multiplies the run's.
REFINEMENTS = {
    "refine_deepgrey_CC": {
        "box": ((-36.0, 36.0), (-44.0, 24.0), (-20.0, 30.0)),
        "type_of_transform": "SyNOnly",
        "syn_metric": "CC",
        "syn_sampling": 2,
        "reg_iterations": (50, 30, 20),
    },
}


def sphere_volumes(
    points_mm: np.ndarray, voxel_ml: float, centre, radii, weights=None
) -> list[float]:
    """Volume (mm^3) of the points (3, ...) within each radius (mm) of ``centre``, each point
    standing for ``voxel_ml`` mm^3 times its weight (``weights``, shape of a point map; default 1)."""
    d2 = sum((points_mm[i] - np.float32(centre[i])) ** 2 for i in range(3))
    if weights is None:
        return [float((d2 <= r * r).sum() * voxel_ml) for r in radii]
    return [float(weights[d2 <= r * r].sum() * voxel_ml) for r in radii]


def true_volumes(lay: Layout, pid: str, peaks: dict, radii) -> dict:
    """{effect: [volume within each radius]} in the subject, through the true transform."""
    cache = CACHE / lay.output_dir.name / f"{pid}_r{'-'.join(map(str, radii))}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    t1 = nib.load(bids_paths(lay.sim_bids, pid, 0)["T1w"])
    a = t1.affine
    x = world_coords(t1.shape[:3], a)
    y = load_true_transform(truth_table(lay.sim_bids, "effects").parent, pid).to_mni("T1w", x)
    vox = abs(np.linalg.det(a[:3, :3]))
    out = {k: sphere_volumes(y, vox, c, radii) for k, c in peaks.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def measured_jacobian(lay: Layout, pid: str, registration: str, seed: int = 42):
    """(Jacobian on the template grid, its affine, seconds) of the run's warps or a re-registration
    (seeded by :func:`qsmvbm.anat.t1.register`)."""
    import ants

    grid = nib.load(lay.subject("template_t1", pid))
    ref = ants.image_read(str(lay.subject("template_t1", pid)))
    t0 = time.perf_counter()
    if registration == "existing" or registration in REFINEMENTS:
        jac = normalize.jacobian(
            ref, [str(lay.subject("warp", pid)), str(lay.subject("affine", pid))]
        )
        if registration in REFINEMENTS:
            jac = jac * refinement_jacobian(lay, pid, grid, REFINEMENTS[registration], seed)
    else:
        tpl = load_template(int(round(abs(grid.affine[0, 0]))))
        t1 = ants.image_read(str(lay.subject("t1_preproc", pid)))
        mask = ants.image_read(str(lay.subject("t1_mask", pid)))
        kw = dict(CANDIDATES[registration])
        with tempfile.TemporaryDirectory() as tmp:
            reg = register(
                to_ants(tpl.t1, tpl.affine),
                t1 * mask,
                kw.pop("type_of_transform"),
                tmp + "/reg_",
                seed,
                **kw,
            )
            jac = normalize.jacobian(ref, reg["fwdtransforms"])
    return jac, grid.affine, time.perf_counter() - t0


def refinement_jacobian(lay: Layout, pid: str, grid, settings: dict, seed: int) -> np.ndarray:
    """Jacobian (template grid; 1 outside the box) of a SyN of the subject's template-space T1w
    (the run's warps applied) to the template T1 in the box ``settings["box"]`` (MNI mm)."""
    import ants

    tpl = load_template(int(round(abs(grid.affine[0, 0]))))
    moving_full = grid.get_fdata(dtype=np.float32)
    inside = box_mask(grid.shape[:3], grid.affine, settings["box"])
    sl = bbox_slices(inside)
    aff = crop_affine(grid.affine, sl)
    fixed = to_ants(np.ascontiguousarray(tpl.t1[sl], np.float32), aff)
    moving = to_ants(np.ascontiguousarray(moving_full[sl]), aff)
    kw = {k: v for k, v in settings.items() if k != "box"}
    with tempfile.TemporaryDirectory() as tmp:
        reg = register(fixed, moving, kw.pop("type_of_transform"), tmp + "/ref_", seed, **kw)
        warp = next(t for t in reg["fwdtransforms"] if t.endswith(".nii.gz"))
        local = ants.create_jacobian_determinant_image(fixed, warp, do_log=False).numpy()
    out = np.ones(grid.shape[:3], np.float32)
    out[sl] = np.clip(local, 0, None)
    return out


def measured_volumes(jac: np.ndarray, affine: np.ndarray, peaks: dict, radii) -> dict:
    """{effect: [volume within each radius]} in the subject by the Jacobian on the template grid."""
    xyz = world_coords(jac.shape, affine)
    vox = abs(np.linalg.det(affine[:3, :3]))
    return {k: sphere_volumes(xyz, vox, c, radii, jac) for k, c in peaks.items()}


def summarise(df: pd.DataFrame, effects: list[str]) -> dict:
    """Per effect: r, slope and SDs of the measured vs true log(local / context), and the
    patients-minus-controls difference of each (%)."""
    out = {}
    patients = df["patient"].to_numpy(bool)
    for e in effects:
        t = np.log(df[f"{e}_true_local"] / df[f"{e}_true_context"]).to_numpy()
        m = np.log(df[f"{e}_meas_local"] / df[f"{e}_meas_context"]).to_numpy()
        out[e] = {
            "r": round(float(np.corrcoef(t, m)[0, 1]), 3),
            "slope": round(float(np.polyfit(t, m, 1)[0]), 3),
            "sd_true": round(float(t.std(ddof=1)), 4),
            "sd_measured": round(float(m.std(ddof=1)), 4),
            "patients_minus_controls_true_pct": round(
                100 * float(t[patients].mean() - t[~patients].mean()), 2
            ),
            "patients_minus_controls_measured_pct": round(
                100 * float(m[patients].mean() - m[~patients].mean()), 2
            ),
            "median_measured_over_true_local": round(
                float(np.median(df[f"{e}_meas_local"] / df[f"{e}_true_local"])), 3
            ),
        }
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, help="output_dir of a simulated run")
    ap.add_argument(
        "--registration", default="existing", choices=["existing", *CANDIDATES, *REFINEMENTS]
    )
    ap.add_argument(
        "--subjects", type=int, default=8, help="patients and as many controls; 0 = all"
    )
    ap.add_argument("--radius-mm", type=float, default=6.0)
    ap.add_argument("--context-mm", type=float, default=30.0)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="summarise the subjects already in the table (a run stopped early); register none",
    )
    ap.add_argument(
        "--same-subjects-as",
        type=Path,
        help="another registration's table: summarise only its subjects (a paired comparison)",
    )
    args = ap.parse_args(argv)
    # the run's own config: its template grid (res-1 or res-2) names the template-space files
    lay = Layout.from_config(run_config(args.results), args.results)
    effects = read_tsv(truth_table(lay.sim_bids, "effects"))
    subjects = read_tsv(truth_table(lay.sim_bids, "subjects"))
    peaks = {}
    for _, e in effects.iterrows():
        region = json.loads(e["region"]) if isinstance(e["region"], str) else e["region"]
        peaks[e["name"]] = region["sphere_mni"]
    first = f"m_{effects['name'].iloc[0]}"
    patient_group = effects["group"].iloc[0]
    patients = subjects[subjects["group"] == patient_group].sort_values(first, ascending=False)
    controls = subjects[subjects["group"] != patient_group]
    if args.subjects:
        patients, controls = patients.head(args.subjects), controls.head(args.subjects)
    radii = (args.radius_mm, args.context_mm)
    out = args.out or HERE / "results" / f"local_volume_{args.registration}.json"
    # resumable: subjects already in the table (written after each subject) are not redone
    table = out.with_suffix(".tsv")
    rows = pd.read_csv(table, sep="\t").to_dict("records") if table.exists() else []
    done = {r["participant_id"] for r in rows}
    # patients and controls alternate, so that a partial table (a run stopped early) is balanced
    order = pd.concat([patients, controls])
    rank = np.r_[np.arange(len(patients)), np.arange(len(controls))]
    order = order.iloc[np.argsort(rank, kind="stable")]
    for _, s in [] if args.table_only else order.iterrows():
        pid = s["participant_id"]
        if pid in done:
            continue
        tv = true_volumes(lay, pid, peaks, radii)
        jac, aff, secs = measured_jacobian(lay, pid, args.registration)
        mv = measured_volumes(jac, aff, peaks, radii)
        row = {"participant_id": pid, "patient": s["group"] == patient_group, "seconds": secs}
        for e in peaks:
            row[f"{e}_true_local"], row[f"{e}_true_context"] = tv[e]
            row[f"{e}_meas_local"], row[f"{e}_meas_context"] = mv[e]
        rows.append(row)
        pd.DataFrame(rows).to_csv(table, sep="\t", index=False)
        print(pid, args.registration, f"{secs:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    if args.same_subjects_as:
        other = pd.read_csv(args.same_subjects_as, sep="\t")
        df = df[df["participant_id"].isin(set(other["participant_id"]))]
    result = {
        "results": str(args.results),
        "registration": args.registration,
        "settings": CANDIDATES.get(
            args.registration, REFINEMENTS.get(args.registration, "the run's own warps")
        ),
        "radius_mm": args.radius_mm,
        "context_mm": args.context_mm,
        "n_patients": int(df["patient"].sum()),
        "n_controls": int((~df["patient"]).sum()),
        "median_seconds": round(float(df["seconds"].median()), 1),
        "effects": summarise(df, list(peaks)),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["effects"], indent=1))


if __name__ == "__main__":
    main()
