"""The guard's vectorised re-pricer (splitopt.solving.reprice) on large fleets.

Its agreement with the scalar ``evaluate()`` on random plans is checked beside the option-table
pricer in tests/test_planner.py::test_vectorised_pricer_equals_evaluate; here: the guard uses it
above ``SCALAR_UP_TO`` devices and still catches an option table that prices wrongly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from splitopt.model import Problem
from splitopt.solving import reprice as rp
from splitopt.testing import random_dag, random_scenario


def test_large_fleet_guard_reprices_in_arrays_and_catches_a_wrong_table(monkeypatch):
    rng = np.random.default_rng(3)
    sc = random_scenario(rng, random_dag(rng, 6, chain=True), 6)
    monkeypatch.setattr(rp, "SCALAR_UP_TO", 2)  # 6 devices count as a large fleet here
    p = Problem(sc, server_share=False)
    p.minimize(p.round_latency())
    res = p.solve()
    assert res.termination == "optimal" and res.verification.passed
    assert any(c.startswith("re-pricing") for c in res.verification.to_dict()["checks"])
    # an option table that under-prices server compute by half must not be labelled optimal
    q = Problem(sc, server_share=False)
    q.options = dataclasses.replace(q.options, a_srv=q.options.a_srv * 0.5)
    q.minimize(q.round_latency())
    bad = q.solve()
    assert bad.termination == "unverified" and not bad.verification.passed
    assert "re-priced" in bad.verification.summary()


def test_reprice_fields_are_checked_and_skip_what_is_not_asked():
    import pytest

    from splitopt.errors import InputError

    rng = np.random.default_rng(0)
    sc = random_scenario(rng, random_dag(rng, 5, chain=True), 4, serving="dedicated")
    p = Problem(sc)
    p.minimize(p.round_latency())
    plan = p.solve().plan
    full, short = rp.reprice(sc, plan), rp.reprice(sc, plan, ("round_s",))
    assert short.round_latency_s == full.round_latency_s
    assert "energy_j" not in short.values and "energy_j" in full.values
    with pytest.raises(InputError, match="energy"):
        rp.reprice(sc, plan, ("energy",))
