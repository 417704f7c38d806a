"""The server's serving mode as plan.evaluate prices it, and HSFL's exact solve against brute force
on many small random instances (hypothesis, the project's derandomised profile)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splitopt.formulations.hsfl import HSFL, Surrogate

from splitopt.costs import check_bandwidth, round_latency, server_shares
from splitopt.errors import InputError
from splitopt.plan import DevicePlan, Plan, evaluate
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario


def test_unplanned_server_shares_divide_what_is_left() -> None:
    modes = ["split", "split", "fl", "split"]
    assert server_shares("shared", "parallel", [0.4, None, None, None], modes) == [
        0.4, 0.3, 1.0, 0.3]
    assert server_shares("dedicated", "parallel", [None] * 4, modes) == [1.0] * 4
    assert server_shares("shared", "sequential", [None] * 4, modes) == [1.0] * 4  # in turn
    with pytest.raises(InputError, match="server_shares.*serving: shared"):
        server_shares("shared", "parallel", [1.0, 1.0, None, None], modes)
    with pytest.raises(InputError, match="left for the devices without a share"):
        server_shares("shared", "parallel", [0.5, 0.5, None, None], modes)


def test_devices_in_turn_count_their_band_once() -> None:
    check_bandwidth("sequential", "shared", [0.3, 0.7, 0.7], ["fl", "split", "split"])
    check_bandwidth("parallel", "sequential", [1.0, 1.0], ["split", "split"])
    with pytest.raises(InputError, match="bandwidth_shares"):
        check_bandwidth("parallel", "shared", [0.3, 0.7, 0.7], ["fl", "split", "split"])
    assert round_latency([1.0, 2.0, 3.0], ["split"] * 3, "parallel", "sequential") == 6.0
    assert round_latency([1.0, 2.0, 3.0], ["split"] * 3, "parallel", "shared") == 3.0


def test_evaluate_prices_each_serving_mode() -> None:
    rng = np.random.default_rng(3)
    g = random_dag(rng, 4, chain=True)
    side = g.chain_prefixes()[1]
    costs = {}
    for serving in ("shared", "sequential", "dedicated"):
        sc = random_scenario(np.random.default_rng(5), g, 2, serving=serving)
        share = 1.0 if serving == "sequential" else 0.5
        plan = Plan(tuple(DevicePlan(d.name, side, share) for d in sc.devices))
        costs[serving] = evaluate(sc, plan)
    shared, turn, ded = costs["shared"], costs["sequential"], costs["dedicated"]
    for name, ph in shared.per_device.items():  # an equal half of the server each
        assert ph.server_compute_s == pytest.approx(2 * ded.per_device[name].server_compute_s)
    assert turn.round_latency_s == pytest.approx(sum(p.round_s for p in turn.per_device.values()))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), per_device=st.booleans())
def test_hsfl_exact_equals_brute_force_on_random_instances(seed: int, per_device: bool) -> None:
    """Every cut x mode x batch choice, each with its exact time-shared latency."""
    import itertools

    from splitopt.formulations.hsfl import Config, config_latency, penalty_of

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4))
    sc = random_scenario(rng, random_dag(rng, int(rng.integers(2, 4)), chain=True), n,
                         training=Training(batch_size=4, local_iters=int(rng.integers(1, 3))))
    sur = Surrogate(A=10.0, G=float(rng.uniform(0, 0.5)), sigma2=float(rng.uniform(0.2, 3)))
    form = HSFL(surrogate=sur, batches=[1, 4], per_device_cuts=per_device, memory=False)
    data = form.data(sc)
    nb, n_cut = len(data.batches), data.a_sl.shape[0]
    best = math.inf
    for ch in itertools.product(range(n_cut), range(2 * nb), repeat=n):
        cuts, rest = np.array(ch[0::2]), np.array(ch[1::2])
        fl, b = rest >= nb, rest % nb
        if not per_device and len(set(cuts[~fl])) > 1:
            continue
        cfg = Config(cuts, fl, b)
        r = sur.rounds(penalty_of(data, cfg))
        if math.isfinite(r):
            best = min(best, r * config_latency(data, cfg)[0])
    plan = form.solve(sc)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(best, rel=form.tol)
    assert plan.bound <= best * (1 + 1e-9)


def test_hsfl_says_when_the_target_is_out_of_reach_for_every_choice() -> None:
    from splitopt.errors import InfeasibleError

    rng = np.random.default_rng(2)
    sc = random_scenario(rng, random_dag(rng, 3, chain=True), 2,
                         training=Training(batch_size=4))
    # sigma^2 rho^2 / b summed is 2 * 8 * 0.25 / 4 = 1 at the largest batch: eps = 1 is the pole
    form = HSFL(surrogate=Surrogate(A=10.0, G=0.0, sigma2=8.0, eps=1.0), batches=[1, 4])
    with pytest.raises(InfeasibleError, match="every choice"):
        form.solve(sc)
    ok = HSFL(surrogate=Surrogate(A=10.0, G=0.0, sigma2=8.0, eps=1.01), batches=[1, 4])
    assert ok.solve(sc).status == "optimal"  # only batch 4 reaches it: found, not refused
