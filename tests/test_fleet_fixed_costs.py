"""The array shortcuts of the fleet path against the per-item code they replace.

``CutTable.chain`` builds the prefix masks directly (was: ``graph.chain_prefixes()`` as sets, a
mask per set); ``costs.compute_groups`` groups devices by FLOP/s in arrays when the graph has no
measured times (was: a (class, FLOP/s) key per device); ``Scenario.device_names`` reads the
name index. Each must give what the per-item code gives.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import costs
from splitopt.costs import CutTable, compute_groups
from splitopt.testing import random_dag, random_scenario


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 30), chain=st.booleans(),
       labels=st.booleans())
def test_chain_table_is_the_table_of_the_chain_prefixes(seed, n, chain, labels):
    g = random_dag(np.random.default_rng(seed), n, chain=chain)
    sets = g.chain_prefixes() + ([frozenset(g.names)] if labels else [])
    want = CutTable.from_sets(g, sets)
    got = CutTable.chain(g, labels_on_device=labels)
    assert got.masks.shape == want.masks.shape and (got.masks == want.masks).all()
    assert got.sets() == sets


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12), classes=st.integers(1, 4),
       in_arrays=st.booleans())
def test_compute_groups_join_devices_of_equal_compute_seconds(seed, n, classes, in_arrays):
    # (small fleets group with a dict, large ones with np.unique: both ways here)
    with mock.patch.object(costs, "_GROUP_IN_ARRAYS_FROM", 0 if in_arrays else 10**9):
        _check_compute_groups(seed, n, classes)


def _check_compute_groups(seed, n, classes):
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 6, chain=bool(seed % 2)), n, classes=classes)
    g = sc.graph
    if seed % 3 == 0:  # measured times for one class: the class then matters
        d0 = sc.devices[0]
        g = g.with_times(d0.cls, {name: (1e-3, 2e-3) for name in g.names[:3]})
        sc = sc.replace(graph=g)
        assert len(g.timed_indices)
    which, reps = compute_groups(g, sc.devices)
    assert len(which) == n and len(reps) == len(set(which.tolist()))
    secs = [g.train_seconds(d.cls, d.flops) for d in sc.devices]
    for k in range(n):
        rep = reps[which[k]]
        assert np.array_equal(g.train_seconds(rep.cls, rep.flops), secs[k])
    # devices of different seconds are never joined; equal ones are when nothing is measured
    for i in range(n):
        for j in range(n):
            if which[i] == which[j]:
                assert np.array_equal(secs[i], secs[j])
            elif not len(g.timed_indices):
                assert sc.devices[i].flops != sc.devices[j].flops


def test_device_names_are_the_fleet_order():
    rng = np.random.default_rng(0)
    sc = random_scenario(rng, random_dag(rng, 4, chain=True), 7)
    assert sc.device_names() == [d.name for d in sc.devices]
    names = sc.device_names()
    names.append("x")  # a fresh list each time
    assert sc.device_names() == [d.name for d in sc.devices]
