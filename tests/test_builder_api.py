"""The builder's API: variables, restrictions, coupled rows, infeasibility messages, bad input."""

import itertools
import math

import numpy as np
import pytest

from splitopt import InfeasibleError, InputError
from splitopt.backends.export import write_program
from splitopt.model import Problem
from splitopt.model.problems import PROBLEMS, get, register
from splitopt.solving.bisection import fixed_option_time
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario


def _scenario(seed, n_dev=3, n_layers=4, **train):
    rng = np.random.default_rng(seed)
    tr = Training(batch_size=int(rng.integers(1, 33)), **train)
    return random_scenario(rng, random_dag(rng, n_layers, chain=True), n_dev, training=tr,
                           serving="dedicated")  # these tests are about the phi = 1 model


def _brute(p, ok=lambda c: True, bmin=None):
    o, k = p.options, np.arange(p.n_devices)
    best, arg = math.inf, None
    for c in itertools.product(*[np.flatnonzero(p.allowed[i]) for i in k]):
        if not ok(c):
            continue
        bm = None if bmin is None else bmin[k, c]
        t = fixed_option_time(o.a_dev[k, c] + o.a_srv[k, c], o.d[k, c], bm)
        if t < best:
            best, arg = t, c
    return best, arg


@pytest.mark.parametrize("seed", range(3))
def test_batch_choice_equals_brute_force(seed):
    sc = _scenario(10 + seed, n_layers=3)
    p = Problem(sc, batch=[4, 16])
    caps = [float(np.quantile(p.options.mem[k], 0.5)) for k in range(3)]
    for k in range(3):
        p.add(p.memory(k) <= caps[k])
    p.add(sum(p.batch[k] for k in range(3)) >= 24, name="samples")
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "coupled"
    o = p.options
    ok = lambda c: (all(o.mem[k, c[k]] <= caps[k] for k in range(3))  # noqa: E731
                    and sum(o.batch[list(c)]) >= 24)
    assert r.objective == pytest.approx(_brute(p, ok)[0], rel=1e-7)
    assert sum(d.batch_size for d in r.plan.devices) >= 24


@pytest.mark.parametrize("seed", range(3))
def test_energy_budget_per_device(seed):
    sc = _scenario(20 + seed)
    p = Problem(sc)
    o = p.options
    k = np.arange(3)
    budgets = np.median(o.e_comp + o.e_tx * 3, axis=1)
    for i in k:
        p.add(p.energy(i) <= budgets[i])
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "bisection"
    room = budgets[:, None] - o.e_comp
    with np.errstate(divide="ignore"):
        bmin = np.where(room > 0, o.e_tx / room, np.inf)
    assert r.objective == pytest.approx(_brute(p, bmin=bmin)[0], rel=1e-9)
    for i, d in enumerate(r.plan.devices):
        assert r.plan.predicted.per_device[d.device].energy_j <= budgets[i] * (1 + 1e-9)
    assert p.solve(path="generic", gap=1e-6).objective == pytest.approx(r.objective, rel=1e-5)


def test_selection_with_minimum_count():
    sc = _scenario(30, n_dev=3)
    p = Problem(sc, selection=True)
    p.add(sum(p.selected[k] for k in range(3)) >= 2, name="at-least-two")
    p.minimize(p.round_latency())
    r = p.solve()
    chosen = [d for d in r.plan.devices if d.selected]
    assert len(chosen) == 2
    o = p.options
    best = _brute(p, lambda c: sum(o.cut[list(c)] >= 0) >= 2)[0]
    assert r.objective == pytest.approx(best, rel=1e-7)
    assert r.plan.predicted.round_latency_s == pytest.approx(r.objective, rel=1e-9)


def test_fl_mode_and_pins():
    sc = _scenario(40)
    p = Problem(sc, modes=True)
    p.pin("n0", "device")
    p.mode.fix(0, "fl")
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.plan.devices[0].mode == "fl"
    assert all("n0" in d.device_side for d in r.plan.devices)
    assert r.objective == pytest.approx(_brute(p)[0], rel=1e-9)


def test_fixed_bandwidth_makes_it_linear():
    sc = _scenario(50)
    p = Problem(sc)
    p.bandwidth.fix(None, [0.5, 0.3, 0.2])
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "outer-approximation" and r.termination == "optimal"
    o = p.options
    beta = np.array([0.5, 0.3, 0.2])
    T = np.where(p.allowed, o.a_dev + o.a_srv + o.d / beta[:, None], np.inf)
    assert r.objective == pytest.approx(T.min(axis=1).max(), rel=1e-9)


def test_user_variable_in_a_coupling_row():
    sc = _scenario(60)
    p = Problem(sc)
    extra = p.add_variable("spare_mb", lb=0, ub=1e6)
    total = sum(p.memory(k) for k in range(3))
    p.add(total / 1e6 + extra.expr <= float(np.sum(p.options.mem.max(axis=1))) / 1e6)
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "coupled" and "spare_mb" in r.values


def test_memory_infeasibility_names_device_and_cut():
    sc = _scenario(70)
    p = Problem(sc)
    smallest = float(p.options.mem[1].min())
    p.add(p.memory("d1") <= smallest * 0.5, name="memory:d1")
    p.minimize(p.round_latency())
    msg = (r"device d1 \(memory:d1\): no cut fits .* MB at batch \d+; "
           r"the smallest needs .* MB at cut")
    with pytest.raises(InfeasibleError, match=msg):
        p.solve()


def test_coupled_infeasibility_names_constraint():
    sc = _scenario(71)
    p = Problem(sc)
    least = float(p.options.mem.min(axis=1).sum())
    p.add(sum(p.memory(k) for k in range(3)) <= 0.9 * least, name="shared-memory")
    p.minimize(p.round_latency())
    with pytest.raises(InfeasibleError, match="shared-memory.*least possible value"):
        p.solve()


def test_deadline_infeasibility_names_device():
    sc = _scenario(72)
    p = Problem(sc)
    fastest = float((p.options.a_dev + p.options.a_srv + p.options.d).min())
    p.add(p.round_latency() <= fastest * 0.5, name="deadline")
    p.minimize(p.round_latency())
    with pytest.raises(InfeasibleError, match=r"device d\d \(deadline\): no option meets"):
        p.solve()


def test_bad_input_errors():
    sc = _scenario(80)
    p = Problem(sc)
    with pytest.raises(InputError, match="scenario"):
        Problem("not a scenario")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="non-convex"):
        p.add(p.round_latency() >= 1.0)
    with pytest.raises(InputError, match="affine expression to maximise"):
        p.maximize(p.round_latency())
    with pytest.raises(InputError, match="device"):
        p.memory("no-such-device")
    with pytest.raises(InputError, match="batch"):
        Problem(sc, batch=[0, 4])
    with pytest.raises(InputError, match="pin side"):
        p.pin("n0", "cloud")
    with pytest.raises(InputError, match="objective"):
        p.solve()
    with pytest.raises(InputError, match="not linear"):
        p.memory(0) * p.memory(1)
    p.minimize(p.round_latency())
    with pytest.raises(InputError, match="backend"):
        p.solve(backend="gurobi-xyz")
    with pytest.raises(InputError, match="path"):
        p.solve(path="magic")
    with pytest.raises(InputError, match="time_limit"):
        p.solve(time_limit=-1)
    with pytest.raises(InputError, match="path"):
        p.solve(path="server-share")
    p.pin("n0", "server")
    before = p.allowed.copy()
    with pytest.raises(InputError, match=r"pin\('n0', 'device'\).*leaves at least one option"):
        p.pin("n0", "device")
    assert np.array_equal(before, p.allowed)  # a refused restriction changes nothing


def test_solving_does_not_mutate_the_problem_or_scenario():
    sc = _scenario(90)
    p = Problem(sc)
    p.minimize(p.round_latency())
    allowed, lb = p.allowed.copy(), p.col_lb.copy()
    r1, r2 = p.solve(), p.solve(path="generic")
    assert np.array_equal(allowed, p.allowed) and np.array_equal(lb, p.col_lb)
    assert r1.plan.predicted.round_latency_s == pytest.approx(r2.objective, rel=1e-5)
    with pytest.raises(AttributeError):
        r1.plan.devices[0].bandwidth_share = 1.0  # frozen


def test_program_is_inspectable_and_exports(tmp_path):
    sc = _scenario(91)
    p = Problem(sc)
    p.minimize(p.round_latency())
    with_cones = p.compile(linear=False)
    assert len(with_cones.cones) > 0 and not with_cones.is_linear
    prog = p.compile()
    assert prog.is_mip and prog.A.format == "csr" and len(prog.col_names) == prog.n_cols
    write_program(prog, tmp_path / "p.mps")
    write_program(prog, tmp_path / "p.lp")
    assert "onehot" in (tmp_path / "p.lp").read_text()
    with pytest.raises(InputError, match=".mps"):
        write_program(prog, tmp_path / "p.txt")


def test_time_limit_returns_plan_and_bound():
    rng = np.random.default_rng(3)
    sc = random_scenario(rng, random_dag(rng, 12, chain=True), 40)
    p = Problem(sc, server_share=True)
    p.minimize(p.round_latency())
    r = p.solve(path="generic", time_limit=0.05)
    assert r.termination == "time_limit"
    assert r.plan is not None and r.bound is not None and r.bound <= r.objective
    assert r.plan.status == "time_limit"


def test_warm_start_resolve_and_log():
    sc = _scenario(92)
    p = Problem(sc)
    p.minimize(p.round_latency())
    first = p.solve(path="generic", log=True)
    assert "HiGHS" in first.log and first.iterations >= 1
    again = p.solve(path="generic", warm_start=first)
    assert again.objective == pytest.approx(first.objective, rel=1e-6)


def test_problem_registry_is_extensible():
    assert {"minmax", "minmax-server", "energy"} <= set(PROBLEMS)

    @register("test-only-energy")
    def build(scenario):
        q = Problem(scenario)
        q.minimize(q.total_energy())
        return q

    sc = _scenario(93)
    r = get("test-only-energy")(sc).solve()
    assert r.path == "separable"
    o, k = get("test-only-energy")(sc).options, np.arange(3)
    brute = min(np.sum(o.e_comp[k, c]) + np.sum(np.sqrt(o.e_tx[k, c])) ** 2
                for c in itertools.product(range(o.n_options), repeat=3))
    assert r.objective == pytest.approx(brute, rel=1e-7)
    assert sum(r.plan.predicted.per_device[d.device].energy_j for d in r.plan.devices) == \
        pytest.approx(r.objective, rel=1e-7)
    del PROBLEMS["test-only-energy"]


def test_mccormick_product_is_exact():
    """A selected device must receive at least 0.2 of a user budget x; unselected ones get 0."""
    sc = _scenario(94)
    p = Problem(sc, selection=True)
    alloc = p.add_variable("alloc", 3, lb=0.0, ub=1.0)
    got = [p.product(p.selected[k], alloc[k], name=f"got{k}") for k in range(3)]
    p.add(sum(alloc[k] for k in range(3)) <= 0.5, name="budget")
    for k in range(3):
        p.add(got[k] >= 0.2 * p.selected[k])
    p.add(sum(p.selected[k] for k in range(3)) >= 1)
    p.minimize(-1.0 * sum(got))  # give the selected devices as much as the budget allows
    r = p.solve()
    sel = [d.selected for d in r.plan.devices]
    a = r.values["alloc"]
    # at most two devices fit (0.2 each within 0.5), and w = alloc exactly on selected devices
    assert 1 <= sum(sel) <= 2
    for k in range(3):
        w = r.values[f"got{k}"][0]
        assert w == pytest.approx(a[k] if sel[k] else 0.0, abs=1e-7)
    assert r.objective == pytest.approx(-0.5, abs=1e-7)
    with pytest.raises(InputError, match="finite bounds"):
        p.product(p.selected[0], p.add_variable("free", lb=0.0).expr)
