"""Helpers for the workflow's scripts (logging to the rule's log, thread settings) and for the
Snakefile (the scheduler's timers)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path


def set_threads(n: int) -> None:
    """Make ``n`` threads reach scipy.fft workers, ITK (ANTs) and BLAS.

    ANTs results depend on the ITK thread count, and multi-threaded registration with random
    sampling differs between runs even with a fixed seed: the ANTs rules get one thread when
    ``anat.deterministic`` (the workflow's ``ants_threads()``).
    """
    n = max(1, int(n))
    for var in (
        "QSMVBM_THREADS",
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        os.environ[var] = str(n)


def cancel_pending_timers() -> int:
    """Cancel the ``threading.Timer`` threads still waiting in this process; returns how many.

    Snakemake (9.27) re-runs its job selection one rate-limit timespan after every scheduling round
    (``--max-jobs-per-timespan``, the profiles' ``6000/1m``) with a non-daemon ``threading.Timer``;
    the last one keeps the finished process alive for up to the timespan. Called from the Snakefile's
    ``onsuccess``/``onerror``, when no job is left to schedule.
    """
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]
    for t in timers:
        t.cancel()
    return len(timers)


def single_reevaluation_timer() -> bool:
    """Keep at most one of Snakemake's rate-limit re-evaluation timers pending; True if patched.

    Snakemake (9.27; ``JobScheduler.schedule``) ends every scheduling round that leaves ready jobs
    waiting by starting a ``threading.Timer`` that opens another round one rate-limit timespan
    later (``--max-jobs-per-timespan``). A round opened by such a timer ends the same way, so every
    round opened by a finished job starts a timer chain that lives as long as jobs wait for a core:
    after N finished jobs, N rounds per timespan, each a stat of every input of every ready job and
    a job selection. Measured on the 68-subject cohort: 129 pending timers after 174 finished jobs,
    and the Snakemake process at 40% of a core (py-spy: 76% job selection, 40% input sizes).
    One pending re-evaluation does what the timer is for (a round within the timespan, so jobs held
    back by the rate limit start): a new timer is started only when none is due earlier.
    Does nothing (returns False) when Snakemake's scheduler has no such method.
    """
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    original = getattr(JobScheduler, "_schedule_reevalutation", None)
    if original is None or getattr(original, "qsmvbm_single", False):
        return False

    def _schedule_reevalutation(self, delay) -> None:
        now = time.monotonic()
        if now < getattr(self, "_qsmvbm_reevaluation_due", 0.0):
            return  # a re-evaluation is already due, sooner than this one would be
        self._qsmvbm_reevaluation_due = now + float(delay)
        timer = threading.Timer(delay, self._open_jobs.release)
        timer.daemon = True  # never holds a finished run's exit
        timer.start()

    _schedule_reevalutation.qsmvbm_single = True
    JobScheduler._schedule_reevalutation = _schedule_reevalutation
    return True


#: Tag of the resource-usage line that :func:`logged` writes at the end of a job's log.
USAGE_TAG = "qsmvbm-usage"


def resource_usage() -> dict:
    """This process's CPU time and peak memory so far, its waited-for children included.

    Exact, from ``getrusage``, where Snakemake's ``benchmark:`` files sample the job's processes
    every 0.5 s for the first 15 s and every 30 s after: a job's ``cpu_time`` and ``max_rss`` there
    stop at its last sample (an input check of 30 s CPU and 2.7 GB peak was recorded as 15 s and
    1.3 GB).

    Returns
    -------
    dict
        ``cpu_s`` (user + system, s), ``user_s``, ``system_s``, ``max_rss_mb`` (peak resident set
        of this process or of its largest child, MB; Linux reports kB).
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = me.ru_utime + kids.ru_utime
    system = me.ru_stime + kids.ru_stime
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS
    return {
        "cpu_s": round(user + system, 2),
        "user_s": round(user, 2),
        "system_s": round(system, 2),
        "max_rss_mb": round(max(me.ru_maxrss, kids.ru_maxrss) / scale, 1),
    }


def parse_usage(log_path: str | os.PathLike) -> dict | None:
    """The last resource-usage record of a job's log (:func:`logged`), or None."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        _, tag, rest = line.partition(USAGE_TAG + " ")
        if tag:
            try:
                return json.loads(rest)
            except ValueError:
                return None
    return None


@contextlib.contextmanager
def logged(log_path: str | os.PathLike | None, name: str = "qsmvbm") -> Iterator[logging.Logger]:
    """Send ``logging`` and stdout/stderr to ``log_path`` for the block; log a traceback on error.

    The block's last log line is its process's resource use (:data:`USAGE_TAG` and a JSON record of
    :func:`resource_usage` plus ``wall_s``, the block's wall time), error or not: exact CPU and
    peak memory per job, read by ``benchmarks/run_profile.py``.
    """
    logger = logging.getLogger(name)
    if not log_path:
        logging.basicConfig(level=logging.INFO)
        yield logger
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        start = time.monotonic()
        try:
            yield logger
        except Exception:
            fh.write(traceback.format_exc())
            raise
        finally:
            usage = {"wall_s": round(time.monotonic() - start, 2), **resource_usage()}
            logger.info("%s %s", USAGE_TAG, json.dumps(usage))
            sys.stdout, sys.stderr = old
            root.removeHandler(handler)
