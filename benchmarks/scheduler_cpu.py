"""How much CPU Snakemake's own process spends scheduling, per job, by scheduler (issue 22).

A toy workflow with the study's shape: a pre-flight check of every subject's input that all
per-subject work waits for (so, as in the workflow, every subject's first jobs are ready at once),
then per subject a chain of four rules (``qsm`` with 48 inputs, as
12 echoes x magnitude/phase x NIfTI/JSON, or 4 inputs as one echo, to see what the inputs cost; ``anat``; ``register``; ``template_maps``) and one group
rule over all subjects. Every job sleeps ``--job-s`` seconds and touches its outputs, so the jobs'
own CPU is negligible and what the Snakemake process uses (its user + system CPU, children not
counted, sampled until it exits) is scheduling: the ILP or greedy job selection and the stat of
every input of every ready job on each scheduling round (``JobScheduler.update_input_sizes``).

    python benchmarks/scheduler_cpu.py --subjects 68 --cores 2

Writes ``benchmarks/results/scheduler_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

OUT = Path(__file__).resolve().parent / "results"

SNAKEFILE = """
{patch}
SUBJECTS = [f"s{{i:03d}}" for i in range({n})]
ECHO = [f"{{e}}_{{p}}.{{x}}" for e in range({echoes}) for p in ("mag", "phase") for x in ("nii", "json")]


rule all:
    input:
        "group/done",


rule raw:
    output:
        expand("raw/{{{{subject}}}}/{{f}}", f=ECHO),
        "raw/{{subject}}/T1w.nii",
    shell:
        "mkdir -p raw/{{wildcards.subject}} && touch {{output}}"


rule preflight:
    input:
        expand("raw/{{subject}}/T1w.nii", subject=SUBJECTS),
    output:
        "preflight/ok",
    shell:
        "mkdir -p preflight && touch {{output}}"


rule qsm:
    input:
        expand("raw/{{{{subject}}}}/{{f}}", f=ECHO),
        "preflight/ok",
    output:
        "d/{{subject}}/chi",
    shell:
        "sleep {job_s}; mkdir -p d/{{wildcards.subject}} && touch {{output}}"


rule anat:
    input:
        "raw/{{subject}}/T1w.nii",
        "preflight/ok",
    output:
        "d/{{subject}}/gm",
        "d/{{subject}}/warp",
    shell:
        "sleep {job_s}; mkdir -p d/{{wildcards.subject}} && touch {{output}}"


rule register:
    input:
        "d/{{subject}}/chi",
        "d/{{subject}}/gm",
    output:
        "d/{{subject}}/xfm",
    shell:
        "sleep {job_s}; touch {{output}}"


rule template_maps:
    input:
        "d/{{subject}}/chi",
        "d/{{subject}}/warp",
        "d/{{subject}}/xfm",
    output:
        "d/{{subject}}/mni",
    shell:
        "sleep {job_s}; touch {{output}}"


onsuccess:
    # as the workflow's Snakefile: the last rate-limit timer would hold the exit for a timespan
    from qsmvbm.smk import cancel_pending_timers

    cancel_pending_timers()


rule group:
    input:
        expand("d/{{subject}}/mni", subject=SUBJECTS),
    output:
        "group/done",
    shell:
        "mkdir -p group && touch {{output}}"
"""


# (scheduler, echoes, extra Snakemake arguments); --scheduler-subsample K makes every scheduling
# round look at K of the ready jobs (drawn at random) instead of all of them; with
# --max-jobs-per-timespan N/T (Snakemake's default 100/1s) every round that leaves ready jobs waiting
# schedules another round T later, so with jobs longer than T the scheduler re-examines every ready
# job's inputs each T (1 s by default). That round ends the same way, so each finished job adds a
# timer chain that lives while jobs wait; the 4th element runs the toy with the workflow's remedy
# (qsmvbm.smk.single_reevaluation_timer: one pending re-evaluation). 6000/5s with 5 s jobs has the
# real run's ratio of timespan (1 min) to job length (1-2 min).
VARIANTS = [
    ("ilp", 12, [], False),
    ("greedy", 12, [], False),
    ("ilp", 1, [], False),
    ("ilp", 12, ["--scheduler-subsample", "8"], False),
    ("greedy", 12, ["--scheduler-subsample", "8"], False),
    ("ilp", 12, ["--max-jobs-per-timespan", "6000/1m"], False),
    ("ilp", 12, ["--max-jobs-per-timespan", "6000/1m", "--scheduler-subsample", "8"], False),
    ("ilp", 12, [], True),
    ("ilp", 12, ["--max-jobs-per-timespan", "6000/5s"], False),
    ("ilp", 12, ["--max-jobs-per-timespan", "6000/5s"], True),
    ("ilp", 12, ["--max-jobs-per-timespan", "6000/1m"], True),
]
PATCH = "from qsmvbm.smk import single_reevaluation_timer\n\nsingle_reevaluation_timer()\n"


def run_once(
    n: int,
    job_s: float,
    cores: int,
    scheduler: str,
    extra: list[str],
    echoes: int = 12,
    single_timer: bool = False,
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        (wd / "Snakefile").write_text(
            SNAKEFILE.format(n=n, job_s=job_s, echoes=echoes, patch=PATCH if single_timer else "")
        )
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            str(cores),
            "--scheduler",
            scheduler,
            "--quiet",
            "all",
            *extra,
        ]
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cpu = 0.0
        while proc.poll() is None:
            try:
                c = proc.cpu_times()
                cpu = c.user + c.system
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode()
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake failed ({proc.returncode}):\n{err[-2000:]}")
    jobs = 5 * n + 3
    return {
        "scheduler": scheduler,
        "qsm_inputs": 4 * echoes,
        "extra": extra,
        "single_reevaluation_timer": single_timer,
        "jobs": jobs,
        "wall_s": round(wall, 1),
        "snakemake_cpu_s": round(cpu, 2),
        "cpu_ms_per_job": round(1000 * cpu / jobs, 1),
        "cpu_share_of_wall": round(cpu / wall, 3),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subjects", type=int, default=68)
    ap.add_argument("--job-s", type=float, default=0.5)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", default=str(OUT / "scheduler_cpu.json"))
    ap.add_argument(
        "--variants", nargs="*", type=int, help="indices into VARIANTS to run (default: all)"
    )
    args = ap.parse_args(argv)
    rows = []
    for i, (scheduler, echoes, extra, single) in enumerate(VARIANTS):
        if args.variants and i not in args.variants:
            continue
        row = run_once(args.subjects, args.job_s, args.cores, scheduler, extra, echoes, single)
        rows.append(row)
        print(json.dumps(row), flush=True)
    import snakemake

    out = {
        "snakemake": snakemake.__version__,
        "subjects": args.subjects,
        "job_s": args.job_s,
        "cores": args.cores,
        "runs": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
