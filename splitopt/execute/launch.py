"""Starting a multi-process run on this machine: one call, one process per participant.

:func:`launch` spawns the server and one process per device (``torch.multiprocessing`` spawn),
hands them the data and the captured splits once, optionally inside a network namespace whose
loopback shapes each device's link (:mod:`splitopt.execute.links`), waits for them, and returns
the server's result. A device process that died in a way the server handled (a fault, a crash, a
``kill -9``: the server dropped it and finished without it) does not fail the run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from splitopt.errors import InputError, SplitoptError
from splitopt.execute.distributed import LINKS, free_port, result_of, run_rank
from splitopt.execute.job import Job
from splitopt.execute.runner import RunResult
from splitopt.execute.templates import split_templates
from splitopt.system import link_of


def _spawned(rank: int, job: Job, world: int, kwargs: dict[str, Any]) -> None:
    run_rank(job, rank, world, **kwargs)


def resolve_links(links: str) -> str:
    """``htb`` or ``paced`` for a requested ``auto`` / ``htb`` / ``paced``."""
    from splitopt.execute.links import htb_unavailable

    if links not in LINKS:
        raise InputError("links", links, f"one of {list(LINKS)}")
    if links == "paced":
        return links
    why = htb_unavailable()
    if why is None:
        return "htb"
    if links == "htb":
        raise InputError("links", links, f"'auto' or 'paced' here (kernel shaping: {why})")
    return "paced"


def launch(job: Job, *, resume: str | Path | None = None, threads: int = 1,
           timeout_s: float = 600.0, links: str = "paced",
           on_start: Callable[[dict[str, int]], None] | None = None,
           trace: Any = None, adaptive: bool = True) -> RunResult:
    """Run ``job`` with the server and one process per device on this machine; one call.

    ``links``: ``auto``, ``htb`` (kernel-shaped links in a namespace of the run) or ``paced``.
    ``trace``: the links follow it on the run's measured clock; ``adaptive`` re-plans between
    rounds and re-splits in place (:mod:`splitopt.execute.adaptive`), else the plan is kept.
    ``on_start`` is called with ``{participant: pid}`` once every process has started.
    """
    from splitopt.execute.links import DEVICE_PORT0, SERVER_PORT, Namespace

    kind = resolve_links(links)
    sides: list[frozenset[str]] = []
    if trace is not None:
        from splitopt.execute.adaptive import Adaptation

        # refuses a bad mode or trace before starting; its candidate cuts are captured once here
        sides = Adaptation(job, trace, adaptive=adaptive).candidate_sides()
    world = len(job.devices()) + 1
    ctx = torch.multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="splitopt-run-") as tmp, contextlib.ExitStack() as st:
        out = str(Path(tmp) / "result.pt")
        kwargs: dict[str, Any] = {
            "out": out, "resume": None if resume is None else str(resume), "threads": threads,
            "timeout_s": timeout_s, "prepared": (job.data(), split_templates(job, sides)),
            "links": kind, "trace": trace, "adaptive": adaptive}
        enter: Any = contextlib.nullcontext()
        if kind == "htb":
            ns = st.enter_context(Namespace())
            sc = job.scenario
            ns.shape({DEVICE_PORT0 + k + 1: (ln.up_bps, ln.dn_bps) for k, ln in enumerate(
                link_of(sc.device(d.device), sc.channel, d.bandwidth_share)
                for d in job.devices())})
            kwargs.update(init_method=f"tcp://127.0.0.1:{SERVER_PORT - 1}",
                          server_port=SERVER_PORT, device_port0=DEVICE_PORT0)
            enter = ns.entered()
        else:
            kwargs["init_method"] = f"tcp://127.0.0.1:{free_port()}"
        procs = [ctx.Process(target=_spawned, args=(r, job, world, kwargs)) for r in range(world)]
        try:
            with enter, _quiet_c10d():
                for p in procs:
                    p.start()
            if on_start is not None:
                names = ["server", *(d.device for d in job.devices())]
                on_start({n: int(p.pid or 0) for n, p in zip(names, procs, strict=True)})
            _join(procs, timeout_s)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
        return _outcome(procs, out, job)


def _join(procs: list[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))


def _outcome(procs: list[Any], out: str, job: Job) -> RunResult:
    """The server's result; an error when a process failed in a way the server did not handle."""
    names = ["server", *(d.device for d in job.devices())]
    ok = procs[0].exitcode == 0 and Path(out).is_file()
    result = result_of(torch.load(out, weights_only=True)) if ok else None
    # a device the server dropped may have exited any way (fault, crash, kill -9)
    dropped = set(result.failed) if result is not None else set()
    bad = [(n, p.exitcode) for n, p in zip(names, procs, strict=True)
           if p.exitcode != 0 and n not in dropped]
    if result is None or bad:
        raise SplitoptError(f"multi-process run failed: processes {bad} exited badly (exit code "
                            "None: hung and killed; negative: killed by that signal)")
    return result


@contextlib.contextmanager
def _quiet_c10d() -> Any:
    """Start children with torch's C++ log at ERROR, unless the user set its level.

    Inside a network namespace every rendezvous warns that the client's hostname cannot be looked
    up, which buries the run's own output.
    """
    if "TORCH_CPP_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    try:
        yield
    finally:
        del os.environ["TORCH_CPP_LOG_LEVEL"]
