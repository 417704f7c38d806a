"""HiGHS through highspy: the default backend (MIT licence; the fastest MILP solver measured here).

The whole CSR matrix goes to ``Highs.passModel`` at once (docs/benchmarks.md: 0.62 s for a
50k-binary MILP against 1.4 s through the scalar API). The solve runs in HiGHS's own thread
(``startSolve``); the wall clock is watched here and ``cancelSolve`` stops a solve that overruns
its ``time_limit`` option.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from splitopt.backends.base import (
    ERROR,
    INFEASIBLE,
    OPTIMAL,
    TIME_LIMIT,
    UNBOUNDED,
    Backend,
    answer,
)
from splitopt.backends.results import Result
from splitopt.compile.program import Program
from splitopt.errors import SolverError

#: HiGHS's own limit and the cancel come at this fraction of the time left; the rest is for
#: HiGHS to answer the cancel (it checks only between iterations) and for the caller's decoding
STOP_EARLY = 0.8
GRACE_S = 0.05  # beyond the limit, a cancelled HiGHS gets this long before it is left behind


_BANNER_SHOWN = False


def new_highs() -> Any:
    """A silent ``highspy.Highs``.

    The first one prints a banner on stdout; it is swallowed so that ``--json`` output stays
    parseable.
    """
    global _BANNER_SHOWN
    import highspy

    if _BANNER_SHOWN:
        return highspy.Highs()
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SHOWN = True
    return h


def silence_banner() -> None:
    """Swallow HiGHS's one-time banner now, before cvxpy or pyomo make the first HiGHS object."""
    if not _BANNER_SHOWN:
        new_highs()


def load_model(prog: Program, *, names: bool = False, threads: int = 1) -> Any:
    """A ``highspy.Highs`` holding the program (linear rows only)."""
    import highspy

    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", threads)
    A = prog.A.tocsc()
    inf = h.getInfinity()
    integ = prog.integrality.astype(np.int32)
    st = h.passModel(prog.n_cols, prog.n_rows, int(A.nnz), 1, 1, float(prog.offset),
                     np.ascontiguousarray(prog.c, dtype=float), _clip(prog.col_lb, inf),
                     _clip(prog.col_ub, inf), _clip(prog.row_lb, inf), _clip(prog.row_ub, inf),
                     A.indptr.astype(np.int32, copy=False),  # scipy's CSC is int32 already
                     A.indices.astype(np.int32, copy=False), A.data.astype(float, copy=False),
                     integ)
    if st == highspy.HighsStatus.kError:
        raise SolverError(f"HiGHS rejected the program ({prog.summary()}): {st}")
    if names:
        for j, n in enumerate(file_safe(prog.col_names)):
            h.passColName(j, n)
        for i, n in enumerate(file_safe(prog.row_names)):
            h.passRowName(i, n)
    return h


def file_safe(names: list[str]) -> list[str]:
    """Names the LP/MPS writers accept (letters, digits, _), made unique."""
    seen: set[str] = set()
    out = []
    for n in names:
        base = "".join(ch if ch.isalnum() else "_" for ch in n).strip("_") or "x"
        name, i = base, 1
        while name in seen:
            name, i = f"{base}_{i}", i + 1
        seen.add(name)
        out.append(name)
    return out


def _clip(a: np.ndarray, inf: float) -> np.ndarray:
    return np.clip(np.asarray(a, dtype=float), -inf, inf)


class HighsBackend(Backend):
    """HiGHS (highspy): LP and MILP, time limits by wall clock, warm starts (setSolution)."""

    name: ClassVar[str] = "highs"
    requires: ClassVar[tuple[str, ...]] = ("highspy",)
    capabilities: ClassVar[frozenset[str]] = frozenset({"lp", "mip", "time_limit", "warm_start"})
    purpose: ClassVar[str] = "default: fastest MILP here; CSR passed at once; warm starts"

    def __init__(self, threads: int = 1, full_start: bool = False,
                 options: Mapping[str, Any] | None = None):
        self.threads = int(threads)
        self.full_start = full_start  # warm starts are whole points (continuous columns too)
        self.options = dict(options or {})  # HiGHS options set last (a caller's own tuning)

    def solve_program(self, prog: Program, *, time_limit: float | None = None,
                      warm_start: np.ndarray | None = None, log: bool = False,
                      mip_gap: float = 1e-9) -> Result:
        """Solve the linear part of ``prog`` (cones must have been approximated)."""
        if not prog.is_linear:
            raise SolverError("HiGHS takes linear programs; apply OuterApproximation first")
        t0 = time.perf_counter()
        # HiGHS's MIP presolve can map a solution back wrongly (ERGO-Code/HiGHS#2439, #2900,
        # #3043: "optimal" with an objective far from its own bound, or an objective of 0 for a
        # point worth 3.1), and at a 1e-9 tolerance it can reject its own optimum ("Solve
        # error"): such answers are solved again without presolve, then at HiGHS's default
        # tolerance, and the first consistent answer is kept
        res = None
        for presolve, tol in ((True, 1e-9), (False, 1e-9), (True, 1e-7)):
            left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0),
                                                       1e-3)
            again = self._solve_once(prog, left, warm_start, log, mip_gap, presolve, tol)
            if res is not None:
                again = answer(again.termination, again.x, again.objective, again.bound,
                                      time.perf_counter() - t0, res.log + again.log,
                                      f"{again.message} (retried: presolve {presolve}, "
                                      f"tolerance {tol:g})")
            res = again
            if not prog.is_mip or res.termination not in (OPTIMAL, ERROR) or (
                    res.termination == OPTIMAL and _consistent(prog, res, mip_gap)):
                break
            if time_limit is not None and time.perf_counter() - t0 >= time_limit:
                break
        assert res is not None
        return res

    def _solve_once(self, prog: Program, time_limit: float | None,
                    warm_start: np.ndarray | None, log: bool, mip_gap: float,
                    presolve: bool, tol: float) -> Result:
        t0 = time.perf_counter()
        end = None if time_limit is None else t0 + time_limit
        h = load_model(prog, threads=self.threads)
        h.setOptionValue("mip_rel_gap", mip_gap)
        h.setOptionValue("mip_abs_gap", 0.0)  # HiGHS's 1e-6 is 0.1% of a 1e-3 J objective
        h.setOptionValue("mip_feasibility_tolerance", tol)
        h.setOptionValue("primal_feasibility_tolerance", tol)
        # restarts after root presolve returned wrong "optimal" answers on the outer-approximation
        # MILPs (a bound above a feasible point's value; tests/test_solving_property.py)
        h.setOptionValue("mip_allow_restart", False)
        if not presolve:
            h.setOptionValue("presolve", "off")
        for key, val in self.options.items():
            h.setOptionValue(key, val)
        logfile = None
        if log:
            fd, logfile = tempfile.mkstemp(suffix=".log")
            os.close(fd)
            h.setOptionValue("log_file", logfile)
            h.setOptionValue("output_flag", True)
            h.setOptionValue("log_to_console", False)
        if end is not None:  # loading the model counted against the limit
            time_limit = max(end - time.perf_counter(), 1e-3)
            h.setOptionValue("time_limit", max(STOP_EARLY * time_limit, 1e-3))
        if warm_start is not None and prog.is_mip:
            # a full point (every column) is offered as it is; otherwise its integer columns
            # (HiGHS completes the rest with an LP)
            full = self.full_start
            idx = (np.arange(prog.n_cols) if full else np.flatnonzero(prog.integrality))
            vals = np.asarray(warm_start, dtype=float)[idx]
            h.setSolution(len(idx), idx.astype(np.int32), vals if full else np.round(vals))
        try:
            cancelled = _run_watched(h, time_limit)
            if not cancelled and _scheduler_refused(h):
                left = None if end is None else max(end - time.perf_counter(), 1e-3)
                cancelled = _run_watched(h, left)
        except _Overran:
            return answer(TIME_LIMIT, None, None, None, time.perf_counter() - t0,
                                 message="wall clock: HiGHS did not stop when cancelled")
        res = _result(h, prog, time.perf_counter() - t0, cancelled)
        if logfile:
            with open(logfile) as f:
                text = f.read()
            os.unlink(logfile)
            res = answer(res.termination, res.x, res.objective, res.bound, res.solve_s, text,
                                res.message)
        return res


def _scheduler_refused(h: Any) -> bool:
    """Whether HiGHS refused to start because its thread scheduler runs another thread count.

    HiGHS keeps one scheduler per process, sized by the first solve that starts it; another HiGHS
    user in the process (cvxpy, pyomo, a raw highspy model) with another ``threads`` makes every
    later solve of ours stop at once with status "error" and model status "not set" ("the
    scheduler has already been initialized to use 2 threads"). Then the scheduler is restarted
    for our count (True: run again), unless a solve that did not answer its cancel may still use it.
    """
    import highspy

    if h.getModelStatus() != highspy.HighsModelStatus.kNotset:
        return False
    if any(thread.is_alive() for _, thread in _LEFT_BEHIND):
        return False
    highspy.Highs.resetGlobalScheduler(True)
    return True


def _run_watched(h: Any, time_limit: float | None) -> bool:
    """Run HiGHS in a thread of ours; cancel it if the wall clock passes the limit.

    Not ``Highs.startSolve``: highspy guards it with class-level locks, so one solve that ignores
    its cancel would block every later one in the process. Returns True if cancelled.
    """
    if time_limit is None:
        h.run()
        return False
    h.HandleUserInterrupt = True
    thread = threading.Thread(target=h.run, daemon=True)
    thread.start()
    thread.join(STOP_EARLY * float(time_limit))
    if thread.is_alive():
        h.cancelSolve()
        # HiGHS answers a cancel only between iterations (0.8 s late on a 1000-device MILP):
        # the rest of the limit, and a little grace, is all it gets
        thread.join(max((1 - STOP_EARLY) * float(time_limit), 0.0) + GRACE_S)
        if thread.is_alive():  # HiGHS did not answer the cancel: stop waiting for it
            _LEFT_BEHIND.append((h, thread))
            raise _Overran
        return True
    return False


#: HiGHS runs that did not answer a cancel in time: joined at exit (a C++ thread still running
#: when the interpreter ends aborts the process: "terminate called without an active exception")
_LEFT_BEHIND: list[tuple[Any, threading.Thread]] = []


@atexit.register
def _join_left_behind() -> None:
    for h, thread in _LEFT_BEHIND:
        h.cancelSolve()
        thread.join()


class _Overran(Exception):
    """HiGHS kept running after cancelSolve; the call returns without its answer."""


def _consistent(prog: Program, res: Result, mip_gap: float) -> bool:
    """True for an optimal MIP answer whose objective is its point's value, near its bound."""
    if res.objective is None or res.x is None:
        return False
    scale = max(abs(res.objective), 1.0)
    if abs(prog.objective(res.x) - res.objective) > 1e-7 * scale:
        return False
    return res.bound is None or res.objective - res.bound <= max(mip_gap, 1e-6) * scale


def _result(h: Any, prog: Program, seconds: float, cancelled: bool) -> Result:
    import highspy

    ms = h.getModelStatus()
    M = highspy.HighsModelStatus
    info = h.getInfo()
    has_x = info.primal_solution_status == 2  # feasible
    x = np.array(h.getSolution().col_value) if has_x else None
    obj = float(info.objective_function_value) if has_x else None
    bound = float(info.mip_dual_bound) if prog.is_mip else obj
    if ms == M.kOptimal:
        term = OPTIMAL
        bound = obj if not prog.is_mip else bound
    elif ms in (M.kTimeLimit, M.kInterrupt) or cancelled:
        term = TIME_LIMIT
    elif ms == M.kInfeasible:
        term, bound = INFEASIBLE, None
    elif ms in (M.kUnbounded, M.kUnboundedOrInfeasible):
        term = UNBOUNDED
    else:
        term = ERROR
    if bound is not None and not np.isfinite(bound):
        bound = None
    res = answer(term, x, obj, bound, seconds, message=h.modelStatusToString(ms))
    if term == OPTIMAL and not prog.is_mip and info.dual_solution_status == 2:
        # an optimal LP's reduced costs (cut generation fixes options by them)
        from dataclasses import replace

        res = replace(res, extras={"col_dual": np.array(h.getSolution().col_dual)})
    return res
