"""The ``delay-to-target`` path: HSFL's h(P) * L with a time-shared band, exactly.

Takes a Problem whose objective is a :class:`splitopt.model.delay.DelayToTarget` (set by
:func:`splitopt.model.delay.minimize_delay_to_target`) and per-device constraints only. The
Problem's option table is read as the branch and bound's data (:mod:`splitopt.solving.hsfl_bb`):
each option is FL at a batch size, or SL at a candidate cut and a batch size; the constraints are
presolved into the allowed options (:func:`splitopt.solving.structure.analyse`'s per-device
presolve). The answer is per-device options and shares (SL devices all carry the SL group's
share beta_s: they use it in turn); :func:`splitopt.solving.solve` decodes and guards it.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.errors import InfeasibleError, InputError
from splitopt.model.delay import KIND, DelayToTarget
from splitopt.solving.hsfl_bb import (
    Config,
    DelayData,
    branch_and_bound,
    config_latency,
    least_penalty_config,
    penalty_of,
)

if TYPE_CHECKING:
    from splitopt.backends.base import Backend
    from splitopt.model.problem import Problem
    from splitopt.solving.structure import Structure


def structure(p: Problem) -> Structure:
    """The Structure of a delay-to-target Problem: its per-device rows presolved, else refused."""
    from splitopt.solving.structure import Structure, _classify, _shares_default

    n, o = p.n_devices, p.n_options
    st = Structure(KIND, DelayToTarget.reason, allowed=p.allowed.copy(),
                   beta_min=np.zeros((n, o)), tied=p.tied)
    if not _shares_default(p):
        raise InputError("shares", "bounded or fixed", "free shares for a delay-to-target "
                         "objective (the path allocates the band itself)")
    for c in p.constraints:
        _classify(p, c, st)
        if st.kind != KIND or st.coupling or np.any(st.beta_min > 0):
            raise InputError(f"constraint {c.name or '(unnamed)'}", "a row coupling devices or "
                             "shares", "per-device rows on the options (memory, batch, mode)",
                             "The delay-to-target path takes per-device option rows only.")
    if st.tied:
        raise InputError("tie_cuts", True, "per-device cuts for a delay-to-target objective")
    return st


def accepts(st: Structure) -> bool:
    """Exactly the delay-to-target objectives."""
    return st.kind == KIND


def run(p: Problem, st: Structure, be: Backend | None, deadline: float | None, gap: float,
        log: bool, warm: Any, progress: Any) -> Result:
    """Branch and bound over latency intervals (gap: its relative tolerance, at least 1e-9).

    ``warm``: a Result whose per-device ``options`` start the search when they are better than
    each device's least-penalty option (e.g. HSFL's BCD plan).
    """
    obj = p.objective
    assert isinstance(obj, DelayToTarget)
    data, fl_opt, sl_opt = problem_data(p, obj, st.allowed)
    start = least_penalty_config(data)
    if not math.isfinite(obj.rounds(penalty_of(data, start))):
        raise InfeasibleError("delay to target: the target is out of reach for every allowed "
                              "choice of modes and batch sizes (rounds h(P) is infinite even at "
                              "the least penalty); loosen the target or allow other batch sizes")
    if warm is not None and getattr(warm, "options", None) is not None:
        start = _better(data, obj, start, _config_of(p, st, warm.options))
    left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
    out = branch_and_bound(data, obj.rounds, start, [np.arange(data.a_sl.shape[0])],
                           tol=max(gap, 1e-9), time_limit=left)
    cfg: Config = out.extras["config"]
    _, beta = config_latency(data, cfg)
    rows = np.arange(p.n_devices)
    options = np.where(cfg.fl, fl_opt[cfg.batch], sl_opt[cfg.cut, cfg.batch])
    assert np.all(options >= 0) and np.all(st.allowed[rows, options])
    return Result(out.termination, path=KIND, backend="highs", objective=out.objective,
                  bound=out.bound, iterations=out.iterations, options=options, beta=beta,
                  extras={"milps": out.extras["milps"], "nodes": out.extras["nodes"]})


def _config_of(p: Problem, st: Structure, options: Any) -> Config | None:
    """The Config of per-device options (a warm start), or None when it is not usable."""
    opt = np.asarray(options, dtype=np.int64)
    o = p.options
    if opt.shape != (p.n_devices,) or np.any(opt < 0) or np.any(opt >= o.n_options) \
            or not np.all(st.allowed[np.arange(p.n_devices), opt]):
        return None
    full = np.asarray(p.table.masks).all(axis=1)
    cpos = np.cumsum(~full) - 1  # table row -> SL cut index (problem_data's order)
    fl = o.is_fl[opt]
    batch = np.searchsorted(np.asarray(p.batches), o.batch[opt])
    return Config(np.where(fl, 0, cpos[np.maximum(o.cut[opt], 0)]), fl, batch)


def _better(data: DelayData, obj: DelayToTarget, a: Config, b: Config | None) -> Config:
    """The better of two configurations by h(P) * L (``b`` may be None)."""
    def value(c: Config) -> float:
        r = obj.rounds(penalty_of(data, c))
        return r * config_latency(data, c)[0] if math.isfinite(r) else math.inf

    return a if b is None or value(a) <= value(b) else b


def problem_data(p: Problem, obj: DelayToTarget, allowed: np.ndarray
                 ) -> tuple[DelayData, np.ndarray, np.ndarray]:
    """The option table as the branch and bound's arrays, and the option of each choice.

    Returns ``(data, fl_opt (B,), sl_opt (C, B))``: the option index of FL at batch b and of SL
    at cut c and batch b (-1 where the Problem has none).
    """
    o = p.options
    n = p.n_devices
    batches = np.asarray(p.batches, dtype=float)
    full = np.asarray(p.table.masks).all(axis=1)
    sl_cuts = np.flatnonzero(~full)
    cpos = np.full(len(full), -1)
    cpos[sl_cuts] = np.arange(len(sl_cuts))
    nb, nc = len(batches), len(sl_cuts)
    bi = np.searchsorted(batches, o.batch)
    fl_opt, sl_opt = np.full(nb, -1), np.full((nc, nb), -1)
    a_fl, d_fl, p_fl = np.zeros((n, nb)), np.zeros((n, nb)), np.zeros((n, nb))
    ok_fl = np.zeros((n, nb), dtype=bool)
    a_sl, d_sl = np.zeros((nc, n, nb)), np.zeros((nc, n, nb))
    ok_sl = np.zeros((nc, n, nb), dtype=bool)
    p_sl, seen = np.zeros((n, nb)), np.zeros(nb, dtype=bool)
    for j in range(o.n_options):
        b = bi[j]
        if o.is_fl[j]:
            fl_opt[b] = j
            a_fl[:, b], d_fl[:, b], ok_fl[:, b] = obj.a[:, j], obj.d[:, j], allowed[:, j]
            p_fl[:, b] = obj.penalty[:, j]
            continue
        c = cpos[o.cut[j]]
        sl_opt[c, b] = j
        a_sl[c, :, b], d_sl[c, :, b], ok_sl[c, :, b] = obj.a[:, j], obj.d[:, j], allowed[:, j]
        if seen[b] and not np.allclose(p_sl[:, b], obj.penalty[:, j], rtol=1e-12, atol=0):
            raise InputError("penalty", "a penalty that depends on the SL cut",
                             "a penalty of each device's mode and batch size only "
                             "(model.delay.mode_batch_penalty)")
        p_sl[:, b], seen[b] = obj.penalty[:, j], True
    sets = p.table.sets()
    data = DelayData([sets[c] for c in sl_cuts], batches, a_fl, d_fl, ok_fl, a_sl, d_sl, ok_sl,
                     p_fl, p_sl, np.zeros(n))
    return data, fl_opt, sl_opt
