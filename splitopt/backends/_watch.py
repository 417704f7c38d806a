"""Wall-clock watchdog for solvers that cannot be cancelled.

The solve runs in a daemon thread; past the limit the caller stops waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

GRACE_S = 0.25


def run_with_watchdog(fn: Callable[[], Any], time_limit: float | None) -> tuple[bool, Any]:
    """(finished, value): ``fn()``'s value, or (False, None) when it overran time_limit + grace.

    An overrunning solver keeps its thread until its own time limit stops it; the caller gets
    control back on time. Exceptions raised by ``fn`` are re-raised here.
    """
    if time_limit is None:
        return True, fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(time_limit + GRACE_S)
    if th.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("value")
