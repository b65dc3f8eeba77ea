"""Per-subject anatomy time and peak memory, and the share spent in SyN.

Runs the workflow's anat_t1 script on one subject of a simulated cohort at the given
template resolution and reports its step timings, and the peak resident memory of the
process. Usage:
  python benchmarks/anat_speed.py --bids BIDS --subject sub-NC001 --resolution 1 [--threads 2]
Appends a JSON line to benchmarks/results/anat_speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bids", required=True)
    ap.add_argument("--subject", default="sub-NC001")
    ap.add_argument("--resolution", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "anat_speed.jsonl"))
    args = ap.parse_args(argv)
    from qsmvbm.smk import set_threads

    set_threads(args.threads)
    from qsmvbm.anat.pipeline import process_t1
    from qsmvbm.config import validate

    params = validate(
        {"anat": {"template_resolution": args.resolution}},
        ROOT / "workflow" / "schemas" / "config.schema.yaml",
    )["anat"]
    t1w = Path(args.bids) / args.subject / "anat" / f"{args.subject}_T1w.nii.gz"
    with tempfile.TemporaryDirectory() as tmp:
        names = [
            "preproc",
            "mask",
            "gm",
            "wm",
            "csf",
            "dseg",
            "affine",
            "warp",
            "inverse_warp",
            "template_t1",
            "template_mask",
            "volumes",
        ]
        ext = {"affine": ".mat", "volumes": ".json"}
        out = {n: str(Path(tmp) / f"{n}{ext.get(n, '.nii.gz')}") for n in names}
        t0 = time.perf_counter()
        info = process_t1(t1w, params, out, logging.getLogger("bench"))
        total = time.perf_counter() - t0
    rec = {
        "subject": args.subject,
        "t1_voxel_mm": json.loads(
            json.dumps(list(__import__("nibabel").load(t1w).header.get_zooms()), default=float)
        ),
        "template_resolution_mm": args.resolution,
        "threads": args.threads,
        "total_s": round(total, 1),
        "steps_s": info["Timings_s"],
        "syn_share": round(info["Timings_s"]["syn"] / total, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cpu_count": os.cpu_count(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    main()
