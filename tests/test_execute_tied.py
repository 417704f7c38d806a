"""A GPT-2 whose tied weight (``transformer.wte`` / ``lm_head``) crosses the cut trains split.

Split right after the token embedding, the device holds ``wte`` and the server ``lm_head``, one
weight in the whole model. Each side keeps a copy; per iteration the server sends its gradient of
its copy with the boundary gradients, the device sends its own back, and both copies step with
the sum (docs/executors.md, "Weights tied across the cut"). SL (one device, or several in turn)
equals unsplit training, SFL-V1 equals FedAvg of whole models, in process and over processes;
modes in which the copies could not stay equal are refused.
"""

from __future__ import annotations

import pytest
import torch

from splitopt import zoo
from splitopt.costs import CutTable
from splitopt.errors import InputError
from splitopt.execute.data import DeviceData
from splitopt.execute.examples import digits_scenario
from splitopt.execute.job import Job, RunConfig
from splitopt.execute.runner import train
from splitopt.plan import DevicePlan, Plan, evaluate
from splitopt.profiler import profile, toy

GPT = {"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 50, "n_positions": 8,
       "seq_len": 8, "dropout": 0.0}
ITERS, BATCH = 3, 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with toy.one_thread():
        yield


def gpt_job(n_devices: int, mode: str, *, rounds: int = 2, cut: str = "embedding",
            **config) -> Job:
    """``cut``: right after the embedding, or half-way through the layers (wte still crosses)."""
    model, ex = zoo.build("gpt2", batch_size=1, **GPT)
    graph = profile(model, ex)
    side = graph.pred_closure(["transformer.wte"])  # lm_head (the same weight) stays behind
    if cut == "half":
        side = graph.chain_prefixes()[len(graph.names) // 2]
    sc = digits_scenario(n_devices, graph=graph, batch_size=BATCH, local_iters=ITERS)
    devs = tuple(DevicePlan(d.name, side, 1.0 / n_devices) for d in sc.devices)
    cfg = RunConfig(mode=mode, rounds=rounds, lr=0.1, samples_per_device=16, **config)
    return Job(Plan(devs, method="example"), sc, "gpt2", cfg, model_config=GPT)


def unsplit_in_turn(job: Job) -> dict[str, torch.Tensor]:
    """Plain torch training of the whole model on the devices' batches, device after device."""
    model, _ = job.build_model()
    cfg = job.config
    opt = (torch.optim.Adam(model.parameters(), lr=cfg.lr) if cfg.optimizer == "adam" else
           torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum))
    shards = job.data().shards
    data = [DeviceData(shards[d.device], seed=job.config.seed * 7919 + i)
            for i, d in enumerate(job.devices())]
    loss_fn = job.loss_fn()
    for _ in range(job.config.rounds):
        for dd in data:
            for _ in range(ITERS):
                x, y = dd.next(BATCH)
                loss_fn(model(*x), y).backward()
                opt.step()
                opt.zero_grad()
    return model.state_dict()


def close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_the_cut_has_a_weight_tied_across_it() -> None:
    job = gpt_job(1, "sl")
    table = CutTable.from_sets(job.scenario.graph, [job.devices()[0].device_side])
    assert table.tied_bytes.tolist() == [50 * 16 * 4.0]


@pytest.mark.parametrize(("cut", "optimizer"), [("embedding", "sgd"), ("half", "sgd"),
                                               ("embedding", "adam")])
def test_one_device_sl_equals_unsplit_training_with_optimiser_state(cut: str,
                                                                    optimizer: str) -> None:
    # SGD with momentum 0.9, or Adam (lr 0.01): both sides' optimiser states stay equal
    lr = 0.01 if optimizer == "adam" else 0.1
    job = gpt_job(1, "sl", momentum=0.9, cut=cut, optimizer=optimizer).with_config(lr=lr)
    side = job.devices()[0].device_side
    assert CutTable.from_sets(job.scenario.graph, [side]).tied_bytes[0] > 0  # wte | lm_head
    res = train(job)
    global_ = res.final_state["global"]
    close(global_, unsplit_in_turn(job))
    # the two names of the weight hold one value
    torch.testing.assert_close(global_["lm_head.weight"], global_["transformer.wte.weight"])


def test_sl_devices_in_turn_equal_unsplit_training_and_carry_the_tied_gradients() -> None:
    job = gpt_job(2, "sl", momentum=0.0)
    res = train(job)
    close(res.final_state["global"], unsplit_in_turn(job))
    tied = 50 * 16 * 4
    for st in res.history[0].devices.values():
        # per iteration: the boundary (batch x seq x n_embd floats, and the sequence length
        # that crosses as a number) up and its gradient down, plus one tied gradient each way
        boundary = BATCH * 8 * 16 * 4
        # and the device part (the embedding, as many bytes as the tied weight) each way
        assert st.up_bytes == ITERS * (boundary + tied + 8) + tied
        assert st.down_bytes == ITERS * (boundary + tied) + tied


def test_sflv1_with_tied_weights_equals_fedavg_of_whole_models() -> None:
    v1 = train(gpt_job(2, "sflv1", momentum=0.9))
    fl = train(gpt_job(2, "fl", momentum=0.9))
    close(v1.final_state["global"], fl.final_state["global"])


@pytest.mark.parametrize("mode", ["sflv2", "psl"])
def test_modes_that_would_part_the_copies_are_refused(mode: str) -> None:
    with pytest.raises(InputError, match="sl', 'sflv1', 'hsfl'"):
        train(gpt_job(2, mode, rounds=1))


def test_sl_devices_in_turn_with_momentum_are_refused() -> None:
    with pytest.raises(InputError, match="momentum 0"):
        train(gpt_job(2, "sl", rounds=1, momentum=0.9))


def test_multi_process_sl_equals_in_process(tmp_path) -> None:
    from splitopt.execute.launch import launch

    job = gpt_job(2, "sl", momentum=0.0, rounds=1)
    res = launch(job, timeout_s=120)
    close(res.final_state["global"], unsplit_in_turn(job))
    inproc = train(job)
    for d, st in res.history[0].devices.items():
        assert st.up_bytes == inproc.history[0].devices[d].up_bytes


def test_the_priced_round_lacks_exactly_the_tied_gradient_traffic() -> None:
    # The reference pricing (costs.device_phases) does not add CutTable.tied_bytes yet
    # (docs/executors.md, "Weights tied across the cut"): the executor moves the priced bytes
    # plus one tied gradient each way per iteration (and the 8-byte sequence length per batch).
    job = gpt_job(2, "sl", momentum=0.0, rounds=1)
    res = train(job)
    tied = CutTable.from_sets(job.scenario.graph, [job.devices()[0].device_side]).tied_bytes[0]
    pred = evaluate(job.scenario, job.plan).per_device
    for d, st in res.history[0].devices.items():
        assert st.up_bytes + st.down_bytes == pred[d].comm_bytes + ITERS * (2 * tied + 8)


def test_hsfl_keeps_the_sl_devices_copies_equal_to_the_servers() -> None:
    from splitopt.execute.loop import run_rounds
    from splitopt.execute.runner import InProcessRunner

    job = gpt_job(2, "hsfl", momentum=0.9)
    graph = job.scenario.graph
    fl = DevicePlan("dev1", frozenset(graph.names), 0.5, mode="fl")
    job = Job(Plan((job.devices()[0], fl), method="example"), job.scenario, job.model,
              job.config, model_config=GPT)
    runner = InProcessRunner(job)
    history = run_rounds(job, runner)
    assert history[-1].train_loss < history[0].train_loss
    device = dict(runner.devices["dev0"].module.named_parameters())["transformer.wte.weight"]
    server = dict(runner.server.views["dev0"].named_parameters())["lm_head.weight"]
    assert device is not server
    torch.testing.assert_close(device, server, rtol=1e-6, atol=1e-7)
