"""Limits: the ranges of limits.py are wide enough for any real input and narrow enough that no
price overflows (issue 12, "Limits" and "Overflow").

Every figure at either end of its range, in any combination, prices a plan to finite numbers by
the reference model, by the vectorised pricer and by max-flow partitioning; the fleet size is
bounded (a huge ``count`` is refused at once, before any device is built).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _hostile import GRAPH, SCENARIO_DOC, edited, one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import limits
from splitopt.costs import CutTable, round_terms
from splitopt.graph import LayerGraph, Node
from splitopt.plan import DevicePlan, Plan, evaluate
from splitopt.scenario import Scenario
from splitopt.system import Channel, Device, Server, Training, link_of


# ---------------------------------------------------------------------------- fleet size
@settings(max_examples=200, deadline=None)
@given(count=st.integers(-3, 12) | st.integers(limits.MAX_DEVICES - 2, 10**20)
       | st.floats(allow_nan=True) | st.sampled_from([1.5e16, 1e8, 2.0, True, "3", None]))
def test_count_loads_exactly_when_it_is_an_integer_within_the_bound(count):
    """The property test that died with MemoryError: counts now stop at the bound, by name."""
    doc = edited(SCENARIO_DOC, "devices.0.count", count)
    others = 1  # devices[1] is one device
    fits = (isinstance(count, int) and not isinstance(count, bool)
            and 1 <= count <= limits.MAX_DEVICES - others)
    if count is None:  # pydantic: an explicit null is not an integer either
        fits = False
    try:
        sc = Scenario.from_dict(doc, graph=GRAPH)
    except Exception as err:  # noqa: BLE001 - the check is that it is our one-line error
        assert not fits, err
        one_line_error(err, r"devices\[(0)?\]\.count")
        return
    assert fits and sc.n_devices == count + others


def test_count_far_over_the_bound_is_refused_before_building_devices():
    doc = edited(SCENARIO_DOC, "devices.0.count", 100_000_000)
    with pytest.raises(Exception) as info:
        Scenario.from_dict(doc, graph=GRAPH)
    one_line_error(info.value, r"devices\[0\]\.count")
    assert "an integer in [1, 100000] (devices)" in str(info.value)


# ---------------------------------------------------------------------------- range ends
def _end(rng: limits.Range, draw) -> float:
    lo = rng.lo if not rng.lo_open else max(rng.lo, 1e-300)
    return draw(st.sampled_from([lo, rng.hi]))


@st.composite
def extreme_worlds(draw):
    """A graph, a device, server, channel and training with every figure at a range end."""
    def node_figs():
        return dict(fwd_flops=_end(limits.NODE_FLOPS, draw) / 2,  # default bwd = 2 x fwd
                    out_bytes=_end(limits.NODE_BYTES, draw),
                    param_bytes=_end(limits.PARAM_BYTES, draw))

    n = draw(st.integers(1, 4))
    nodes = [Node("x", 0, 0, _end(limits.NODE_BYTES, draw), 0, "input")]
    nodes += [Node(f"n{i}", **node_figs()) for i in range(n)]
    nodes.append(Node("y", **node_figs(), kind="output"))
    names = [v.name for v in nodes]
    graph = LayerGraph(nodes, list(zip(names, names[1:])), ["x"], "y")
    device = Device(name="d", flops=_end(limits.FLOP_RATE, draw),
                    memory_bytes=_end(limits.MEMORY, draw),
                    power_compute_w=_end(limits.POWER, draw), power_tx_w=_end(limits.POWER, draw),
                    spectral_eff_up=_end(limits.SPECTRAL_EFF, draw),
                    spectral_eff_dn=_end(limits.SPECTRAL_EFF, draw),
                    workspace_bytes=_end(limits.WORKSPACE, draw))
    server = Server(flops=_end(limits.FLOP_RATE, draw))
    channel = Channel(bandwidth_up_hz=_end(limits.BANDWIDTH, draw),
                      bandwidth_dn_hz=_end(limits.BANDWIDTH, draw))
    training = Training(batch_size=int(_end(limits.BATCH, draw)),
                        local_iters=int(_end(limits.LOCAL_ITERS, draw)),
                        rounds=int(_end(limits.ROUNDS, draw)),
                        optimizer_copies=draw(st.sampled_from([0, 4])),
                        labels=draw(st.sampled_from(["server", "device"])),
                        aggregate=draw(st.booleans()))
    share = draw(st.sampled_from([1e-6, 0.5, 1.0]))
    return graph, device, server, channel, training, share


def _finite(*xs) -> bool:
    return all(math.isfinite(float(x)) for x in xs)


@settings(max_examples=120, deadline=None)
@given(world=extreme_worlds(), cut=st.integers(0, 10))
def test_every_range_end_prices_to_finite_numbers(world, cut):
    graph, device, server, channel, training, share = world
    sc = Scenario(graph, [device], server, channel, training)
    prefixes = graph.chain_prefixes()
    side = prefixes[cut % len(prefixes)]
    costs = evaluate(sc, Plan((DevicePlan("d", side, share, 1.0),), rounds=training.rounds))
    ph = costs.per_device["d"]
    assert _finite(costs.round_latency_s, costs.total_delay_s, ph.memory_bytes, ph.energy_j,
                   ph.comm_bytes, ph.round_s)
    terms = round_terms([device], server, channel, training, CutTable.chain(graph))
    assert np.isfinite(terms.round_time(share)).all() and np.isfinite(terms.mem).all()


@settings(max_examples=60, deadline=None)
@given(world=extreme_worlds())
def test_every_range_end_partitions_without_overflow(world):
    """The s-t network of max-flow partitioning (ZeroDivisionError at out_bytes 1e308 before)."""
    from splitopt.partitioning import partition

    graph, device, server, channel, training, share = world
    plan = partition(graph, device, server, link_of(device, channel, share),
                     batch=training.batch_size)
    assert plan.objective is not None and math.isfinite(plan.objective)
    assert "x" in plan.devices[0].device_side


# ---------------------------------------------------------------------------- the issue's cases
@pytest.mark.parametrize("path,value,field", [
    ("channel.bandwidth_up_hz", 1e-200, r"channel\.bandwidth_up_hz"),
    ("training.batch_size", 10**30, r"training\.batch_size"),
    ("devices.1.memory_bytes", 1e-200, r"devices\[1\]\.memory_bytes"),
])
def test_issue_overflow_cases_in_scenarios(path, value, field):
    with pytest.raises(Exception) as info:
        Scenario.from_dict(edited(SCENARIO_DOC, path, value), graph=GRAPH)
    one_line_error(info.value, field)
    assert "allowed: a" in str(info.value) and " in [" in str(info.value)  # says the range


@pytest.mark.parametrize("field,value", [("out_bytes", 1e308), ("fwd_flops", 1e308),
                                         ("param_bytes", 1e308), ("act_bytes", 1e300)])
def test_issue_overflow_cases_in_graphs(field, value):
    doc = json.loads(GRAPH.to_json())
    node = next(n for n in doc["nodes"] if n["kind"] == "op")
    node[field] = value
    node.pop("bwd_flops")
    with pytest.raises(Exception) as info:
        LayerGraph.from_dict(doc)
    one_line_error(info.value, rf"\.{field}$")


def test_ranges_are_documented():
    """docs/formats.md states every range limits.py enforces (the text users see in errors)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "formats.md").read_text()
    for name in ("FLOP_RATE", "BANDWIDTH", "SPECTRAL_EFF", "SNR_DB", "MEMORY", "WORKSPACE", "POWER",
                 "BATCH", "LOCAL_ITERS", "ROUNDS", "COUNT", "NODE_FLOPS", "NODE_BYTES",
                 "PARAM_BYTES", "NODE_SECONDS"):
        rng = getattr(limits, name)
        shown = rng.text().split(" in ", 1)[1].split(" (")[0].split(" or ")[0]
        assert shown in text, f"{name}: {shown} not in docs/formats.md"
    assert str(limits.MAX_DEVICES) in text and str(limits.MAX_NESTING) in text
