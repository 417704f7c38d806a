"""Adaptive runs: re-splitting mid-training moves layers and optimiser state, not the result."""

from __future__ import annotations

import json

import pytest
import torch

from splitopt.errors import InputError
from splitopt.execute.adaptive import Adaptation, resplit
from splitopt.execute.examples import DIGITS_CUTS, digits_job
from splitopt.execute.loop import run_rounds
from splitopt.execute.runner import InProcessRunner, final_state, train
from splitopt.traces import FleetTrace, steps

ALL = frozenset(DIGITS_CUTS["fc1"]) | {"relu3", "fc2"}  # everything but the loss on the device
SERVER_ONLY = frozenset({"x"})


def _job(optimizer: str, rounds: int = 4):
    return digits_job(2, mode="sflv1", cuts=["conv1", "relu2"], rounds=rounds, local_iters=3,
                      lr=0.01 if optimizer == "adam" else 0.05, optimizer=optimizer)


def _run(job, schedule):
    """Train in process, re-cutting devices before the rounds ``schedule`` names."""
    runner = InProcessRunner(job)

    def before(rnd: int, _elapsed: float) -> None:
        for name, side in schedule.get(rnd, {}).items():
            resplit(job, runner.devices[name], runner.server, frozenset(side))

    run_rounds(job, runner, before_round=before)
    return runner, final_state(runner.server, True)["global"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resplit_mid_training_gives_the_same_parameters(optimizer):
    job = _job(optimizer)
    _, kept = _run(job, {})
    schedule = {1: {"dev0": DIGITS_CUTS["fc1"], "dev1": SERVER_ONLY},
                2: {"dev0": SERVER_ONLY, "dev1": ALL},
                3: {"dev0": DIGITS_CUTS["relu2"], "dev1": DIGITS_CUTS["conv1"]}}
    _, moved = _run(job, schedule)
    assert kept.keys() == moved.keys()
    for n in kept:
        torch.testing.assert_close(moved[n], kept[n], rtol=1e-5, atol=1e-6, msg=n)
    # and the re-split run did train: the weights moved away from the initial ones
    init = job.build_model()[0].state_dict()
    assert any(not torch.allclose(init[n], kept[n]) for n in kept)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimiser_state_moves_with_the_layers(optimizer):
    job = _job(optimizer, rounds=1)
    runner, _ = _run(job, {})
    dev, srv = runner.devices["dev0"], runner.server
    dev_opt_before = dev.holder.opt
    state = {n: {k: v.clone() for k, v in dev_opt_before.state[p].items()}
             for n, p in dev.model.named_parameters() if p in dev_opt_before.state}
    assert "conv1.weight" in state and "fc1.weight" not in state
    srv_state = {n: {k: v.clone() for k, v in srv.holder("dev0").opt.state[p].items()}
                 for n, p in srv.holder("dev0").module.named_parameters()
                 if p in srv.holder("dev0").opt.state}
    conv1_w = dev.model.state_dict()["conv1.weight"].clone()
    resplit(job, dev, srv, SERVER_ONLY)  # conv1 moves to the server with its state
    assert dev.holder.opt is None and list(dev.module.parameters()) == []
    full = dict(srv.holder("dev0").module.named_parameters())
    opt = srv.holder("dev0").opt
    assert set(state) | set(srv_state) == {n for n, p in full.items() if p in opt.state}
    for n, st in {**state, **srv_state}.items():
        for k, v in st.items():
            torch.testing.assert_close(opt.state[full[n]][k], v, rtol=0, atol=0)
    torch.testing.assert_close(full["conv1.weight"].detach(), conv1_w, rtol=0, atol=0)
    resplit(job, dev, srv, ALL)  # and everything comes back to the device
    dev_params = dict(dev.model.named_parameters())
    for n, st in {**state, **srv_state}.items():
        for k, v in st.items():
            torch.testing.assert_close(dev.holder.opt.state[dev_params[n]][k], v, rtol=0, atol=0)
    assert srv.holder("dev0").opt is None


def _trace(t_drop: float, t_back: float) -> FleetTrace:
    return FleetTrace.of([steps("dev1", [0.0, t_drop, t_back], [2e6, 2e4, 2e6])])


def test_adaptive_run_replans_when_the_trace_changes_and_matches_the_static_weights():
    job = digits_job(2, mode="sflv1", cuts=["conv1", "relu2"], rounds=5, local_iters=2)
    trace = _trace(1e-9, 1e9)  # dev1's link drops 100x after round 0 and stays down
    adaptive = train(job, trace=trace, adaptive=True)
    static = train(job, trace=trace, adaptive=False)
    assert static.replans == []
    rounds = {r["round"] for r in adaptive.replans}
    assert rounds and min(rounds) >= 0
    row = next(r for r in adaptive.replans if r["device"] == "dev1" and r["round"] >= 1)
    assert row["new_share"] > row["old_share"]  # the slow link gets more of the band
    assert {"old_cut", "new_cut", "replan_ms", "time_s"} <= set(row)
    for n, t in static.final_state["global"].items():
        torch.testing.assert_close(adaptive.final_state["global"][n], t, rtol=1e-5, atol=1e-6)
    json.dumps(adaptive.to_dict())
    # the static plan keeps its shares: dev1's uplink time grows 100x on the slow link
    up = [r.devices["dev1"].uplink_s for r in static.history]
    assert up[1] > 50 * up[0]


def test_adaptive_refuses_shared_server_modes_and_unknown_trace_devices():
    with pytest.raises(InputError, match="sflv1"):
        Adaptation(digits_job(2, mode="sflv2", cuts=["conv1", "relu2"]), _trace(1, 2))
    with pytest.raises(InputError, match="trace devices"):
        Adaptation(digits_job(2, cuts=["conv1", "relu2"]),
                   FleetTrace.of([steps("nope", [0.0], [1e6])]))
    with pytest.raises(InputError, match="optimizer"):
        digits_job(2, optimizer="lbfgs")



def test_cli_run_follows_a_trace_and_records_each_replan(tmp_path):
    from dataclasses import replace

    from test_execute_cli import SCENARIO
    from typer.testing import CliRunner

    from splitopt.cli import app
    from splitopt.execute.examples import digits_plan, digits_scenario

    (tmp_path / "sc.yaml").write_text(SCENARIO.replace("rounds: 2", "rounds: 3"))
    sc = digits_scenario(2)
    plan = replace(digits_plan(sc, ["conv1", "relu2"]), meta={"scenario": "sc.yaml"})
    plan.save(tmp_path / "plan.json", sc)
    csv = tmp_path / "trace.csv"
    csv.write_text("time_s,device,up_bps,dn_bps\n0,dev1,2e6,2e6\n1e-9,dev1,2e4,2e4\n")
    docs = {}
    for flag in ("--adaptive", "--static"):
        res = CliRunner().invoke(app, ["run", str(tmp_path / "plan.json"), "--trace", str(csv),
                                       flag, "--json", "--optimizer", "adam", "--lr", "0.01"])
        assert res.exit_code == 0, res.output
        docs[flag] = json.loads(res.output)
    ad, st = docs["--adaptive"], docs["--static"]
    assert ad["trace"] == {"file": str(csv), "adaptive": True}
    assert ad["config"]["optimizer"] == "adam"
    assert st["replans"] == [] and ad["replans"]
    assert {"round", "device", "old_cut", "new_cut", "old_share", "new_share",
            "replan_ms"} <= set(ad["replans"][0])
    # the same data order and the same computation: the same accuracy, but not the same time
    assert ad["final_test_accuracy"] == pytest.approx(st["final_test_accuracy"], abs=1e-9)
    assert sum(r["latency_s"] for r in ad["rounds"]) < sum(r["latency_s"] for r in st["rounds"])
    bad = CliRunner().invoke(app, ["run", str(tmp_path / "plan.json"), "--trace", str(csv),
                                   "--mode", "sflv2"])
    assert isinstance(bad.exception, InputError) and "sflv1" in str(bad.exception)


def test_multi_process_adaptive_run_moves_cuts_and_state_and_matches_in_process():
    from splitopt.benchmarks.adaptive import fleet_job, fleet_trace

    from splitopt.execute.launch import launch

    job = fleet_job(3).with_config(local_iters=2)  # cuts planned for 20 iterations, 2 run
    res = launch(job, trace=fleet_trace(1e-9, 1e9), adaptive=True, links="auto")
    moved = [r for r in res.replans if r["round"] == 1 and r["old_cut"] != r["new_cut"]]
    assert moved, res.replans  # the drop moved cuts after a round of training (state moved)
    assert res.links in ("htb", "paced")
    kept = train(job)  # one cut, the planned links: the same computation
    for n, t in kept.final_state["global"].items():
        torch.testing.assert_close(res.final_state["global"][n], t, rtol=1e-5, atol=1e-5)
