"""Planned == executed: each formulation's priced round equals the executor's predicted round for
the same plan, and the in-process run's simulated transfers equal the priced ones."""

from __future__ import annotations

import pytest
from splitopt.formulations.edgesplit import EdgeSplit
from splitopt.formulations.hsfl import HSFL, Surrogate
from splitopt.formulations.sfl import SFL

from splitopt.execute.examples import digits_scenario
from splitopt.execute.job import Job, RunConfig
from splitopt.execute.runner import train
from splitopt.execute.timing import predict
from splitopt.plan import evaluate


def _hsfl() -> HSFL:
    # G large enough that some devices pick FL and others SL on this fleet
    return HSFL(surrogate=Surrogate(A=50.0, G=0.05, sigma2=0.5, eps=1.0), batches=[4, 8, 16])


CASES = [  # (formulation, executor mode, server serving)
    (EdgeSplit(), "psl", "shared"), (EdgeSplit(), "psl", "dedicated"),
    (EdgeSplit(), "psl", "sequential"), (SFL(), "sflv1", "shared"),
    (SFL(), "sflv2", "shared"), (SFL(), "sflv1", "dedicated"), (SFL(), "sflv1", "sequential"),
    (SFL(), "sl", "sequential"), (_hsfl(), "hsfl", "shared"),
]


def _job(form, mode: str, serving: str, n: int = 3, **config) -> tuple[Job, object]:
    sc = digits_scenario(n, snr_db=[0.0, 12.0, 25.0][:n], local_iters=2)
    sc = sc.replace(server=sc.server.model_copy(update={"serving": serving}))
    scen = form.scenario_for(sc)
    plan = form.solve(scen)
    return Job(plan, scen, "digits_cnn", RunConfig(mode=mode, **config)), plan


@pytest.mark.parametrize(("form", "mode", "serving"), CASES,
                         ids=[f"{f.name}-{m}-{s}" for f, m, s in CASES])
def test_priced_round_equals_the_executors_predicted_round(form, mode, serving) -> None:
    job, plan = _job(form, mode, serving)
    priced = evaluate(job.scenario, plan)
    per_device, latency = predict(job)
    assert latency == pytest.approx(priced.round_latency_s, rel=1e-12)
    for name, ph in per_device.items():
        assert ph.round_s == pytest.approx(priced.per_device[name].round_s, rel=1e-12)


def test_hsfl_plan_runs_as_planned() -> None:
    """A hybrid HSFL plan (one FL device, two SL devices with their own cuts and batches) runs
    as planned: SL devices in turn through one server model, FL devices in parallel; the run's
    simulated transfers (bytes actually sent over the planned rates) equal the priced phases,
    and the executor's predicted round equals the formulation's."""
    import numpy as np
    from splitopt.formulations.hsfl import Config, config_latency

    form = _hsfl()
    sc = form.scenario_for(digits_scenario(3, snr_db=[0.0, 12.0, 25.0], local_iters=2))
    data = form.data(sc)
    cfg = Config(np.array([0, 2, 5]), np.array([True, False, False]), np.array([2, 0, 1]))
    plan = form.plan(sc, data, cfg, method="hand")
    job = Job(plan, sc, "digits_cnn", RunConfig(mode="hsfl", rounds=1))
    priced = evaluate(sc, plan)
    assert predict(job)[1] == pytest.approx(priced.round_latency_s, rel=1e-12)
    assert priced.round_latency_s == pytest.approx(config_latency(data, cfg)[0], rel=1e-9)
    res = train(job)
    for name, st in res.history[0].devices.items():
        ph = priced.per_device[name]
        assert st.uplink_s + st.downlink_s == pytest.approx(ph.uplink_s + ph.downlink_s, rel=1e-9)
        assert st.aggregation_s == pytest.approx(ph.aggregation_s, rel=1e-9)
    sl = [d.bandwidth_share for d in plan.devices if d.mode == "split"]
    assert sl[0] == sl[1] and plan.devices[0].bandwidth_share + sl[0] == pytest.approx(1.0)


def test_an_all_fl_hsfl_plan_prices_as_fedavg_runs() -> None:
    import numpy as np
    from splitopt.formulations.hsfl import Config

    form = _hsfl()
    sc = form.scenario_for(digits_scenario(3, snr_db=[0.0, 12.0, 25.0], local_iters=2))
    plan = form.plan(sc, form.data(sc), Config(np.zeros(3, int), np.ones(3, bool),
                                               np.array([0, 1, 2])), method="hand")
    for mode in ("hsfl", "fl"):
        job = Job(plan, sc, "digits_cnn", RunConfig(mode=mode))
        assert predict(job)[1] == pytest.approx(evaluate(sc, plan).round_latency_s, rel=1e-12)
