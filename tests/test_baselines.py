"""Naive baselines: ordered as theory says, priced by the reference model."""

import numpy as np
import pytest

from splitopt.baselines import NAIVE, common_cut, device_only, own_cut, server_only
from splitopt.testing import random_dag, random_scenario


@pytest.mark.parametrize("seed", range(20))
def test_baseline_order(seed):
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 6, chain=True), 4)
    lat = {name: fn(sc).predicted.round_latency_s for name, fn in NAIVE.items()}
    assert lat["own-cut-equal-bw"] <= lat["common-cut"] * (1 + 1e-12)
    assert lat["common-cut"] <= min(lat["device-only"], lat["server-only"]) * (1 + 1e-12)


def test_extremes_are_what_they_say():
    rng = np.random.default_rng(0)
    sc = random_scenario(rng, random_dag(rng, 5, chain=True), 3)
    dev = device_only(sc).devices[0].device_side
    assert dev == frozenset(sc.graph.names) - {sc.graph.output}
    assert server_only(sc).devices[0].device_side == frozenset(sc.graph.inputs)
    assert all(d.bandwidth_share == pytest.approx(1 / 3) for d in own_cut(sc).devices)
    assert len({d.device_side for d in common_cut(sc).devices}) == 1
