"""How Snakemake's DAG construction grows with the cohort: dry-run wall time and peak memory for
100, 1,000 and 10,000 subjects.

Fake inputs: a BIDS folder of empty files (4 echoes, T1w) and ``participants.tsv``; the T1w
input checks and the cohort's checkpoint are pre-written (``ok: true``) so that the dry run builds the full DAG (every
per-subject rule and the group stage), as on a rerun of a processed cohort. Each dry run is a fresh
process; peak memory is its ru_maxrss. Variants:

- ``local``: ``snakemake -n`` (per-subject jobs; the group directive bundles nothing locally);
- ``grouped-50``: ``--group-components subject=50`` (50 subjects' chains per cluster job);
- ``batch-1/10``: ``--batch normalization_qc=1/10``, meant as the first tenth of the cohort's
  aggregation. It does not slice this workflow: ``--batch`` omits only what lies downstream of the
  batch rule, and the default target ``all`` also asks for every subject's own outputs (sidecars,
  template-space maps, QC figures), so every subject's per-subject jobs stay in the DAG (an older
  ``all`` asked for two of them: hence 20,001 jobs at 10,000 subjects where 5,001 were expected);
- ``participants-1/10``: the BIDS-App way to slice a cohort, the ``participant`` target with a tenth of
  the cohort in ``participants.participant_label`` (what ``qsmvbm BIDS OUT participant
  --participant-label ...`` runs).

    python benchmarks/dag_scaling.py --subjects 100 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from qsmvbm.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "out" / "dag"
N_ECHOES = 4


def fake_cohort(n: int) -> tuple[Path, Path]:
    base = WORK / f"n{n}"
    bids, out = base / "bids", base / "out"
    if (base / ".done").exists():
        return bids, out
    # the clinical columns the default group settings name (they are checked before any job)
    rows = ["participant_id\tgroup\tage\tsex\talsfrs_r\tumn_score\tdisease_duration_months"]
    for i in range(n):
        pid = f"sub-{'ALS' if i % 2 == 0 else 'NC'}{i:05d}"
        clinical = "40\t5\t12" if i % 2 == 0 else "n/a\tn/a\tn/a"
        rows.append(f"{pid}\t{'ALS' if i % 2 == 0 else 'NC'}\t50\tM\t{clinical}")
        anat = bids / pid / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for e in range(1, N_ECHOES + 1):
            for part in ("mag", "phase"):
                for ext in ("nii.gz", "json"):
                    (anat / f"{pid}_echo-{e}_part-{part}_MEGRE.{ext}").touch()
        (anat / f"{pid}_T1w.nii.gz").touch()
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    (bids / "dataset_description.json").write_text('{"Name": "fake", "BIDSVersion": "1.8.0"}')
    time.sleep(1.1)
    pids = [f"sub-{'ALS' if i % 2 == 0 else 'NC'}{i:05d}" for i in range(n)]
    for pid in pids:
        check = Layout(out).subject("input_check", pid)  # the input_check checkpoint's record
        check.parent.mkdir(parents=True, exist_ok=True)
        check.write_text('{"ok": true, "reason": "fake"}')
    # the cohort's checkpoint as after a run, for the whole cohort and for its first tenth
    for subset in (pids, pids[: max(n // 10, 1)]):
        verdicts = Layout(out).input_checks(subset)
        verdicts.parent.mkdir(parents=True, exist_ok=True)
        verdicts.write_text(
            json.dumps({"subjects": {p: {"ok": True, "reason": ""} for p in subset}})
        )
    (base / ".done").touch()
    return bids, out


def tenth_config(n: int) -> Path:
    """A config file naming the first tenth of the fake cohort's participants, the analysis level
    'participant' (the qsmvbm command's settings for ``participant --participant-label ...``)."""
    labels = [f"{'ALS' if i % 2 == 0 else 'NC'}{i:05d}" for i in range(max(n // 10, 1))]
    path = WORK / f"n{n}" / "tenth.yaml"
    path.write_text(
        json.dumps({"analysis_level": "participant", "participants": {"participant_label": labels}})
    )
    return path


def measure(args: list[str], timeout_s: float) -> dict:
    """Wall time, peak RSS and job count of one dry run in a fresh process (stopped after
    ``timeout_s``: then ``rc`` is "timeout" and the wall time is the limit)."""
    code = (
        "import resource, subprocess, sys, time, json; t=time.perf_counter(); "
        "r=subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(json.dumps({'rc': r.returncode, 'wall_s': time.perf_counter()-t, "
        "'maxrss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024, "
        "'tail': (r.stdout+r.stderr)[-4000:]}))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, sys.executable, "-m", "snakemake", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the wrapper and its snakemake child
        proc.communicate()
        return {"rc": "timeout", "wall_s": timeout_s, "maxrss_mb": None, "jobs": None}
    r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    m = re.search(r"^total\s+(\d+)", res["tail"], re.M)
    res["jobs"] = int(m.group(1)) if m else None
    if res["rc"] != 0:
        raise RuntimeError(res["tail"])
    del res["tail"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--subjects", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["local", "grouped-50", "batch-1/10", "participants-1/10"],
    )
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="per dry run")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    previous = OUT / "dag_scaling.json"
    # keep earlier measurements of other cohort sizes (each size is a separate, long run)
    rows = [
        r
        for r in (json.loads(previous.read_text())["rows"] if previous.exists() else [])
        if not (r["subjects"] in args.subjects and r["variant"] in args.variants)
    ]
    for n in args.subjects:
        bids, out = fake_cohort(n)
        head = ["-n", "--quiet", "rules", "--cores", "2"]
        cfg = [
            "--config",
            f"bids_dir={bids}",
            f"output_dir={out}",
        ]  # last: --config takes what follows
        variants = {
            "local": [],
            "grouped-50": ["--group-components", "subject=50"],
            "batch-1/10": ["--batch", "normalization_qc=1/10"],
            # the target first: --quiet and --configfile would take it as one of their values
            "participants-1/10": ["participant", "--configfile", str(tenth_config(n))],
        }
        for name, extra in variants.items():
            if name not in args.variants:
                continue
            target = extra[:1] if name.startswith("participants") else []
            res = measure(target + head + extra[len(target) :] + cfg, args.timeout_s)
            rows.append(
                {
                    "subjects": n,
                    "variant": name,
                    **{k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()},
                }
            )
            print(rows[-1], flush=True)
            rows.sort(key=lambda r: (r["subjects"], list(variants).index(r["variant"])))
            save(rows)


def save(rows: list[dict]) -> None:
    (OUT / "dag_scaling.json").write_text(
        json.dumps({"rows": rows, "cpu_count": os.cpu_count()}, indent=2)
    )
    with open(OUT / "dag_scaling.tsv", "w") as f:
        cols = ["subjects", "variant", "jobs", "wall_s", "maxrss_mb", "rc"]
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(str(r.get(c)) for c in cols) + "\n")


if __name__ == "__main__":
    main()
