"""``qsmvbm-simulate CONFIG.yaml OUTDIR``: write a simulated BIDS cohort with ground truth."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..config import ConfigError
from .cohort_io import simulate_cohort, truth_dir
from .settings import load_simulation_config


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="qsmvbm-simulate",
        description="Simulate a BIDS cohort (multi-echo GRE + T1w, participants.tsv) with ground truth "
        "under derivatives/simulation, from the MNI152 template.",
    )
    p.add_argument(
        "config", type=Path, help="simulation config (YAML), e.g. config/simulation/demo.yaml"
    )
    p.add_argument("outdir", type=Path, help="output BIDS folder (created)")
    p.add_argument(
        "-j", "--jobs", type=int, default=1, help="subjects simulated in parallel (default 1)"
    )
    p.add_argument(
        "--subjects", nargs="+", help="only these participant ids (tables are always written)"
    )
    p.add_argument("--figure", action="store_true", help="also write a PNG of the first subject")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_simulation_config(args.config)
    except ConfigError as e:
        print(f"qsmvbm-simulate: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    jobs = max(1, args.jobs)
    os.environ.setdefault("QSMVBM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    try:
        table = simulate_cohort(cfg, args.outdir, jobs=jobs, subjects=args.subjects)
    except (ValueError, OSError) as e:
        print(f"qsmvbm-simulate: {e}", file=sys.stderr)
        return 1
    if args.figure:
        from .figure import plot_subject

        pid = table["participant_id"].iloc[0]
        png = plot_subject(
            args.outdir, pid, truth_dir(args.outdir) / "figures" / f"{pid}_simulation.png"
        )
        print(f"figure: {png}")
    print(f"simulated {len(table)} subjects into {args.outdir} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
