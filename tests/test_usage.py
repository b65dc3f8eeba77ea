"""Each job's exact CPU time and peak memory, written by ``qsmvbm.smk.logged`` into its log and read
by ``benchmarks/run_profile.py`` instead of Snakemake's sampled benchmark figures."""

import importlib.util
import resource
import time

import numpy as np
import pandas as pd

from qsmvbm.smk import USAGE_TAG, logged, parse_usage

from .conftest import ROOT


def _busy(seconds: float) -> float:
    """Spin for ``seconds`` of this process's CPU; returns the CPU time spent (s)."""
    start = time.process_time()
    x = 0
    while time.process_time() - start < seconds:
        x += 1
    return time.process_time() - start


def test_logged_writes_exact_usage(tmp_path):
    log = tmp_path / "job.log"
    with logged(log) as lg:
        lg.info("working")
        spent = _busy(0.5)
        block = np.ones((300, 1024, 1024 // 8))  # 300 MB, every page touched
        del block
    usage = parse_usage(log)
    assert usage is not None
    assert log.read_text().rstrip().splitlines()[-1].split(" ", 4)[-1].startswith(USAGE_TAG)
    # the process's CPU so far: at least the busy loop's, and at most its whole life's plus that of
    # the children it has waited for (a pytest-xdist worker has run other tests' subprocesses)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert spent <= usage["cpu_s"] <= time.process_time() + kids.ru_utime + kids.ru_stime + 0.05
    assert usage["cpu_s"] >= usage["user_s"] > 0
    assert usage["wall_s"] >= 0.5
    assert usage["max_rss_mb"] >= 300


def test_logged_writes_usage_on_error(tmp_path):
    log = tmp_path / "job.log"
    try:
        with logged(log):
            raise RuntimeError("bad input")
    except RuntimeError:
        pass
    text = log.read_text()
    assert "RuntimeError: bad input" in text
    assert parse_usage(log)["cpu_s"] > 0


def test_parse_usage_takes_the_last_run(tmp_path):
    log = tmp_path / "job.log"
    log.write_text(
        f'2026 INFO qsmvbm: {USAGE_TAG} {{"wall_s": 1, "cpu_s": 1.0, "max_rss_mb": 10}}\n'
        "rerun\n"
        f'2026 INFO qsmvbm: {USAGE_TAG} {{"wall_s": 2, "cpu_s": 2.0, "max_rss_mb": 20}}\n'
    )
    assert parse_usage(log)["cpu_s"] == 2.0
    assert parse_usage(tmp_path / "missing.log") is None


def test_run_profile_prefers_the_logged_usage(tmp_path):
    """A job whose benchmark file stopped at its 15 s sample gets the log's figures; a job without
    the usage line keeps the benchmark file's."""
    spec = importlib.util.spec_from_file_location("run_profile", ROOT / "benchmarks/run_profile.py")
    run_profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_profile)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for subject in ("sub-01", "sub-02"):
        bench = tmp_path / "benchmarks" / "input_check" / f"{subject}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(header + "33.9\t0:00:33\t1268.6\t1\t1\t1\t342\t0\t42.3\t14.74\n")
    log = tmp_path / "logs" / "input_check" / "sub-01.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        f'x INFO qsmvbm: {USAGE_TAG} {{"wall_s": 33, "cpu_s": 30.2, "max_rss_mb": 2746}}\n'
    )
    jobs = run_profile.read_benchmarks(tmp_path).set_index("subject")
    pd.testing.assert_series_equal(
        jobs["cpu_s"], pd.Series([30.2, 14.74], index=jobs.index, name="cpu_s")
    )
    assert list(jobs["max_rss_mb"]) == [2746.0, 1268.6]
    assert list(jobs["bench_cpu_s"]) == [14.74, 14.74]
    assert list(jobs["usage_from_log"]) == [True, False]
