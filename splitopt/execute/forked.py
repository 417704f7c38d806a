"""A function run in a forked child process that sends its JSON answer back through a pipe.

Calibration measures what a run's separate processes do (device parts computed apart from the
server, device link ends apart from the server's), so it forks. The child leaves by ``os._exit``:
never the parent's exit handlers (one of them deletes the run's network namespace).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
from collections.abc import Callable
from typing import Any


class Forked:
    """``fn()`` started in a forked child; :meth:`join` reads its answer."""

    def __init__(self, fn: Callable[[], Any]):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                os.write(write_fd, json.dumps(fn()).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid, self._read = pid, read_fd
        self.status: int | None = None
        self.answered = False

    def kill(self) -> None:
        """Stop the child (one stuck on its end must not hang the parent)."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)

    def join(self, timeout_s: float | None = None) -> Any:
        """The child's answer, or None when it failed or sent nothing within ``timeout_s``.

        A child that sent nothing is killed; ``status`` and ``answered`` say what happened.
        """
        with os.fdopen(self._read, "rb") as fh:
            ready = timeout_s is None or select.select([fh], [], [], timeout_s)[0]
            raw = fh.read() if ready else b""
        self.answered = bool(raw)
        if not raw:
            self.kill()
        _, self.status = os.waitpid(self.pid, 0)
        return json.loads(raw) if raw and self.status == 0 else None
