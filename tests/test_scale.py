"""Running at scale: a real one-node SLURM through profiles/slurm, and incremental reruns.

The module starts slurmctld/slurmd/munged on localhost (tests/slurm/start-local-slurm.sh installs
Debian's slurm-wlm and munge with apt when missing) and runs the tiny cohort, given as a BIDS dataset,
through the SLURM executor. The SLURM test checks that the jobs went through SLURM and that the outputs
equal the local run of the same cohort (``tiny_run``, byte-identical inputs); the rerun tests then work on
that finished run. Where SLURM cannot be started, the cohort runs locally instead and the SLURM test skips.
"""

import filecmp
import json
import re
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from qsmvbm.layout import Layout

from .conftest import ROOT, run_snakemake

PER_SUBJECT = {
    "input_check",
    "inputs_summary",
    "qsm",
    "anat_t1",
    "register_gre",
    "refine_deep_grey",
    "template_maps",
    "derivative_sidecars",
}
GROUP_RULES = {
    "normalization_qc",
    "group_design",
    "group_glm",
    "cluster_table",
    "roi_values",
    "roi_statistics",
}
JOB = re.compile(
    r"^ *(?:local)?(?:rule|checkpoint) (\w+):\n(.*?)(?=^ *\[|^ *(?:local)?(?:rule|checkpoint) |\Z)",
    re.M | re.S,
)


def planned(*args) -> list[tuple[str, str | None]]:
    """(rule, subject) of every job a dry run would execute."""
    r = run_snakemake("-n", *args)
    jobs = []
    for rule, body in JOB.findall(r.stdout + r.stderr):
        m = re.search(r"wildcards: .*?subject=(sub-[A-Za-z0-9]+)", body)
        jobs.append((rule, m.group(1) if m else None))
    return [j for j in jobs if j[0] != "all"]


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    """State folder of a running one-node SLURM, or the reason there is none (a str)."""
    state = tmp_path_factory.mktemp("slurm_state")
    r = subprocess.run(
        ["bash", str(ROOT / "tests" / "slurm" / "start-local-slurm.sh"), str(state)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode == 3:
        yield f"no SLURM here: {r.stderr.strip()}"
        return
    assert r.returncode == 0 and "ready" in r.stdout, r.stdout + r.stderr
    yield state
    subprocess.run(
        ["bash", str(ROOT / "tests" / "slurm" / "stop-local-slurm.sh"), str(state)], timeout=120
    )


@pytest.fixture(scope="module")
def bids_run(tiny_cohort, local_slurm, tmp_path_factory):
    """A full run of the tiny cohort given as a BIDS dataset, through SLURM when it runs here:
    (bids_dir, output_dir, snakemake's log or None for a local run)."""
    base = tmp_path_factory.mktemp("bids_run")
    bids = base / "bids"
    shutil.copytree(tiny_cohort, bids, ignore=shutil.ignore_patterns("derivatives"))
    out = base / "out"
    if isinstance(local_slurm, str):
        run_snakemake("--config", f"bids_dir={bids}", f"output_dir={out}")
        return bids, out, None
    # the profile waits 20 s before its first status check of a job (kind to a real cluster's
    # controller); a one-node test cluster can be asked every 2 s
    r = run_snakemake(
        "--profile",
        "profiles/slurm",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--config",
        f"bids_dir={bids}",
        f"output_dir={out}",
    )
    return bids, out, r.stdout + r.stderr


def test_slurm_profile_runs_the_cohort_like_a_local_run(bids_run, local_slurm, tiny_run):
    if isinstance(local_slurm, str):
        pytest.skip(local_slurm)
    bids, out, log = bids_run
    local = tiny_run
    ids = [int(i) for i in re.findall(r"submitted with SLURM jobid (\d+)", log)]
    assert len(ids) >= 10, log[-3000:]
    # per subject, the T1w checkpoint, then ONE cluster job (group "subject") with inputs_summary,
    # qsm, anat_t1, register_gre and template_maps
    assert "group_subject" in log
    shown = subprocess.run(
        ["scontrol", "show", "job", str(ids[-1])], capture_output=True, text=True
    )
    assert f"JobId={ids[-1]}" in shown.stdout and "JobState=COMPLETED" in shown.stdout, (
        shown.stdout + shown.stderr
    )
    slurmd_log = (local_slurm / "log" / "slurmd.log").read_text()
    assert all(
        f"job {i}" in slurmd_log or f"JobId={i}" in slurmd_log or f"StepId={i}." in slurmd_log
        for i in ids[:3]
    ), slurmd_log[-2000:]
    for pid in ("sub-ALS001", "sub-NC002"):
        assert filecmp.cmp(
            bids / pid / "anat" / f"{pid}_echo-1_part-phase_MEGRE.nii.gz",
            local / "sim_bids" / pid / "anat" / f"{pid}_echo-1_part-phase_MEGRE.nii.gz",
            shallow=False,
        )
        for key in ("chi", "template_chi", "gm_mod_smooth"):
            a = np.asarray(nib.load(Layout(local).subject(key, pid)).dataobj)
            b = np.asarray(nib.load(Layout(out).subject(key, pid)).dataobj)
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=f"{pid} {key}")
    ca = pd.read_csv(Layout(local).group("clusters"), sep="\t")
    cb = pd.read_csv(Layout(out).group("clusters"), sep="\t")
    pd.testing.assert_frame_equal(ca, cb, check_exact=False, atol=1e-4)


def test_rerun_nothing_changed(bids_run):
    bids, out, _ = bids_run
    assert planned("--config", f"bids_dir={bids}", f"output_dir={out}") == []


def test_rerun_after_changing_a_group_parameter(bids_run, tmp_path):
    bids, out, _ = bids_run
    extra = tmp_path / "n_perm.yaml"
    extra.write_text("group:\n  n_perm: 200\n")
    jobs = planned(
        "--configfile",
        "config/config.yaml",
        str(extra),
        "--config",
        f"bids_dir={bids}",
        f"output_dir={out}",
    )
    assert jobs and all(s is None for _, s in jobs), jobs
    assert ("group_glm", None) in jobs and "normalization_qc" not in {r for r, _ in jobs}


def test_rerun_after_adding_a_subject(bids_run):
    """Two subjects added: sub-NC003 (a copy of sub-NC002) and sub-NC004, whose echo-2 phase file is
    truncated. Dry run: their jobs up to the input checkpoint (the rest of a chain is only known once
    the checkpoint has run) and the group jobs. The real run executes exactly sub-NC003's per-subject
    jobs, only the input check of sub-NC004, and the group jobs on the others: sub-NC004 is excluded
    with the reason in the QC table, the design and the methods text, and nothing is written to BIDS."""
    bids, out, _ = bids_run
    src = bids / "sub-NC002"
    for pid in ("sub-NC003", "sub-NC004"):
        (bids / pid / "anat").mkdir(parents=True)
        for p in (src / "anat").iterdir():
            shutil.copy2(p, bids / pid / "anat" / p.name.replace("sub-NC002", pid))
    broken = bids / "sub-NC004" / "anat" / "sub-NC004_echo-2_part-phase_MEGRE.nii.gz"
    broken.write_bytes(broken.read_bytes()[:20000])
    parts = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    rows = [
        parts[parts.participant_id == "sub-NC002"].assign(participant_id=pid)
        for pid in ("sub-NC003", "sub-NC004")
    ]
    pd.concat([parts, *rows]).to_csv(bids / "participants.tsv", sep="\t", index=False)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in bids.rglob("*"))
    # the report's figures are left out (about 20 s; test_report covers them)
    args = ("--config", f"bids_dir={bids}", f"output_dir={out}", "--omit-from", "report_figures")
    jobs = planned(*args)
    assert {s for _, s in jobs if s} == {"sub-NC003", "sub-NC004"}, jobs
    assert {r for r, s in jobs if s} == {"input_check"}, jobs
    r = run_snakemake(*args)
    log = r.stdout + r.stderr
    ran = [
        (rule, re.search(r"subject=(sub-[A-Za-z0-9]+)", body)) for rule, body in JOB.findall(log)
    ]
    ran = [(rule, m.group(1) if m else None) for rule, m in ran if rule != "all"]
    assert {s for _, s in ran if s} == {"sub-NC003", "sub-NC004"}, ran
    assert {r for r, s in ran if s == "sub-NC003"} == PER_SUBJECT, ran
    assert {r for r, s in ran if s == "sub-NC004"} == {"input_check"}, ran
    assert GROUP_RULES <= {r for r, s in ran if s is None}, ran
    lay = Layout(out)
    design = pd.read_csv(lay.group("design"), sep="\t").set_index("participant_id")
    assert design.loc["sub-NC003", "included"]
    assert not design.loc["sub-NC004", "included"]
    reason = design.loc["sub-NC004", "reason"]
    assert "sub-NC004_echo-2_part-phase_MEGRE.nii.gz: cannot read the image data" in reason, reason
    glm = json.loads(lay.group("glm_json", "qsm").read_text())
    assert "sub-NC003" in glm["included"] and "sub-NC004" not in glm["included"]
    assert lay.group("clusters").exists() and lay.group("roi_values").exists()
    qc = pd.read_csv(lay.group("qc_table"), sep="\t").set_index("participant_id")
    assert (
        not qc.loc["sub-NC004", "included"]
        and "cannot read the image data" in qc.loc["sub-NC004", "reason"]
    )
    assert "sub-NC004" in lay.report("table5").read_text()
    methods = lay.report("methods_html").read_text()
    assert "sub-NC004 (input check failed: GRE input:" in methods
    assert re.search(
        r"qsmvbm: \d of 6 subjects included; excluded: .*sub-NC004 \(input check failed", log
    ), log[-2000:]
    assert sorted((str(p), p.stat().st_mtime_ns) for p in bids.rglob("*")) == before


def test_rerun_after_changing_one_phase_file(bids_run):
    """A changed phase file reruns that subject's input check; the dry run can show no further (the
    checkpoint decides the rest). Run for that subject's template-space QSM: its GRE chain reruns, its
    anatomy does not. The original file is then put back and the chain rerun. (Last in the module: it
    leaves the group stage older than this subject's maps.)"""
    bids, out, _ = bids_run
    f = bids / "sub-ALS002" / "anat" / "sub-ALS002_echo-1_part-phase_MEGRE.nii.gz"
    keep = f.with_suffix(".keep")
    shutil.copy2(f, keep)
    target = str(Layout(out).subject("template_chi", "sub-ALS002"))
    args = ("--config", f"bids_dir={bids}", f"output_dir={out}")
    try:
        img = nib.load(f)
        data = np.asarray(img.dataobj).copy()
        data[0, 0, 0] += 1
        nib.save(nib.Nifti1Image(data, img.affine, img.header), f)
        jobs = planned(*args)
        assert [(r, s) for r, s in jobs if s] == [("input_check", "sub-ALS002")], jobs
        ran = {
            rule
            for rule, _ in JOB.findall(
                (lambda r: r.stdout + r.stderr)(run_snakemake(target, *args))
            )
        }
        assert ran == {"input_check", "inputs_summary", "qsm", "register_gre", "template_maps"}, ran
    finally:
        shutil.copy2(keep, f)
        keep.unlink()
        f.touch()
        run_snakemake(target, *args)


def test_pending_scheduler_timers_are_cancelled():
    """The profiles' max-jobs-per-timespan (6000/1m) makes Snakemake leave a non-daemon
    threading.Timer of one timespan after its last scheduling round, which kept a finished run alive
    for a minute; the Snakefile's onsuccess/onerror cancel it."""
    import threading

    from qsmvbm.smk import cancel_pending_timers

    fired = threading.Event()
    timer = threading.Timer(600, fired.set)
    timer.start()
    assert cancel_pending_timers() >= 1
    timer.join(timeout=5)
    assert not timer.is_alive() and not fired.is_set()
    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert profile["max-jobs-per-timespan"] == "6000/1m"
    snakefile = (ROOT / "Snakefile").read_text()
    for handler in ("onsuccess", "onerror"):
        body = snakefile.split(f"\n{handler}:\n", 1)[1].split("\n\n", 1)[0]
        assert "cancel_pending_timers()" in body, handler


def test_scheduler_keeps_one_reevaluation_timer():
    """Snakemake 9.27 starts a re-evaluation timer after every scheduling round that leaves jobs
    waiting, and each timer's round starts another: one chain per finished job (129 pending timers
    after 174 jobs of the 68-subject run). Patched, a burst of rounds leaves one pending timer,
    which fires (one scheduling round) and lets the next round start a new one."""
    import threading
    import time

    from snakemake.scheduling.job_scheduler import JobScheduler

    from qsmvbm.smk import single_reevaluation_timer

    single_reevaluation_timer()
    assert getattr(JobScheduler._schedule_reevalutation, "qsmvbm_single", False)
    assert not single_reevaluation_timer()  # idempotent
    sched = object.__new__(JobScheduler)  # only the semaphore the timer releases is needed
    sched._open_jobs = threading.Semaphore(0)

    def pending():
        return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]

    before = len(pending())
    for _ in range(20):
        sched._schedule_reevalutation(0.3)
    assert len(pending()) == before + 1
    assert sched._open_jobs.acquire(timeout=5)  # the one round
    assert not sched._open_jobs.acquire(timeout=0.5)  # and no other
    time.sleep(0.1)
    sched._schedule_reevalutation(0.2)  # the round it opened starts the next timer
    assert sched._open_jobs.acquire(timeout=5)
    assert "single_reevaluation_timer()" in (ROOT / "Snakefile").read_text()
