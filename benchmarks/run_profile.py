"""Where a finished workflow run spent its time: per rule, from Snakemake's ``benchmark:`` files.

For every rule: jobs, wall seconds (median, total), CPU seconds (median, total; user + system
time), peak resident memory (MB); the share of the run's summed job wall time; and the critical
path of the DAG's shape (the slowest subject's chain of per-subject rules, then the group rules one
after another), the floor of the run's wall time however many cores. With ``--wall-s`` (the run's
wall time) and ``--cores``, the cores' use: summed job wall / (cores x run wall). With
``--scheduler-cpu-s`` (the Snakemake process's own CPU seconds, e.g. from ``ps -o times`` at the end
of the run), its share; with ``--cpu-s`` (the run's measured CPU), its share.

CPU and memory come from the job's own log when it has the workflow's resource-usage line
(``qsmvbm.smk.logged``: ``getrusage``, exact), else from the benchmark file. Snakemake samples a
job every 0.5 s for its first 15 s and every 30 s after, and its ``cpu_time`` and ``max_rss`` stop
at the last sample: a 34 s input check of 30 s CPU and 2.7 GB peak was recorded as 15 s and
1.3 GB. The columns ``bench_cpu_s`` and ``bench_max_rss_mb`` keep the benchmark files' figures,
and ``usage_from_log`` says which jobs had the exact ones.

    python benchmarks/run_profile.py RUN --name study2mm --wall-s 7200 --cores 2

Writes ``benchmarks/results/run_profile_<name>.{tsv,json}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from qsmvbm.smk import parse_usage

OUT = Path(__file__).resolve().parent / "results"


def read_benchmarks(run: Path) -> pd.DataFrame:
    """One row per job: rule, subject (None for group rules), s (wall), cpu_s, max_rss_mb (from
    the job's log when it has the usage line, else the benchmark file's), the benchmark file's
    ``bench_cpu_s`` and ``bench_max_rss_mb``, and ``usage_from_log``."""
    rows = []
    root = run / "benchmarks"
    for f in sorted(root.rglob("*.tsv")):
        rel = f.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else f.stem
        subject = f.stem if len(rel.parts) > 1 else None
        t = pd.read_csv(f, sep="\t")
        if t.empty:
            continue
        r = t.iloc[-1]  # the latest run of the job (benchmark files keep repeats as rows)
        bench_cpu = pd.to_numeric(r.get("cpu_time"), errors="coerce")
        bench_rss = pd.to_numeric(r.get("max_rss"), errors="coerce")
        usage = parse_usage((run / "logs" / rel).with_suffix(".log")) or {}
        rows.append(
            {
                "rule": rule,
                "subject": subject,
                "s": float(r["s"]),
                "cpu_s": float(usage.get("cpu_s", bench_cpu)),
                "max_rss_mb": float(usage.get("max_rss_mb", bench_rss)),
                "bench_cpu_s": float(bench_cpu),
                "bench_max_rss_mb": float(bench_rss),
                "usage_from_log": bool(usage),
            }
        )
    return pd.DataFrame(rows)


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per-rule summary, by total wall time (descending)."""
    g = jobs.groupby("rule")
    table = pd.DataFrame(
        {
            "jobs": g.size(),
            "wall_median_s": g["s"].median(),
            "wall_total_s": g["s"].sum(),
            "cpu_median_s": g["cpu_s"].median(),
            "cpu_total_s": g["cpu_s"].sum(),
            "max_rss_mb": g["max_rss_mb"].max(),
            "usage_from_log": g["usage_from_log"].sum(),
        }
    )
    table["share_of_job_wall"] = table["wall_total_s"] / table["wall_total_s"].sum()
    return table.sort_values("wall_total_s", ascending=False)


def critical_path(jobs: pd.DataFrame) -> dict:
    """The slowest subject's per-subject chain plus the group rules (serial), in seconds."""
    per_subject = jobs[jobs.subject.notna()].groupby("subject")["s"].sum()
    group = jobs[jobs.subject.isna()]
    slowest = per_subject.idxmax() if len(per_subject) else None
    return {
        "slowest_subject": slowest,
        "slowest_subject_s": float(per_subject.max()) if len(per_subject) else 0.0,
        "median_subject_s": float(per_subject.median()) if len(per_subject) else 0.0,
        "group_rules_s": float(group["s"].sum()),
        "critical_path_s": float(per_subject.max() if len(per_subject) else 0.0)
        + float(group["s"].sum()),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="the run's output_dir (holds benchmarks/)")
    ap.add_argument("--name", required=True, help="output file stem: run_profile_<name>")
    ap.add_argument("--wall-s", type=float, help="the run's wall time (s)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--scheduler-cpu-s", type=float, help="the Snakemake process's CPU (s)")
    ap.add_argument(
        "--cpu-s",
        type=float,
        help="the run's measured CPU (s; e.g. user + system of /usr/bin/time over snakemake, which "
        "counts every job; exact where the benchmark files' sampled figures are not)",
    )
    ap.add_argument(
        "--cpu-wall-s",
        type=float,
        help="the wall time over which --cpu-s was measured (default --wall-s)",
    )
    ap.add_argument(
        "--exclude", nargs="*", default=[], help="rules left out (e.g. the simulation's)"
    )
    args = ap.parse_args(argv)
    jobs = read_benchmarks(args.run)
    jobs = jobs[~jobs.rule.isin(args.exclude)]
    table = per_rule(jobs)
    summary = {
        "run": str(args.run),
        "excluded_rules": args.exclude,
        "jobs": int(len(jobs)),
        "subjects": int(jobs.subject.nunique()),
        "job_wall_total_s": float(jobs.s.sum()),
        "job_cpu_total_s": float(jobs.cpu_s.sum()),
        "jobs_with_exact_usage": int(jobs.usage_from_log.sum()),
        **critical_path(jobs),
    }
    if args.wall_s:
        summary["run_wall_s"] = args.wall_s
        summary["cores"] = args.cores
        summary["core_use"] = float(jobs.s.sum() / (args.cores * args.wall_s))
    if args.cpu_s is not None:
        cpu_wall = args.cpu_wall_s or args.wall_s
        summary["run_cpu_s"] = args.cpu_s
        summary["run_cpu_measured_over_wall_s"] = cpu_wall
        if cpu_wall:
            summary["run_cpu_share_of_cores"] = args.cpu_s / (args.cores * cpu_wall)
    if args.scheduler_cpu_s is not None:
        summary["scheduler_cpu_s"] = args.scheduler_cpu_s
        summary["scheduler_cpu_per_job_s"] = args.scheduler_cpu_s / max(len(jobs), 1)
        if args.wall_s:
            summary["scheduler_share_of_cores"] = args.scheduler_cpu_s / (args.cores * args.wall_s)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / f"run_profile_{args.name}.tsv", sep="\t", float_format="%.4g")
    (OUT / f"run_profile_{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
