"""partition()'s verified-answer guard: it re-prices the plan's names from the graph, not from
what the max-flow was given, so a wrong network, capacity or mask cannot be labelled optimal."""

from dataclasses import replace

import numpy as np
import pytest

import splitopt.partitioning as part
from splitopt import Device, Link, Server, Training, device_phases
from splitopt.partitioning.guard import reference_phases, split_check, verify_cut
from splitopt.testing import random_dag

DEV = Device(name="d", flops=3e9, spectral_eff_up=2, spectral_eff_dn=1, power_compute_w=2,
             power_tx_w=0.5, workspace_bytes=7.0)
SRV = Server(flops=4e12)
LINK = Link(3e6, 9e6)


@pytest.fixture(scope="module")
def graph():
    return random_dag(np.random.default_rng(11), 14, n_inputs=2)


def test_a_solver_priced_on_wrong_costs_is_not_called_optimal(graph, monkeypatch):
    honest = part.partition(graph, DEV, SRV, LINK, batch=3)
    assert honest.status == "optimal" and honest.meta["verification"]["passed"]

    real = part.iteration_problem

    def halved_tensors(*args, **kwargs):  # the max-flow sees tensors at half their price
        prob = real(*args, **kwargs)
        return replace(prob, tensor=prob.tensor / 2)

    monkeypatch.setattr(part, "iteration_problem", halved_tensors)
    lied = part.partition(graph, DEV, SRV, LINK, batch=3)
    assert lied.status == "unverified"
    failed = [c["name"] for c in lied.meta["verification"]["failed"]]
    assert failed == ["repriced objective"]
    # the phases shown are the guard's own pricing of the plan, not the solver's objective
    assert lied.meta["phases"]["iteration_s"] != pytest.approx(lied.objective, rel=1e-9)


def test_a_mask_that_is_not_a_split_fails_the_guard(graph):
    bad = np.zeros(len(graph), dtype=bool)
    bad[-2] = True  # a node without its predecessors and without the inputs
    check, _, _ = verify_cut(graph, graph.names_of(bad), DEV, SRV, LINK, batch=1,
                             labels_on_device=False, objective=1.0, bound=1.0, status="optimal")
    failed = {c.name: c.detail for c in check.failed}  # not priced either: it is no plan
    assert set(failed) == {"valid split", "repriced objective"}
    assert "device-side set" in failed["valid split"]
    unknown, _, _ = verify_cut(graph, frozenset({"nope"}), DEV, SRV, LINK, batch=1,
                               labels_on_device=False, objective=1.0, bound=1.0, status="optimal")
    assert "nope" in {c.name: c.detail for c in unknown.failed}["valid split"]


@pytest.mark.parametrize("labels_on_device", [False, True])
def test_guard_prices_as_the_scalar_reference_on_every_closed_set(labels_on_device):
    from splitopt.partitioning.brute import closed_sets
    from splitopt.partitioning.problem import iteration_problem

    rng = np.random.default_rng(5)
    for _ in range(6):
        g = random_dag(rng, int(rng.integers(1, 7)), n_inputs=int(rng.integers(1, 3)))
        b = int(rng.integers(1, 6))
        tr = Training(batch_size=b, local_iters=1, aggregate=False)
        for mask in closed_sets(iteration_problem(g, DEV, SRV, LINK, labels="device")):
            names = g.names_of(mask)
            ok = split_check(g, mask, labels_on_device).passed
            assert ok == (labels_on_device or g.output not in names)
            ph, boundary = reference_phases(g, mask, DEV, SRV, LINK, b)
            ref = device_phases(g, names, DEV, SRV, LINK, tr, batch=b)
            assert ph.to_dict() == pytest.approx(ref.to_dict(), rel=1e-12, abs=1e-300)
            assert g.names_of(boundary) == frozenset(g.boundary(names))
