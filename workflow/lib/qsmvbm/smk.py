"""Helpers for the workflow's scripts (logging to the rule's log, thread settings) and for the
Snakefile (the scheduler's timers)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
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


@contextlib.contextmanager
def logged(log_path: str | os.PathLike | None, name: str = "qsmvbm") -> Iterator[logging.Logger]:
    """Send ``logging`` and stdout/stderr to ``log_path`` for the block; log a traceback on error."""
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
        try:
            yield logger
        except Exception:
            fh.write(traceback.format_exc())
            raise
        finally:
            sys.stdout, sys.stderr = old
            root.removeHandler(handler)
