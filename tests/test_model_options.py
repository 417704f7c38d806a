"""The option table prices device compute exactly as ``CutTable.dev_seconds`` does per device.

``costs.round_terms`` computes the device seconds of all devices in one pass where no node has
measured times (``costs._dev_seconds``; a per-device Python pass was 9 ms of a 1000-device
Problem). The values must be the same floats, not only close: every path prices by them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from splitopt import Problem
from splitopt.costs import CutTable, round_terms
from splitopt.graph import LayerGraph, NodeTime
from splitopt.testing import random_dag, random_scenario


def _per_device(sc, table: CutTable, batch: int) -> np.ndarray:
    it = float(sc.training.local_iters)
    return np.stack([table.dev_seconds(d) * float(batch) * it for d in sc.devices])


@pytest.mark.parametrize("seed", range(5))
def test_device_seconds_equal_the_per_device_pricing_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 7, chain=seed % 2 == 0), 6)
    table = CutTable.chain(sc.graph) if seed % 2 == 0 else CutTable.from_sets(
        sc.graph, [sc.graph.inputs, sc.graph.names])
    rt = round_terms(sc.devices, sc.server, sc.channel, sc.training, table, batch=16)
    assert np.array_equal(rt.a_dev, _per_device(sc, table, 16))
    p = Problem(sc, cuts=table, batch=[16])
    assert np.array_equal(p.options.a_dev, rt.a_dev)


def test_measured_times_still_replace_flops_node_by_node() -> None:
    rng = np.random.default_rng(11)
    sc = random_scenario(rng, random_dag(rng, 6, chain=True), 4)
    cls = sc.devices[0].cls
    nodes = [replace(n, times={cls: NodeTime(1e-3, 2e-3)}) if i == 2 else n
             for i, n in enumerate(sc.graph.nodes)]
    g = LayerGraph(nodes, list(sc.graph.edges), list(sc.graph.inputs), sc.graph.output)
    sc = sc.replace(graph=g)
    table = CutTable.chain(g)
    rt = round_terms(sc.devices, sc.server, sc.channel, sc.training, table, batch=8)
    assert np.array_equal(rt.a_dev, _per_device(sc, table, 8))
    measured = [k for k, d in enumerate(sc.devices) if d.cls == cls]
    flops_only = table.masks.astype(float) @ (g.train_flops / sc.devices[0].flops)
    it = float(sc.training.local_iters)
    assert not np.allclose(rt.a_dev[measured[0]], flops_only * 8 * it)
