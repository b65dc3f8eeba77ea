"""Group-stage performance.

1. ``perm``: permutation SVC (Freedman-Lane max-T) against nilearn's ``permuted_ols`` on the same data
   (68 subjects, the four default AAL3 ROIs at 2 mm, TIV as nuisance) and the same n_perm; wall time
   and the ratio.
2. ``scale``: the group GLM script (``qsmvbm.stats.pipeline.group_glm``, both passes, clusters, RFT and
   permutation) on a 2,000-subject cohort at 2 mm: wall time and peak memory (ru_maxrss) of a fresh
   process. The cohort is made of symbolic links to the demo's real template-space maps under 2,000
   names (the numbers repeat; the I/O and the arithmetic are those of 2,000 subjects).

    python benchmarks/group_speed.py perm --n-perm 5000
    python benchmarks/group_speed.py scale --subjects 2000 --demo results
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from qsmvbm.io import read_tsv
from qsmvbm.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def bench_perm(n_perm: int, threads: int) -> dict:
    from nilearn.mass_univariate import permuted_ols

    from qsmvbm.atlas import aal3_on_grid, region_mask
    from qsmvbm.stats.glm import design_matrix
    from qsmvbm.stats.permutation import permutation_maxt
    from qsmvbm.templates import load_template

    tpl = load_template(2)
    labels = aal3_on_grid(tpl.mask.shape, tpl.affine)
    names = ["Precentral_L", "Precentral_R", "Thalamus_L", "Thalamus_R"]
    union = region_mask(labels, names) & tpl.mask
    rng = np.random.default_rng(0)
    n = 68
    Y = rng.normal(size=(n, int(union.sum())))
    x = np.r_[np.ones(34), np.zeros(34)]
    tiv = rng.normal(1450, 130, n)
    X = design_matrix(x, tiv[:, None])
    t0 = time.perf_counter()
    permutation_maxt(Y, X[:, 0], X[:, 1:], [np.ones(Y.shape[1], bool)], n_perm=n_perm, seed=0)
    ours = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        permuted_ols(
            x[:, None],
            Y,
            confounding_vars=(tiv - tiv.mean())[:, None],
            model_intercept=True,
            n_perm=n_perm,
            two_sided_test=False,
            random_state=0,
            n_jobs=threads,
            verbose=0,
            output_type="dict",
        )
        theirs = time.perf_counter() - t0
    return {
        "subjects": n,
        "voxels": int(Y.shape[1]),
        "n_perm": n_perm,
        "threads": threads,
        "qsmvbm_s": round(ours, 2),
        "nilearn_permuted_ols_s": round(theirs, 2),
        "speedup": round(theirs / ours, 1),
    }


def make_cohort(demo: Path, n: int, where: Path) -> dict:
    """Symlinks of the demo's template-space maps under ``n`` subject names (a run layout rooted
    at ``where``) and a design table."""
    import pandas as pd

    from qsmvbm.config import workflow_defaults

    defaults = workflow_defaults()
    demo_layout, lay = Layout.from_config(defaults, demo), Layout.from_config(defaults, where)
    design = read_tsv(demo_layout.group("design"))
    src = list(design.participant_id)
    keys = {
        "qsm": lay.group_map_key("qsm"),
        "qsm_mask": "template_qsm_mask",
        "gm": lay.group_map_key("gm"),
    }
    files = {k: [] for k in keys}
    rows = []
    rng = np.random.default_rng(1)
    for i in range(n):
        s = src[i % len(src)]
        pid = f"sub-S{i:05d}"
        for k, key in keys.items():
            link = lay.subject(key, pid)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(demo_layout.subject(key, s).resolve())
            files[k].append(str(link))
        rows.append(
            {
                "participant_id": pid,
                "group": "ALS" if i % 2 == 0 else "NC",
                "included": True,
                "tiv_ml": rng.normal(1450, 130),
                "age": rng.normal(51, 9),
            }
        )
    lay.group_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(lay.group("design"), sep="\t", index=False)
    return files


def bench_scale(n: int, demo: Path, n_perm: int) -> list[dict]:
    where = ROOT / "benchmarks" / "out" / f"group_{n}"
    files = make_cohort(demo, n, where)
    results = []
    for modality in ("qsm", "gm"):
        cmd = [sys.executable, __file__, "_glm", str(where), modality, str(n_perm)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode:
            raise RuntimeError(r.stderr[-3000:])
        info = json.loads(r.stdout.strip().splitlines()[-1])
        results.append(
            {
                "modality": modality,
                "subjects": n,
                "n_perm": n_perm,
                "wall_s": round(wall, 1),
                **info,
            }
        )
        print(results[-1], flush=True)
    del files
    return results


def _glm_child(where: str, modality: str, n_perm: int) -> None:
    """Run the group GLM (qsmvbm.stats.pipeline.group_glm) in this (fresh) process and print its
    peak RSS."""
    import logging

    from qsmvbm.config import workflow_defaults
    from qsmvbm.stats.pipeline import group_glm

    lay = Layout.from_config(workflow_defaults(), where)
    group = workflow_defaults()["group"]
    group["n_perm"] = n_perm
    subjects = sorted(p.name for p in lay.derivatives.glob("sub-*"))
    maps = [str(lay.group_map(modality, s)) for s in subjects]
    valid = (
        [str(lay.subject("template_qsm_mask", s)) for s in subjects] if modality == "qsm" else []
    )
    out = {
        k: str(lay.group(key, modality))
        for k, key in (
            ("tstat", "tstat"),
            ("effect", "effect"),
            ("clusters", "cluster_map"),
            ("mask", "svc_mask"),
            ("sd", "resid_sd"),
            ("table", "cluster_table"),
            ("json", "glm_json"),
        )
    }
    t0 = time.perf_counter()
    table = group_glm(
        lay.group("design"),
        maps,
        valid,
        modality,
        group,
        "ALS",
        "NC",
        2,
        out,
        logging.getLogger("bench"),
    )
    print(
        json.dumps(
            {
                "glm_s": round(time.perf_counter() - t0, 1),
                "clusters": len(table),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_glm":
        _glm_child(*sys.argv[2:4], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("perm")
    p.add_argument("--n-perm", type=int, default=5000)
    p.add_argument("--threads", type=int, default=int(os.environ.get("QSMVBM_THREADS", 2)))
    s = sub.add_parser("scale")
    s.add_argument("--subjects", type=int, default=2000)
    s.add_argument("--demo", type=Path, default=ROOT / "results")
    s.add_argument("--n-perm", type=int, default=5000)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.what == "perm":
        res = bench_perm(args.n_perm, args.threads)
        print(res)
        (OUT / "group_permutation_speed.json").write_text(json.dumps(res, indent=2))
    else:
        res = bench_scale(args.subjects, args.demo, args.n_perm)
        (OUT / f"group_glm_scale_{args.subjects}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
