"""Training modes on digits in one process: they learn, match their oracles, use the plan."""

from __future__ import annotations

import pytest
import torch

from splitopt import zoo
from splitopt.errors import InputError
from splitopt.execute.data import DeviceData
from splitopt.execute.examples import digits_job, digits_scenario
from splitopt.execute.job import RunConfig
from splitopt.execute.runner import train
from splitopt.plan import evaluate


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny models on a shared 2-core machine: one intra-op thread avoids spin-wait contention
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


FAST = dict(rounds=4, lr=0.1, local_iters=4)


def close(a: dict, b: dict, **tol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol)


@pytest.mark.parametrize("mode", ["sl", "sflv1", "sflv2", "psl", "hsfl", "fl"])
def test_every_mode_decreases_the_loss(mode: str) -> None:
    modes = ["split", "fl", "split"] if mode == "hsfl" else None
    res = train(digits_job(3, mode=mode, modes=modes, **FAST))
    first, last = res.history[0], res.history[-1]
    assert last.train_loss < first.train_loss
    assert last.test_loss < res.initial_test[0]
    assert len(res.history) == 4 and not res.failed


def test_sflv1_equals_fedavg_of_whole_models() -> None:
    # SplitFed V1 with a server copy per device computes exactly what FedAvg computes.
    v1 = train(digits_job(3, mode="sflv1", iid=False, **FAST))
    fl = train(digits_job(3, mode="fl", iid=False, **FAST))
    close(v1.final_state["global"], fl.final_state["global"], rtol=1e-5, atol=1e-6)


def test_one_device_sl_equals_plain_torch_training() -> None:
    job = digits_job(1, mode="sl", cuts=["relu2"], rounds=2, lr=0.1, local_iters=5)
    res = train(job)
    model, _ = job.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=job.config.momentum)
    data = DeviceData(job.data().shards["dev0"], seed=job.config.seed * 7919)
    loss_fn = zoo.loss_fn("digits_cnn")
    for _ in range(2 * 5):
        x, y = data.next(job.batch_size(job.devices()[0]))
        loss_fn(model(*x), y).backward()
        opt.step()
        opt.zero_grad()
    close(res.final_state["global"], model.state_dict(), rtol=1e-5, atol=1e-6)


def test_measured_bytes_equal_the_cost_model_with_the_plans_cut_and_batch() -> None:
    job = digits_job(3, mode="sflv1", cuts=["conv1", "relu2", "fc1"], batch_sizes=[8, 16, 24],
                     rounds=1, local_iters=2)
    res = train(job)
    sc = job.scenario.replace(training=job.scenario.training.model_copy(update={"local_iters": 2}))
    pred = evaluate(sc, job.plan).per_device
    for name, st in res.history[0].devices.items():
        assert st.samples == 2 * job.batch_size(job.plan.device(name))
        assert st.up_bytes + st.down_bytes == pytest.approx(pred[name].comm_bytes)


def test_parallel_sl_keeps_device_models_apart() -> None:
    res = train(digits_job(2, mode="psl", cuts=["relu2", "relu2"], iid=False, rounds=1))
    a, b = (res.final_state["devices"][d] for d in ("dev0", "dev1"))
    assert not torch.allclose(a["conv1.weight"], b["conv1.weight"])
    assert set(res.final_state["server"]) >= {"fc2.weight"}


def test_sl_device_order_matters_but_sflv2_server_is_shared() -> None:
    sl = train(digits_job(2, mode="sl", rounds=1))
    v2 = train(digits_job(2, mode="sflv2", rounds=1))
    v1 = train(digits_job(2, mode="sflv1", rounds=1))
    g = [r.final_state["global"]["fc2.weight"] for r in (sl, v2, v1)]
    assert not torch.allclose(g[0], g[1]) and not torch.allclose(g[1], g[2])


def test_bad_settings_are_refused_with_the_field_named() -> None:
    with pytest.raises(InputError, match="mode: got 'sfl3'"):
        RunConfig(mode="sfl3")
    with pytest.raises(InputError, match="plan device mode.*--mode hsfl"):
        digits_job(2, mode="sflv2", modes=["split", "fl"])
    with pytest.raises(InputError, match="faults device"):
        digits_job(2, faults={"nobody": (0, 0)})
    with pytest.raises(InputError, match="rounds"):
        RunConfig(rounds=0)
    with pytest.raises(InputError, match="checkpoint_dir"):
        RunConfig(checkpoint_every=1)


def test_in_process_fault_drops_the_device_and_the_round_completes() -> None:
    res = train(digits_job(3, mode="sflv1", faults={"dev1": (1, 2)}, **FAST))
    assert res.history[1].failed == ["dev1"] and res.failed == ["dev1"]
    assert res.history[1].devices["dev1"].iterations == 2
    assert "dev1" not in res.history[2].devices
    assert res.history[-1].test_loss < res.initial_test[0]


def test_simulated_transfer_times_follow_the_rates() -> None:
    slow = train(digits_job(2, rounds=1, scenario=digits_scenario(2, bandwidth_hz=1e5)))
    fast = train(digits_job(2, rounds=1, scenario=digits_scenario(2, bandwidth_hz=1e7)))
    for d in ("dev0", "dev1"):
        s, f = slow.history[0].devices[d], fast.history[0].devices[d]
        assert s.uplink_s == pytest.approx(100 * f.uplink_s)
        assert s.aggregation_s == pytest.approx(100 * f.aggregation_s)


@pytest.mark.parametrize("mode", ["sflv2", "psl"])
def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path, mode: str) -> None:
    kw = dict(mode=mode, iid=False, local_iters=2, lr=0.1)
    full = train(digits_job(2, rounds=3, **kw))
    # a run stopped after its first round, with a checkpoint, then resumed to round 3
    train(digits_job(2, rounds=1, checkpoint_every=1, checkpoint_dir=str(tmp_path), **kw))
    resumed = train(digits_job(2, rounds=3, **kw), resume=tmp_path)
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in full.history]
    for key in ("global",) if mode == "sflv2" else ("server",):
        close(resumed.final_state[key], full.final_state[key], rtol=0, atol=0)
    if mode == "psl":
        for d in ("dev0", "dev1"):
            close(resumed.final_state["devices"][d], full.final_state["devices"][d], rtol=0,
                  atol=0)


def test_resume_restores_the_random_streams_of_a_dropout_model(tmp_path) -> None:
    from splitopt.execute.examples import mlp_job

    kw = dict(mode="sflv2", local_iters=3, lr=0.1)
    full = train(mlp_job(2, rounds=3, **kw))
    train(mlp_job(2, rounds=1, checkpoint_every=1, checkpoint_dir=str(tmp_path), **kw))
    resumed = train(mlp_job(2, rounds=3, **kw), resume=tmp_path)
    close(resumed.final_state["global"], full.final_state["global"], rtol=0, atol=0)
    # the dropout draws differ between rounds: a run that re-seeded at round 1 would differ
    assert full.history[1].train_loss != full.history[0].train_loss


@pytest.mark.parametrize(("modes", "same_as"), [(["split"] * 3, "sl"), (["fl"] * 3, "fl")])
def test_hsfl_is_sl_in_turn_and_fl_in_parallel(modes, same_as) -> None:
    """HSFL's SL devices form a vanilla-SL chain through one server model; its FL devices are
    FedAvg: with every device in one mode it computes exactly what that mode computes."""
    kw = dict(iid=False, rounds=2, lr=0.1, local_iters=3)
    hsfl = train(digits_job(3, mode="hsfl", modes=modes, **kw))
    ref = train(digits_job(3, mode=same_as, modes=modes if same_as == "fl" else None, **kw))
    close(hsfl.final_state["global"], ref.final_state["global"], rtol=0, atol=0)


def test_hsfl_fedavg_weighs_the_sl_chain_by_all_its_samples() -> None:
    from splitopt.execute.modes import get_mode

    mode = get_mode("hsfl").for_plan(digits_job(3, mode="hsfl",
                                                modes=["split", "fl", "split"]).devices())
    ev = mode.round_events(0, ["dev0", "dev1", "dev2"], 2)
    assert [type(e).__name__ for e in ev] == ["Sync", "Step", "Step", "Sync", "Step", "Step",
                                              "Collect", "Sync", "Step", "Step", "Collect"]
    assert ev[-1].devices == ("dev1", "dev2")
    w = mode.collect_weights({"dev0": 10.0, "dev1": 20.0, "dev2": 30.0}, ["dev0", "dev2"])
    assert w == {"dev0": 40.0, "dev1": 20.0, "dev2": 40.0}
