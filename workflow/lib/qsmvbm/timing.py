"""A stage timer for step-by-step timings reported in sidecars and benchmarks."""

from __future__ import annotations

import time


class Stopwatch:
    """``tick(name)`` records the seconds since the previous tick (or creation) in ``timings``."""

    def __init__(self, digits: int = 3):
        self.timings: dict[str, float] = {}
        self.digits = digits
        self._t0 = time.perf_counter()

    def tick(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t0, self.digits)
        self._t0 = now
