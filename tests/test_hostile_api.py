"""Hostile Python calls: the public constructors and functions of the graph, scenario and plan
modules raise the project's own one-line InputError for any bad argument (issue 12, "Python API").

A table holds the issue's calls and more of their kind; hypothesis then calls each constructor
with arbitrary values in every argument and checks that nothing but an InputError escapes.
"""

from __future__ import annotations

import math

import pytest
from _hostile import GRAPH, SCENARIO_DOC, one_line_error, plan_doc, raises_input_error
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import limits
from splitopt.errors import InputError
from splitopt.graph import LayerGraph, Node, NodeTime
from splitopt.plan import DevicePlan, Plan, evaluate, uniform_plan
from splitopt.scenario import Scenario, catalog_device, catalog_server, resolve_model
from splitopt.system import Channel, Device, Server, Training, link_of

SC = Scenario.from_dict(SCENARIO_DOC, graph=GRAPH)
PLAN = Plan.from_dict(plan_doc())
DEV = SC.devices[2]
X = Node("x", 0, 0, 8, 0, "input")
A = Node("a", 10, 20, 4, 0)


def _deep(n: int):
    out: list = []
    for _ in range(n):
        out = [out]
    return out


CALLS = [
    # the calls
    ("Scenario(G, None, ...)", lambda: Scenario(GRAPH, None, SC.server, SC.channel), "devices"),
    ("LayerGraph(None, ...)", lambda: LayerGraph(None, [], ["x"], "a"), "nodes"),
    ("LayerGraph.from_json(None)", lambda: LayerGraph.from_json(None), "graph JSON"),
    ("evaluate(None, plan)", lambda: evaluate(None, PLAN), "scenario"),
    ("DevicePlan(batch_size=1e308)", lambda: DevicePlan("d", [], 0.5, batch_size=1e308),
     "batch_size"),
    ("Node('a', '1e9')", lambda: Node("a", "1e9"), r"fwd_flops"),
    ("edge 'xa'", lambda: LayerGraph([X, A], ["xa"], ["x"], "a"), "edges"),
    # more of their kind: scenario
    ("Scenario(None, ...)", lambda: Scenario(None, SC.devices, SC.server, SC.channel), "graph"),
    ("Scenario(G, 'dev', ...)", lambda: Scenario(GRAPH, "dev", SC.server, SC.channel),
     "devices"),
    ("Scenario(G, Device, ...)", lambda: Scenario(GRAPH, DEV, SC.server, SC.channel), "devices"),
    ("Scenario(G, {}, ...)", lambda: Scenario(GRAPH, {}, SC.server, SC.channel), "devices"),
    ("Scenario(G, [None], ...)", lambda: Scenario(GRAPH, [None], SC.server, SC.channel),
     r"devices\[0\]"),
    ("Scenario(server=None)", lambda: Scenario(GRAPH, SC.devices, None, SC.channel), "server"),
    ("Scenario(channel={})", lambda: Scenario(GRAPH, SC.devices, SC.server, {}), "channel"),
    ("Scenario(training=1)", lambda: Scenario(GRAPH, SC.devices, SC.server, SC.channel, 1),
     "training"),
    ("Scenario over the device cap",
     lambda: Scenario(GRAPH, [DEV] * (limits.MAX_DEVICES + 1), SC.server, SC.channel),
     "devices"),
    ("Scenario.from_dict(None)", lambda: Scenario.from_dict(None), "scenario"),
    ("Scenario.load(None)", lambda: Scenario.load(None), "scenario file"),
    ("Scenario.load(3)", lambda: Scenario.load(3), "scenario file"),
    ("sc.device(None)", lambda: SC.device(None), "device"),
    ("sc.replace(devices=None)", lambda: SC.replace(devices=None), "devices"),
    ("catalog_device(None)", lambda: catalog_device(None), "catalog"),
    ("catalog_device(flops=True)", lambda: catalog_device("jetson-nano", flops=True, snr_db=3),
     "flops"),
    ("catalog_server(utilisation='1')", lambda: catalog_server("edge-a2", utilisation="1"),
     "utilisation"),
    ("resolve_model(None)", lambda: resolve_model(None), "model"),
    ("Device(flops=True)", lambda: Device(name="d", flops=True, snr_db=3), "flops"),
    ("Device(flops='2e7')", lambda: Device(name="d", flops="2e7", snr_db=3), "flops"),
    ("Device(memory_bytes=True)", lambda: Device(name="d", flops=1e9, snr_db=3,
                                                 memory_bytes=True), "memory_bytes"),
    ("Device(name=None)", lambda: Device(name=None, flops=1e9, snr_db=3), "name"),
    ("Device(snr_db=inf)", lambda: Device(name="d", flops=1e9, snr_db=math.inf), "snr_db"),
    ("Device(flops=10**400)", lambda: Device(name="d", flops=10**400, snr_db=3), "flops"),
    ("Server(flops=True)", lambda: Server(flops=True), "flops"),
    ("Channel(bandwidth_up_hz=True)", lambda: Channel(bandwidth_up_hz=True, bandwidth_dn_hz=1e6),
     "bandwidth_up_hz"),
    ("Channel(bandwidth_up_hz=1e-200)",
     lambda: Channel(bandwidth_up_hz=1e-200, bandwidth_dn_hz=1e6), "bandwidth_up_hz"),
    ("Training(batch_size=True)", lambda: Training(batch_size=True), "batch_size"),
    ("Training(batch_size=1.5)", lambda: Training(batch_size=1.5), "batch_size"),
    ("Training(batch_size=nan)", lambda: Training(batch_size=math.nan), "batch_size"),
    ("Training(batch_size=10**30)", lambda: Training(batch_size=10**30), "batch_size"),
    ("Training(rounds='3')", lambda: Training(rounds="3"), "rounds"),
    ("Training(aggregate='no')", lambda: Training(aggregate="no"), "aggregate"),
    ("link_of(share=True)", lambda: link_of(DEV, SC.channel, True), "share"),
    # graph
    ("LayerGraph(nodes='ab')", lambda: LayerGraph("ab", [], ["x"], "a"), "nodes"),
    ("LayerGraph(edges=None)", lambda: LayerGraph([X, A], None, ["x"], "a"), "edges"),
    ("LayerGraph(inputs=None)", lambda: LayerGraph([X, A], [("x", "a")], None, "a"), "inputs"),
    ("LayerGraph(inputs=[None])", lambda: LayerGraph([X, A], [("x", "a")], [None], "a"),
     "inputs"),
    ("LayerGraph(output=None)", lambda: LayerGraph([X, A], [("x", "a")], ["x"], None), "output"),
    ("LayerGraph(name=5)", lambda: LayerGraph([X, A], [("x", "a")], ["x"], "a", name=5), "name"),
    ("LayerGraph(meta=[])", lambda: LayerGraph([X, A], [("x", "a")], ["x"], "a", meta=[]),
     "meta"),
    ("LayerGraph(meta=deep)", lambda: LayerGraph([X, A], [("x", "a")], ["x"], "a",
                                                 meta={"d": _deep(5000)}), "meta"),
    ("LayerGraph(edges=[(x, a, b)])", lambda: LayerGraph([X, A], [("x", "a", "b")], ["x"], "a"),
     "edges"),
    ("LayerGraph(edges=[(x, 5)])", lambda: LayerGraph([X, A], [("x", 5)], ["x"], "a"), "edge"),
    ("input with FLOPs", lambda: LayerGraph([Node("x", 5, 0, 8, 0, "input"), A], [("x", "a")],
                                            ["x"], "a"), "input 'x'"),
    ("undeclared input kind",
     lambda: LayerGraph([X, Node("z", 0, 0, 8, 0, "input"), A], [("x", "a"), ("z", "a")], ["x"],
                        "a"), "node 'z'.kind"),
    ("LayerGraph.from_json(b'[')", lambda: LayerGraph.from_json(b"["), "graph JSON"),
    ("LayerGraph.from_json(deep)", lambda: LayerGraph.from_json("[" * 100_000), "graph JSON"),
    ("LayerGraph.from_dict([])", lambda: LayerGraph.from_dict([]), "graph document"),
    ("LayerGraph.load(None)", lambda: LayerGraph.load(None), "graph file"),
    ("Node(True)", lambda: Node("a", True), "fwd_flops"),
    ("Node(fwd=1e308)", lambda: Node("a", 1e308), r"\.fwd_flops$"),
    ("Node(fwd=6e17) default bwd", lambda: Node("a", 6e17), r"bwd_flops \(2 x"),
    ("Node(out_bytes=1e308)", lambda: Node("a", 1, None, 1e308), "out_bytes"),
    ("Node(kind=None)", lambda: Node("a", 1, kind=None), "kind"),
    ("Node(times=[])", lambda: Node("a", 1, times=[]), "times"),
    ("Node(times={'c': 3})", lambda: Node("a", 1, times={"c": 3}), "times"),
    ("Node(times bad)", lambda: Node("a", 1, times={"c": NodeTime(True, 0)}), "fwd_s"),
    ("Node(name=None)", lambda: Node(None), "name"),
    # plan
    ("Plan(None)", lambda: Plan(None), "devices"),
    ("Plan([None])", lambda: Plan([None]), r"devices\[0\]"),
    ("Plan(rounds=True)", lambda: Plan((), rounds=True), "rounds"),
    ("Plan(rounds=nan)", lambda: Plan((), rounds=math.nan), "rounds"),
    ("Plan(meta=deep)", lambda: Plan((), meta={"d": _deep(5000)}), "meta"),
    ("Plan(status=None)", lambda: Plan((), status=None), "status"),
    ("Plan.from_dict(None)", lambda: Plan.from_dict(None), "plan document"),
    ("Plan.load(None)", lambda: Plan.load(None), "plan file"),
    ("DevicePlan(device=None)", lambda: DevicePlan(None, [], 0.5), "device"),
    ("DevicePlan(side=None)", lambda: DevicePlan("d", None, 0.5), "device_side"),
    ("DevicePlan(side='ab')", lambda: DevicePlan("d", "ab", 0.5), "device_side"),
    ("DevicePlan(side={'a': 1})", lambda: DevicePlan("d", {"a": 1}, 0.5), "device_side"),
    ("DevicePlan(side=[1])", lambda: DevicePlan("d", [1], 0.5), "device_side"),
    ("DevicePlan(share=True)", lambda: DevicePlan("d", [], True), "bandwidth_share"),
    ("DevicePlan(share='0.5')", lambda: DevicePlan("d", [], "0.5"), "bandwidth_share"),
    ("DevicePlan(share=nan)", lambda: DevicePlan("d", [], math.nan), "bandwidth_share"),
    ("DevicePlan(server_share=0)", lambda: DevicePlan("d", [], 0.5, 0), "server_share"),
    ("DevicePlan(batch=True)", lambda: DevicePlan("d", [], 0.5, batch_size=True), "batch_size"),
    ("DevicePlan(batch=1.5)", lambda: DevicePlan("d", [], 0.5, batch_size=1.5), "batch_size"),
    ("DevicePlan(batch=nan)", lambda: DevicePlan("d", [], 0.5, batch_size=math.nan),
     "batch_size"),
    ("DevicePlan(batch=10**30)", lambda: DevicePlan("d", [], 0.5, batch_size=10**30),
     "batch_size"),
    ("DevicePlan(batch='16')", lambda: DevicePlan("d", [], 0.5, batch_size="16"), "batch_size"),
    ("DevicePlan(mode=None)", lambda: DevicePlan("d", [], 0.5, mode=None), "mode"),
    ("DevicePlan(selected=1)", lambda: DevicePlan("d", [], 0.5, selected=1), "selected"),
    ("evaluate(sc, None)", lambda: evaluate(SC, None), "plan"),
    ("evaluate(sc, plan of strangers)",
     lambda: evaluate(SC, Plan((DevicePlan("ghost", [], 0.5),))), "device"),
    ("uniform_plan(None, ...)", lambda: uniform_plan(None, frozenset()), "scenario"),
    ("uniform_plan(sc, None)", lambda: uniform_plan(SC, None), "device_sides"),
    ("uniform_plan(sc, [None, ...])", lambda: uniform_plan(SC, [None, None, None]),
     "device_sides"),
    ("plan.device(None)", lambda: PLAN.device(None), "device"),
]


@pytest.mark.parametrize("name,call,field", CALLS, ids=[c[0] for c in CALLS])
def test_bad_call_raises_our_error(name, call, field):
    raises_input_error(call, field)


def test_good_calls_still_work():
    """The strict checks refuse nonsense, not ordinary values (numpy numbers included)."""
    import numpy as np

    d = Device(name="d", flops=np.float64(1e9), snr_db=np.int64(3), memory_bytes=2**40)
    assert d.flops == 1e9 and isinstance(d.flops, float)
    assert Node("a", np.float32(2.0), None, np.int64(4)).bwd_flops == 4.0
    assert DevicePlan("d", ["x"], np.float64(0.5), batch_size=np.int64(16)).batch_size == 16
    assert DevicePlan("d", ["x"], 0.5, batch_size=16.0).batch_size == 16  # a solver's 16.0
    assert Training(batch_size=limits.BATCH.hi).batch_size == 10**6
    assert math.isfinite(evaluate(SC, PLAN).round_latency_s)


# ---------------------------------------------------------------------------- generated
_ANY = (st.none() | st.booleans() | st.integers(-(10**25), 10**25) | st.floats()
        | st.text(max_size=4) | st.binary(max_size=3) | st.lists(st.integers(0, 2), max_size=2)
        | st.dictionaries(st.text(max_size=2), st.integers(0, 2), max_size=2)
        | st.sampled_from([1e308, 5e-324, 10**400, "1e9", "x", ("x", "a"), frozenset({"x"})]))


def _clean(call) -> None:
    try:
        call()
    except Exception as err:  # noqa: BLE001 - the check is that it is our one-line error
        one_line_error(err)


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 6), value=_ANY)
def test_any_value_in_any_device_field(which, value):
    field = ("flops", "memory_bytes", "power_tx_w", "spectral_eff_up", "snr_db",
             "workspace_bytes", "device_class")[which]
    fields = {"name": "d", "flops": 1e9, "snr_db": 3.0, field: value}
    _clean(lambda: Device(**fields))


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 6), value=_ANY)
def test_any_value_in_any_node_or_plan_argument(which, value):
    calls = [lambda: Node("a", value), lambda: Node("a", 1.0, None, value),
             lambda: Node("a", 1.0, kind=value), lambda: DevicePlan("d", value, 0.5),
             lambda: DevicePlan("d", [], value), lambda: DevicePlan("d", [], 0.5, None, value),
             lambda: Plan((), rounds=value)]
    _clean(calls[which])


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 5), value=_ANY)
def test_any_value_in_any_graph_or_scenario_argument(which, value):
    calls = [lambda: LayerGraph(value, [], ["x"], "x"),
             lambda: LayerGraph([X, A], value, ["x"], "a"),
             lambda: LayerGraph([X, A], [("x", "a")], value, "a"),
             lambda: LayerGraph([X, A], [("x", "a")], ["x"], value),
             lambda: Scenario(GRAPH, value, SC.server, SC.channel),
             lambda: evaluate(SC, Plan((DevicePlan(DEV.name, value, 0.5),)))
             if isinstance(value, (list, frozenset)) else LayerGraph.from_json(value)]
    _clean(calls[which])


def test_errors_are_value_errors_too():
    """Callers that catch ValueError keep working: InputError is one."""
    with pytest.raises(ValueError):
        Training(batch_size=True)
    assert issubclass(InputError, ValueError)
