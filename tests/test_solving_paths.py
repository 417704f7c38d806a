"""The exact paths as one table (issue 16 step 1): auto order, explicit paths, adding a path."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

from splitopt import InputError, Problem
from splitopt.solving import paths, solve
from splitopt.solving.bisection import bisect_minmax
from splitopt.solving.structure import analyse
from splitopt.testing import random_dag, random_scenario


def _problem(serving: str = "dedicated", memory: bool = False) -> Problem:
    rng = np.random.default_rng(3)
    sc = random_scenario(rng, random_dag(rng, 6), 4, serving=serving)
    p = Problem(sc)
    p.minimize(p.round_latency())
    if memory:  # one row over all devices: couples them
        p.add(sum(p.memory(k) for k in range(p.n_devices)) <= 1e30)
    return p


@pytest.mark.parametrize(("serving", "memory", "auto"), [
    ("dedicated", False, "bisection"), ("shared", False, "server-share"),
    ("dedicated", True, "coupled")])
def test_auto_takes_the_first_path_that_accepts(serving, memory, auto):
    p = _problem(serving, memory)
    st = analyse(p)
    assert paths.choose_path(st) == auto
    accepting = [n for n, path in paths.PATHS.items() if path.accepts(st)]
    assert accepting[0] == auto and accepting[-1] == "generic"
    assert solve(p).path == auto


def test_a_path_that_does_not_accept_is_refused_naming_the_one_that_does():
    p = _problem("shared")
    with pytest.raises(InputError, match="'server-share' or 'generic' for this problem"):
        solve(p, path="bisection")
    names = ["auto", "bisection", "server-share", "separable", "coupled"]
    assert list(paths.PATHS)[:4] == names[1:] and list(paths.PATHS)[-1] == "generic"
    with pytest.raises(InputError, match=re.escape(f"one of {['auto', *paths.PATHS]}")):
        solve(p, path="nope")


def test_adding_a_path_is_one_module_and_one_entry(monkeypatch):
    """A new module with accepts/run, one entry before generic: auto picks it, its name shows."""
    calls = []
    mod = types.ModuleType("splitopt_test_paths.mine")
    mod.accepts = lambda st: st.kind == "minmax" and not st.has_phi and not st.coupling

    def run(p, st, be, deadline, gap, log, warm, progress):
        calls.append(be)
        return bisect_minmax(st.A, st.D, st.beta_min, st.allowed, deadline=deadline)

    mod.run = run
    monkeypatch.setitem(sys.modules, "splitopt_test_paths.mine", mod)
    table = {"mine": paths.Path("splitopt_test_paths.mine", solver=False), **paths.PATHS}
    monkeypatch.setattr(paths, "PATHS", table)
    import splitopt.solving as solving

    monkeypatch.setattr(solving, "PATHS", table)
    p = _problem()
    ref = solve(p, path="bisection")
    res = solve(p)
    assert calls == [None]  # solver=False: no backend looked up
    assert res.path == "mine" and res.backend == "none" and res.termination == "optimal"
    assert res.objective == ref.objective and res.bound == ref.bound
    assert np.array_equal(res.options, ref.options)
