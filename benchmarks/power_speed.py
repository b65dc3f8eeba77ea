"""Wall time and peak memory of ``qsmvbm-power`` on the issue-23 grid (benchmarks/power_grid.yaml).

Usage: python benchmarks/power_speed.py RUN [--jobs 2] [--runs 100] [--noise residuals]
       [--out benchmarks/results/power_speed.json]

RUN is a finished run (its output_dir; the pilot of the map-level models). The power outputs are
written into RUN's group/power/ as the command does. ``--runs`` overrides the grid's runs (the
time is about linear in it beyond the pooled nulls).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--noise", choices=["residuals", "gaussian"], help="power.noise (default: its)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "power_speed.json")
    args = ap.parse_args(argv)
    grid = yaml.safe_load((HERE / "power_grid.yaml").read_text())
    grid["run"] = str(args.run)
    if args.runs:
        grid["runs"] = args.runs
    if args.noise:
        grid["noise"] = args.noise
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(grid, f)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "qsmvbm.stats.power_cli", f.name, "--jobs", str(args.jobs)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cells = len(grid["n_per_group"]) * sum(
        len(m["rois"]) * len(m["effects"]) for m in grid["modalities"].values()
    )
    out = {
        "run": str(args.run),
        "grid": {k: v for k, v in grid.items() if k != "run"},
        "jobs": args.jobs,
        "cells": cells,
        "wall_s": round(wall, 1),
        "wall_s_per_run": round(wall / grid["runs"], 2),
        "peak_rss_mb_largest_process": round(peak_mb),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
