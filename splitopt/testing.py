"""Random instances for property tests and benchmarks (public: users test their own methods too)."""

from __future__ import annotations

import numpy as np

from splitopt.graph import LayerGraph, Node
from splitopt.scenario import Scenario
from splitopt.system import Channel, Device, Server, Training


def random_dag(rng: np.random.Generator, n: int, *, n_inputs: int = 1, skip_prob: float = 0.3,
               chain: bool = False, scale: float = 1.0, zero_prob: float = 0.0) -> LayerGraph:
    """A random layer DAG with ``n`` compute nodes between ``n_inputs`` inputs and one output.

    Node ``i`` consumes node ``i-1`` and, with ``skip_prob``, earlier nodes (skip connections and
    multi-consumer tensors); inputs feed random early nodes. ``scale`` multiplies every cost (use a
    log-uniform per-node factor for huge dynamic ranges); ``zero_prob`` zeroes costs to make ties.
    """
    inputs = [f"in{j}" for j in range(n_inputs)]

    def cost(lo: float, hi: float) -> float:
        return 0.0 if rng.random() < zero_prob else float(rng.uniform(lo, hi) * scale)

    nodes = [Node(x, 0.0, 0.0, cost(1e3, 1e5), 0.0, "input") for x in inputs]
    nodes += [Node(f"n{i}", cost(1e6, 1e8), None, cost(1e2, 1e5), cost(0, 1e6), "op")
              for i in range(n)]
    nodes.append(Node("out", cost(1e3, 1e4), None, 4.0, 0.0, "output"))
    edges = set()
    for i in range(n):
        me = f"n{i}"
        if i == 0:
            edges.update((x, me) for x in inputs)
            continue
        edges.add((f"n{i-1}", me))
        if not chain:
            for j in range(i - 1):
                if rng.random() < skip_prob / max(1, i - 1) * 2:
                    edges.add((f"n{j}", me))
            for x in inputs[1:]:
                if rng.random() < 0.2:
                    edges.add((x, me))
    edges.add((f"n{n-1}" if n else inputs[0], "out"))
    if not chain:
        for x in inputs:  # every input must reach the output
            if not any(u == x for u, _ in edges):
                edges.add((x, f"n{int(rng.integers(0, n))}" if n else "out"))
    return LayerGraph(nodes, sorted(edges), inputs, "out", name=f"random{n}")


def random_devices(rng: np.random.Generator, k: int, *, classes: int | None = None) -> list[Device]:
    """``k`` heterogeneous devices (``classes`` distinct figure sets, default all different)."""
    kinds = [dict(flops=float(10 ** rng.uniform(9, 12)),
                  memory_bytes=float(10 ** rng.uniform(7, 10)),
                  power_compute_w=float(rng.uniform(2, 15)), power_tx_w=float(rng.uniform(0.1, 1)),
                  spectral_eff_up=float(rng.uniform(0.5, 8)),
                  spectral_eff_dn=float(rng.uniform(0.5, 8)))
             for _ in range(classes or k)]
    return [Device(name=f"d{i}", **kinds[i % len(kinds)]) for i in range(k)]


def random_scenario(rng: np.random.Generator, graph: LayerGraph, k: int, *,
                    training: Training | None = None, classes: int | None = None,
                    serving: str = "shared") -> Scenario:
    """A scenario over ``graph`` with ``k`` random devices, a fast server and a random band.

    ``serving`` is the server's ``serving`` (shared, the scenario default; sequential; dedicated).
    """
    band = float(10 ** rng.uniform(5, 8))
    return Scenario(graph, random_devices(rng, k, classes=classes),
                    Server(flops=float(10 ** rng.uniform(12, 14)), serving=serving),
                    Channel(bandwidth_up_hz=band,
                            bandwidth_dn_hz=band * float(rng.uniform(0.5, 2))),
                    training or Training(batch_size=int(rng.integers(1, 64))))
