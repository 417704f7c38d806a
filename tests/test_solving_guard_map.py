"""The guard maps a plan back onto the Problem's options in arrays (issue 15): it must give what a
plain per-device lookup gives, on random problems with modes, selection and several batches."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import Problem
from splitopt.plan import Plan
from splitopt.solving import decode
from splitopt.solving.verify_builder import plan_options
from splitopt.testing import random_dag, random_scenario


def reference(problem, plan) -> tuple[np.ndarray, bool, bool]:
    """Per device: the first allowed option whose (set, batch, mode) the plan names (scalar)."""
    o, sets = problem.options, problem.table.sets()
    by_name = {d.device: d for d in plan.devices}
    out = np.full(problem.n_devices, -1)
    covered, allowed = True, True
    for k, dev in enumerate(problem.scenario.devices):
        d = by_name.get(dev.name)
        if d is None:
            covered = False
            continue
        batch = problem.scenario.training.batch_size if d.batch_size is None else d.batch_size
        found = [j for j in range(o.n_options)
                 if (o.cut[j] < 0) == (not d.selected) and (not d.selected or (
                     int(o.batch[j]) == batch and bool(o.is_fl[j]) == (d.mode == "fl")
                     and (d.mode == "fl" or sets[o.cut[j]] == d.device_side)))]
        ok = [j for j in found if problem.allowed[k, j]]
        if ok:
            out[k] = ok[0]
        else:
            allowed = False
    return out, covered, allowed


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), modes=st.booleans(), selection=st.booleans(),
       drop=st.booleans(), forbid=st.booleans())
def test_plan_options_equals_a_per_device_lookup(seed, modes, selection, drop, forbid):
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, int(rng.integers(3, 7))), int(rng.integers(2, 7)))
    p = Problem(sc, batch=[16, 32], modes=modes, selection=selection)
    n, o = p.n_devices, p.n_options
    option = rng.integers(0, o, n)
    plan = decode(p, option, np.full(n, 1.0 / n), np.full(n, 1.0 / n), "test", "unknown",
                  None, None)
    if forbid:  # the problem now excludes one device's chosen option
        k = int(rng.integers(n))
        p.allowed[k, option[k]] = False
    if drop:  # one device missing from the plan
        plan = Plan(plan.devices[1:])
    got, checks = plan_options(p, plan)
    want, covered, allowed = reference(p, plan)
    assert np.array_equal(got, want)
    by_name = {c.name: c.passed for c in checks}
    assert by_name["plan covers every device"] == covered
    assert by_name["plan uses allowed options"] == allowed
    if not forbid and not drop:  # every device maps to an option that prices like its own
        assert np.all(got >= 0)
        r = np.arange(n)
        assert np.allclose(p.options.a_dev[r, got], p.options.a_dev[r, option])
