"""Progress of long exact solves: incumbent, bound and gap over time, on stderr (rich).

The generic path calls a :class:`Progress` after every outer-approximation round. It stays silent
for the first ``after_s`` seconds (most solves end sooner) and when disabled (``log=False`` in
the API, ``--json`` on the command line); the history is kept either way.
"""

from __future__ import annotations

import time
from typing import Any


class Progress:
    """Prints ``round, elapsed, incumbent, bound, gap`` at most once per ``every_s`` seconds."""

    def __init__(self, enabled: bool, *, after_s: float = 2.0, every_s: float = 1.0,
                 console: Any = None):
        self.enabled, self.after_s, self.every_s = enabled, after_s, every_s
        self.t0 = time.perf_counter()
        self.history: list[tuple[float, int, float | None, float | None, float | None]] = []
        self._console, self._last = console, -float("inf")

    def __call__(self, iteration: int, incumbent: float | None, bound: float | None) -> None:
        """Record one round; print it when enabled, late enough and not too soon after the last."""
        t = time.perf_counter() - self.t0
        gap = (None if incumbent is None or bound is None
               else (incumbent - bound) / max(abs(incumbent), 1e-12))
        self.history.append((t, iteration, incumbent, bound, gap))
        if not self.enabled or t < self.after_s or t - self._last < self.every_s:
            return
        self._last = t
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        inc = "none yet" if incumbent is None else f"{incumbent:.8g}"
        bnd = "-" if bound is None else f"{bound:.8g}"
        g = "-" if gap is None else f"{100 * gap:.4g}%"
        self._console.print(f"[dim]{t:7.1f} s[/dim]  round {iteration:4d}  incumbent {inc}  "
                            f"bound {bnd}  gap {g}", highlight=False)
