"""Multi-tier multi-split: a model split at several points over a path, with an architecture choice.

Paper: Y. Tian, Z. Zhang, Z. Yang, Q. Yang, "JMSNAS: Joint Model Split and Neural Architecture
Search for Learning over Mobile Edge Networks", arXiv:2111.08206 (https://arxiv.org/abs/2111.08206).

Tiers ``t = 0..T-1`` form a path (device -> edge -> cloud, or longer); tier t computes at ``f_t``
FLOP/s (or its measured times) and link t joins tier t to tier t+1 with rates ``up_t``, ``dn_t``.
Every node v goes to one tier ``tau(v)``, non-decreasing along edges (data flows forward only), the
inputs on tier 0. With batch b, one training iteration takes (no overlap, docs/cost_model.md)

    T = b sum_v sec_{tau(v)}(v)                                   (fwd + bwd; fwd only: inference)
      + b sum_t sum_{u: tau(u) <= t < max_{w in succ(u)} tau(w)} 8 out(u) (1/up_t + 1/dn_t)
    M_t = (2+o) W(tier t) + b act(tier t) <= mem_t                (inference: W + b act)

A tensor crossing several links pays each. Exact methods: :func:`solve_chain` (dynamic programming
over (tier, layer) for chains: dp[t][q] = min over p of dp[t-1][p] + compute_t[p, q) + link_{t-1}),
and :func:`solve_dag` (a MILP over nested predecessor-closed sets ``x[v,t] = [tau(v) <= t]``,
``x[w,t] <= x[u,t]`` on edges, crossing ``y[u,t] >= x[u,t] - x[w,t]``). The architecture is a
choice variable over a small candidate set with given accuracies (inputs, documented by the
caller): :func:`choose_architecture` solves each candidate exactly and returns the accuracy /
latency front and the best choice under a latency budget. Baselines: everything on the device,
the best single split between device and the last tier (two-tier Neurosurgeon-style), and
:func:`greedy` (each layer on the tier that runs it fastest, made monotone).

On the public builder: :func:`problem` reads a scenario as a path (relay tiers of
:mod:`splitopt.model.relays`) and :func:`solve_builder`, the registered ``solve``, solves it with
:func:`splitopt.solving.solve`; the DP / MILP here stay as a baseline and the tests' oracle.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.errors import InfeasibleError, InputError, no_plan
from splitopt.graph import LayerGraph
from splitopt.solving.verify import (
    MILP_GAP,
    Row,
    checked_status,
    solver_agrees,
    verify,
)
from splitopt.system import Link

BITS = 8.0


@dataclass(frozen=True)
class Tier:
    """One node of the path: a device, an edge server, a cloud GPU."""

    name: str
    flops: float
    memory_bytes: float = math.inf
    device_class: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.flops, (int, float)) and math.isfinite(self.flops)
                and self.flops > 0):
            raise InputError(f"tier {self.name!r}.flops", self.flops, "a finite number > 0")
        if not self.memory_bytes > 0:
            raise InputError(f"tier {self.name!r}.memory_bytes", self.memory_bytes, "a number > 0")


@dataclass(frozen=True)
class Costs:
    """Per-node, per-tier arrays of one (graph, path, batch) (seconds and bytes per iteration)."""

    graph: LayerGraph
    sec: np.ndarray      # (V, T) compute seconds of node v on tier t
    link: np.ndarray     # (T-1,) seconds per byte crossing link t
    out: np.ndarray      # (V,) bytes each node's output carries (batch included)
    mem: np.ndarray      # (V,) bytes node v needs on its tier
    cap: np.ndarray      # (T,) memory of each tier

    @property
    def n_tiers(self) -> int:
        """Number of tiers."""
        return self.sec.shape[1]


def costs(graph: LayerGraph, tiers: Sequence[Tier], links: Sequence[Link], *, batch: int = 1,
          training: bool = True, optimizer_copies: int = 0) -> Costs:
    """Validate the path and precompute the cost arrays."""
    if len(tiers) < 1 or len(links) != len(tiers) - 1:
        raise InputError("links", len(links), f"{max(len(tiers) - 1, 0)} links for "
                         f"{len(tiers)} tiers (one between each pair of neighbours)")
    if not (isinstance(batch, int) and batch >= 1):
        raise InputError("batch", batch, "an integer >= 1")
    per = [graph.train_seconds(t.device_class, t.flops) if training else
           graph.fwd_seconds(t.device_class, t.flops) for t in tiers]
    sec = np.stack(per, axis=1) * batch
    per_byte = np.array([BITS * (1 / lk.up_bps + (1 / lk.dn_bps if training else 0.0))
                         for lk in links])
    copies = (2 + optimizer_copies) if training else 1
    mem = copies * graph.param_bytes + batch * graph.act_bytes
    return Costs(graph, sec, per_byte, graph.out_bytes * batch, mem,
                 np.array([t.memory_bytes for t in tiers], dtype=float))


def placement(tiers: Sequence[int], latency_s: float, status: str, method: str,
              bound: float | None = None) -> Result:
    """A placement as the one Result: ``objective`` is its latency.

    Extras: ``tiers`` (the tier of every node, topological order), ``latency_s`` and ``method``
    (how it was found).
    """
    return Result(status, path=method, backend="highs" if method == "milp" else "none",
                  objective=latency_s, bound=bound,
                  extras={"tiers": tuple(tiers), "latency_s": latency_s, "method": method})


def cuts(tiers: Sequence[int], n_tiers: int) -> list[int]:
    """For a chain: c_t = number of nodes on tiers <= t (t = 0..T-2)."""
    return [sum(1 for x in tiers if x <= t) for t in range(n_tiers - 1)]


def latency(c: Costs, tiers: Sequence[int]) -> float:
    """Iteration latency of a placement (the equation above); inf if it breaks a rule."""
    g, tau = c.graph, np.asarray(tiers, dtype=int)
    if len(tau) != len(g) or tau.min() < 0 or tau.max() >= c.n_tiers:
        raise InputError("tiers", list(tiers), f"{len(g)} tier indices in 0..{c.n_tiers - 1}")
    if any(tau[g.index[u]] > tau[g.index[w]] for u, w in g.edges):
        return math.inf
    if any(tau[g.index[x]] != 0 for x in g.inputs):
        return math.inf
    for t in range(c.n_tiers):
        if c.mem[tau == t].sum() > c.cap[t] * (1 + 1e-12):
            return math.inf
    total = float(c.sec[np.arange(len(tau)), tau].sum())
    for i, succ in enumerate(g.succ_indices):
        if succ:
            last = max(tau[j] for j in succ)
            total += float(c.out[i] * c.link[tau[i]:last].sum())
    return total


def placement_rows(c: Costs, tiers: Sequence[int]) -> list[Row]:
    """Every rule of a placement as a Row.

    Edges never go back a tier, inputs sit on the device, each tier's memory fits its capacity.
    """
    g, tau = c.graph, np.asarray(tiers, dtype=int)
    back = sum(1 for u, w in g.edges if tau[g.index[u]] > tau[g.index[w]])
    rows = [Row("edges go forward", float(back), hi=0.0),
            Row("inputs on the device", float(sum(tau[g.index[x]] != 0 for x in g.inputs)),
                hi=0.0)]
    rows += [Row(f"memory of tier {t}", float(c.mem[tau == t].sum()), hi=float(c.cap[t]))
             for t in range(c.n_tiers) if math.isfinite(c.cap[t])]
    return rows


def _checked(c: Costs, split: Result, solver_value: float | None = None) -> Result:
    """The placement through the verified-answer guard (splitopt.solving.verify).

    Re-priced by :func:`latency`, every rule checked, the bound below; an unverified "optimal"
    is labelled ``unverified``.
    """
    check = verify(objective=split.latency_s, repriced=latency(c, split.tiers), bound=split.bound,
                   rows=placement_rows(c, split.tiers),
                   extra=[solver_agrees(solver_value, split.latency_s)],
                   gap=MILP_GAP if split.status == "optimal" else None)
    return replace(split, termination=checked_status(split.status, check), verification=check)


def solve_chain(c: Costs) -> Result:
    """Exact dynamic programme over (tier, number of layers placed) for a chain."""
    g = c.graph
    if not g.is_chain:
        raise InputError("graph", g.name or "graph", "a chain for solve_chain",
                         "Use solve_dag for a DAG.")
    V, T = len(g), c.n_tiers
    csec = np.vstack([np.zeros((1, T)), np.cumsum(c.sec, axis=0)])
    cmem = np.concatenate([[0.0], np.cumsum(c.mem)])
    dp = np.full((T, V + 1), math.inf)
    arg = np.zeros((T, V + 1), dtype=int)
    for q in range(1, V + 1):  # tier 0 holds [0, q): the input at least
        if cmem[q] <= c.cap[0] * (1 + 1e-12):
            dp[0, q] = csec[q, 0] + (c.out[q - 1] * c.link[0] if q < V and T > 1 else 0.0)
    for t in range(1, T):
        for q in range(1, V + 1):
            for p in range(1, q + 1):
                if dp[t - 1, p] == math.inf or cmem[q] - cmem[p] > c.cap[t] * (1 + 1e-12):
                    continue
                send = c.out[q - 1] * c.link[t] if q < V and t < T - 1 else 0.0
                val = dp[t - 1, p] + csec[q, t] - csec[p, t] + send
                if val < dp[t, q]:
                    dp[t, q], arg[t, q] = val, p
    if dp[T - 1, V] == math.inf:
        raise InfeasibleError("multi-tier: no placement fits every tier's memory")
    tiers, q = [0] * V, V
    for t in range(T - 1, 0, -1):
        p = arg[t, q]
        tiers[p:q] = [t] * (q - p)
        q = p
    return _checked(c, placement(tuple(tiers), float(dp[T - 1, V]), "optimal", "dp",
                             float(dp[T - 1, V])))


def solve_dag(c: Costs, *, time_limit: float | None = None) -> Result:
    """Exact MILP over nested predecessor-closed sets (any DAG)."""
    from splitopt.compile.columns import MilpBuilder
    from splitopt.parallel.milp import solve_program

    g, V, T = c.graph, len(c.graph), c.n_tiers
    m = MilpBuilder()
    x = m.add_vars(V * (T - 1), ub=1, integer=True, name="x").reshape(V, max(T - 1, 0))
    obj: dict[int, float] = {}

    def at(v: int, t: int) -> dict[int, float]:
        """[tau(v) <= t] as {column: coef} plus a constant under key -1."""
        return {-1: 1.0} if t >= T - 1 else ({} if t < 0 else {int(x[v, t]): 1.0})

    def add(d: dict[int, float], e: dict[int, float], s: float) -> None:
        for j, v in e.items():
            d[j] = d.get(j, 0.0) + s * v

    for v in range(V):
        for t in range(T - 2):
            m.add_row({int(x[v, t]): 1.0, int(x[v, t + 1]): -1.0}, ub=0.0)
        for t in range(T):  # node v on tier t: at(v,t) - at(v,t-1)
            add(obj, at(v, t), c.sec[v, t])
            add(obj, at(v, t - 1), -c.sec[v, t])
    for name in g.inputs:
        if T > 1:
            m.set_bounds([x[g.index[name], 0]], lb=1.0)
    for u, w in g.edges:
        iu, iw = g.index[u], g.index[w]
        for t in range(T - 1):
            m.add_row({int(x[iw, t]): 1.0, int(x[iu, t]): -1.0}, ub=0.0)
    for ui in range(V):
        for t in range(T - 1):
            if not g.succ_indices[ui]:
                continue
            y = int(m.add_vars(1, ub=1, name=f"send{ui}_{t}")[0])
            obj[y] = c.out[ui] * c.link[t]
            for wi in g.succ_indices[ui]:
                m.add_row({y: 1.0, int(x[ui, t]): -1.0, int(x[wi, t]): 1.0}, lb=0.0)
    for t in range(T):
        if math.isfinite(c.cap[t]):
            row: dict[int, float] = {}
            for v in range(V):
                add(row, at(v, t), c.mem[v])
                add(row, at(v, t - 1), -c.mem[v])
            const = row.pop(-1, 0.0)
            m.add_row({j: v / c.cap[t] for j, v in row.items()}, ub=1.0 - const / c.cap[t])
    const = obj.pop(-1, 0.0)
    m.minimize(obj, offset=const)
    res = solve_program(m.program(), time_limit=time_limit)
    if res.x is None:
        raise no_plan("multi-tier: no placement fits every tier's memory", res.status,
                      "multi-tier")
    xs = np.round(res.x[x.ravel()].reshape(V, max(T - 1, 0))) if T > 1 else np.zeros((V, 0))
    tiers = tuple(int(T - 1 - xs[v].sum()) for v in range(V))
    return _checked(c, placement(tiers, latency(c, tiers), res.status, "milp", res.bound),
                    res.objective)


def solve(c: Costs, *, time_limit: float | None = None) -> Result:
    """Exact: the DP for chains, the MILP otherwise."""
    return solve_chain(c) if c.graph.is_chain else solve_dag(c, time_limit=time_limit)


# ---------------------------------------------------------------------------- baselines
def device_only(c: Costs) -> Result:
    """Every node on tier 0 (may break its memory: then latency is inf)."""
    tiers = (0,) * len(c.graph)
    return placement(tiers, latency(c, tiers), "feasible", "device-only")


def two_tier(c: Costs) -> Result:
    """The best single split between tier 0 and the last tier (intermediate tiers relay only)."""
    g, last = c.graph, c.n_tiers - 1
    best: Result | None = None
    for side in g.chain_prefixes() + [frozenset(g.names)]:
        tiers = tuple(0 if n in side else last for n in g.names)
        t = latency(c, tiers)
        if best is None or t < best.latency_s:
            best = placement(tiers, t, "feasible", "two-tier")
    assert best is not None
    return best


def greedy(c: Costs) -> Result:
    """Each node on its fastest tier, raised to keep tiers non-decreasing along edges."""
    g = c.graph
    tau = [int(np.argmin(c.sec[v])) for v in range(len(g))]
    for name in g.inputs:
        tau[g.index[name]] = 0
    for v in range(len(g)):  # topological order: lift v to its producers' tiers
        for u in g.pred_indices[v]:
            tau[v] = max(tau[v], tau[u])
    return placement(tuple(tau), latency(c, tau), "feasible", "greedy")


def brute_force(c: Costs) -> Result:
    """Every tier assignment (tiny graphs only)."""
    V, T = len(c.graph), c.n_tiers
    if T ** V > 2e5:
        raise InputError("graph", f"{V} nodes x {T} tiers", "a tiny instance for brute force")
    best = min(((latency(c, t), t) for t in itertools.product(range(T), repeat=V)),
               key=lambda p: p[0])
    if best[0] == math.inf:
        raise InfeasibleError("multi-tier brute force: no placement fits")
    return placement(tuple(best[1]), best[0], "optimal", "brute-force", best[0])


# ---------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class Candidate:
    """One architecture: its layer graph and its accuracy (an input: measured or published)."""

    name: str
    graph: LayerGraph
    accuracy: float


@dataclass(frozen=True)
class Choice:
    """The architecture chosen, its exact split, and the whole accuracy / latency front."""

    candidate: Candidate
    split: Result
    front: tuple[tuple[str, float, float], ...]  # (name, accuracy, latency) non-dominated


def choose_architecture(candidates: Sequence[Candidate], tiers: Sequence[Tier],
                        links: Sequence[Link], *, latency_budget: float | None = None,
                        weight: float | None = None, batch: int = 1, training: bool = True,
                        optimizer_copies: int = 0) -> Choice:
    """Jointly choose the architecture and all split points, exactly.

    Each candidate's least latency is solved exactly; the choice is then the most accurate
    candidate within ``latency_budget`` (ties: faster), or with ``weight`` w the maximiser of
    ``accuracy - w * latency``. Candidates are independent, so enumerating them is exact.
    """
    if not candidates:
        raise InputError("candidates", [], "at least one Candidate")
    if (latency_budget is None) == (weight is None):
        raise InputError("latency_budget / weight", (latency_budget, weight),
                         "exactly one of the two")
    solved = []
    for cand in candidates:
        try:
            sp = solve(costs(cand.graph, tiers, links, batch=batch, training=training,
                             optimizer_copies=optimizer_copies))
        except InfeasibleError:
            continue
        solved.append((cand, sp))
    if latency_budget is not None:
        ok = [p for p in solved if p[1].latency_s <= latency_budget]
        if not ok:
            raise InfeasibleError(f"no candidate architecture meets {latency_budget:g} s")
        best = max(ok, key=lambda p: (p[0].accuracy, -p[1].latency_s))
    else:
        w = float(weight or 0.0)  # given: exactly one of the two is set
        best = max(solved, key=lambda p: p[0].accuracy - w * p[1].latency_s)
    pts = [(cd.name, cd.accuracy, sp.latency_s) for cd, sp in solved]
    front = tuple(sorted(p for p in pts if not any(
        q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2]) for q in pts)))
    return Choice(best[0], best[1], front)


def chain_variant(name: str, depth: int, width: int, *, image: int = 32,
                  classes: int = 10) -> LayerGraph:
    """A plain conv chain of ``depth`` 3x3 conv layers (stride 2 every third) of ``width`` channels.

    Per-sample FLOPs / bytes in fp32, for depth / width candidate sets in examples and benchmarks.
    """
    from splitopt.graph import Node

    nodes = [Node("x", 0, 0, 4.0 * 3 * image * image, 0, "input")]
    edges, prev, cin, hw = [], "x", 3, image
    for i in range(depth):
        if i % 3 == 2 and hw > 4:
            hw //= 2
        params = 9 * cin * width + width
        nodes.append(Node(f"conv{i}", 2.0 * 9 * cin * width * hw * hw, None,
                          4.0 * width * hw * hw, 4.0 * params, "Conv2d"))
        edges.append((prev, f"conv{i}"))
        prev, cin = f"conv{i}", width
    nodes.append(Node("fc", 2.0 * width * classes, None, 4.0 * classes,
                      4.0 * (width * classes + classes), "Linear"))
    nodes.append(Node("loss", 3.0 * classes, None, 4.0, 0, "output"))
    edges += [(prev, "fc"), ("fc", "loss")]
    return LayerGraph(nodes, edges, ["x"], "loss", name=name)


# ---------------------------------------------------------------------------- the public builder
def builder_scenario(scenario: Any) -> tuple[Any, list[Any]]:
    """The scenario read as a path, in builder terms: (one-device scenario, relays).

    Tier 0 is the scenario's first device, tiers 1.. its other devices in order (relays: link k
    at device k's full-channel rates, as :func:`splitopt.formulations.registry.tiers_of` reads
    it), the server last. Priced per training iteration as :func:`costs` does by default: one
    local iteration, no aggregation, plain SGD (``optimizer_copies=0``), no workspace.
    """
    from splitopt.model.relays import Relay
    from splitopt.system import link_of

    devs, ch = scenario.devices, scenario.channel
    first = devs[0].model_copy(update={"workspace_bytes": 0.0})
    tr = scenario.training.model_copy(update={"local_iters": 1, "aggregate": False,
                                              "optimizer_copies": 0, "schedule": "parallel"})
    server = scenario.server.model_copy(update={"serving": "dedicated"})
    relays = []
    for d in devs[1:]:
        lk = link_of(d, ch, 1.0)
        relays.append(Relay(d.name, d.flops, lk.up_bps, lk.dn_bps, d.memory_bytes,
                            d.device_class))
    return scenario.replace(devices=[first], training=tr, server=server), relays


def problem(scenario: Any) -> Any:
    """Multi-tier as a public-builder Problem: least iteration latency over nested cuts.

    Tier 0's set is one of the chain-prefix cuts (so it never holds the whole graph: that is FL
    mode, which the reference model prices with aggregation), relays take nested sets
    (:mod:`splitopt.model.relays`), every tier within its memory, the whole channel on link 0.
    """
    from splitopt.model import Problem

    sc, relays = builder_scenario(scenario)
    p = Problem(sc, server_share=False, relays=relays or None)
    p.bandwidth.fix(None, 1.0)
    d = sc.devices[0]
    if math.isfinite(d.memory_bytes):
        p.add(p.memory(0) / d.memory_bytes <= 1.0, name=f"memory:{d.name}")  # rows of order 1
    p.minimize(p.round_latency())
    return p


def tiers_of_plan(p: Any, plan: Any) -> tuple[int, ...]:
    """The tier of every node (topological order) in a builder plan of :func:`problem`."""
    g, d = p.scenario.graph, plan.devices[0]
    last = 1 if p.relays is None else p.relays.R + 1
    tau = np.full(len(g), last, dtype=int)
    placed = plan.meta.get("relays", {}).get(d.device, {})
    for t, r in enumerate(() if p.relays is None else p.relays.relays, start=1):
        tau[[g.index[v] for v in placed.get(r.name, ())]] = t
    tau[[g.index[v] for v in d.device_side]] = 0
    return tuple(int(t) for t in tau)


def solve_builder(scenario: Any, *, backend: str | None = None,
                  time_limit: float | None = None) -> Result:
    """The exact optimum of :func:`problem` through :func:`splitopt.solving.solve`.

    The builder's Result, with ``tiers`` (each node's tier), ``latency_s`` and, for chains,
    ``cuts`` as extras.

    The builder's Problem leaves out one placement, the whole model on tier 0 (the reference
    model prices that as FL mode, with aggregation); it is priced here per iteration (compute
    only, :func:`latency`) and returned instead when it is faster, through the same guard, so
    the answer is exact over every placement.
    """
    import time

    from splitopt.formulations.registry import tiers_of

    from splitopt.solving import solve as solve_problem

    t0 = time.perf_counter()
    p = problem(scenario)
    res = solve_problem(p, backend=backend, time_limit=time_limit)
    n_tiers = 2 if p.relays is None else p.relays.R + 2
    chain = scenario.graph.is_chain
    if res.plan is not None:
        tau = tiers_of_plan(p, res.plan)
        res = replace(res, extras={**res.extras, "tiers": tau, "latency_s": res.objective,
                                   "method": "builder",
                                   "cuts": cuts(tau, n_tiers) if chain else None})
    tiers, links = tiers_of(scenario)
    c = costs(scenario.graph, tiers, links, batch=scenario.training.batch_size)
    local = device_only(c)
    if local.latency_s == math.inf or (res.objective is not None
                                       and res.objective <= local.latency_s):
        return res
    bound = local.latency_s if res.bound is None else min(res.bound, local.latency_s)
    found = placement(local.tiers, local.latency_s, res.termination, "builder+device-only",
                      bound)
    return replace(_checked(c, found), solve_s=time.perf_counter() - t0,
                   extras={**found.extras, "cuts": cuts(local.tiers, n_tiers) if chain else None})
