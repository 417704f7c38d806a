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
        # per iteration: the boundary (batch x seq x n_embd floats; the sequence length is
        # read off its shape on the server) up and its gradient down, one tied gradient each way
        boundary = BATCH * 8 * 16 * 4
        # and the device part (the embedding, as many bytes as the tied weight) each way
        assert st.up_bytes == ITERS * (boundary + tied) + tied
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


def hsfl_job(momentum: float = 0.9, **config) -> Job:
    """One SL device (its cut has the tied weight across) beside one FL device."""
    job = gpt_job(2, "hsfl", momentum=momentum, **config)
    fl = DevicePlan("dev1", frozenset(job.scenario.graph.names), 0.5, mode="fl")
    return Job(Plan((job.devices()[0], fl), method="example"), job.scenario, job.model,
               job.config, model_config=GPT)


@pytest.mark.parametrize("mode", ["sl", "sflv1", "hsfl"])
def test_bytes_sent_are_the_bytes_priced(mode: str) -> None:
    # the tied gradient each way per iteration is priced (costs.device_phases: CutTable
    # tied_bytes), and nothing else crosses: the sequence length is not sent
    job = hsfl_job(0.0, rounds=1) if mode == "hsfl" else gpt_job(2, mode, momentum=0.0, rounds=1)
    res = train(job)
    tied = CutTable.from_sets(job.scenario.graph, [job.devices()[0].device_side]).tied_bytes[0]
    assert tied == 50 * 16 * 4
    pred = evaluate(job.scenario, job.plan).per_device
    for d, st in res.history[0].devices.items():
        # an FL-mode device's model names the tied weight twice (transformer.wte.weight,
        # lm_head.weight) and sends it once each way, as W(V) prices it
        assert st.up_bytes + st.down_bytes == pred[d].comm_bytes
        assert st.up_bytes == st.down_bytes  # activations/gradients, tied gradients, the part
        # links priced (the in-process default): each transfer takes 8 * bytes / rate, so the
        # measured link phases are the predicted ones
        assert st.uplink_s == pytest.approx(pred[d].uplink_s, rel=1e-9)
        assert st.downlink_s == pytest.approx(pred[d].downlink_s, rel=1e-9)


def test_the_tied_traffic_is_two_gradients_per_iteration_not_per_sample() -> None:
    job = gpt_job(1, "sl", momentum=0.0, rounds=1)
    side = job.devices()[0].device_side
    sc = job.scenario
    costs = {b: evaluate(sc.replace(training=sc.training.model_copy(update={"batch_size": b})),
                         job.plan).per_device["dev0"].comm_bytes for b in (BATCH, 2 * BATCH)}
    boundary = 8 * 16 * 4  # bytes per sample each way
    tied = CutTable.from_sets(sc.graph, [side]).tied_bytes[0]
    assert costs[2 * BATCH] - costs[BATCH] == ITERS * 2 * BATCH * boundary
    assert costs[BATCH] == ITERS * 2 * (BATCH * boundary + tied) + 2 * tied  # + the part


def test_hsfl_keeps_the_sl_devices_copies_equal_to_the_servers() -> None:
    from splitopt.execute.loop import run_rounds
    from splitopt.execute.runner import InProcessRunner

    job = hsfl_job()
    runner = InProcessRunner(job)
    history = run_rounds(job, runner)
    assert history[-1].train_loss < history[0].train_loss
    device = dict(runner.devices["dev0"].module.named_parameters())["transformer.wte.weight"]
    server = dict(runner.server.views["dev0"].named_parameters())["lm_head.weight"]
    assert device is not server
    torch.testing.assert_close(device, server, rtol=1e-6, atol=1e-7)


def send_every_name(runner) -> None:
    """The exchange before the tied weight was sent once: every state_dict name is sent."""
    server = runner.server
    for w in runner.devices.values():
        w.aliases = {}
    server.aliases = {}
    for d in server.devices:
        if d not in server.split_devices:
            server.device_names[d] = list(server.global_model.state_dict())


def shares_the_tied_weight(module: torch.nn.Module) -> bool:
    state = module.state_dict()
    return state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()


@pytest.mark.parametrize("mode", ["hsfl", "fl"])
def test_sending_the_tied_weight_once_trains_as_sending_every_name(mode: str) -> None:
    from splitopt.execute.loop import run_rounds
    from splitopt.execute.runner import InProcessRunner

    job = hsfl_job() if mode == "hsfl" else gpt_job(2, "fl", momentum=0.9)
    once, every = InProcessRunner(job), InProcessRunner(job)
    send_every_name(every)
    h_once, h_every = run_rounds(job, once), run_rounds(job, every)
    tied = 50 * 16 * 4
    for d in ("dev0", "dev1"):
        if once.devices[d].mode != "fl":
            continue
        for r in range(job.config.rounds):  # the weight once each way, not twice
            a, b = h_once[r].devices[d], h_every[r].devices[d]
            assert (a.up_bytes, a.down_bytes) == (b.up_bytes - tied, b.down_bytes - tied)
        assert shares_the_tied_weight(once.devices[d].module)
    # the same parameters after the rounds, to the bit
    g_once, g_every = once.server.global_model.state_dict(), every.server.global_model.state_dict()
    assert g_once.keys() == g_every.keys()
    for k in g_once:
        assert torch.equal(g_once[k], g_every[k]), k
    assert shares_the_tied_weight(once.server.global_model)


def test_a_checkpoint_resumes_the_tied_weight_as_one_tensor(tmp_path) -> None:
    from splitopt.execute.checkpoint import open_checkpoint
    from splitopt.execute.runner import InProcessRunner

    job = hsfl_job(rounds=2, checkpoint_every=1, checkpoint_dir=str(tmp_path / "ck"))
    whole = train(job)
    train(job.with_config(rounds=1))
    resumed = train(job, resume=tmp_path / "ck")
    close(resumed.final_state["global"], whole.final_state["global"])
    runner = InProcessRunner(job)
    runner.load_checkpoint(tmp_path / "ck")
    assert shares_the_tied_weight(runner.devices["dev1"].module)  # the FL device
    assert shares_the_tied_weight(runner.server.global_model)
    assert shares_the_tied_weight(runner.server.holders["shared"].module)
    saved = open_checkpoint(tmp_path / "ck").load("dev1")["device"]["holder"]["module"]
    assert torch.equal(runner.devices["dev1"].module.state_dict()["lm_head.weight"],
                       saved["lm_head.weight"])


def test_multi_process_hsfl_sends_the_tied_weight_once_and_equals_in_process() -> None:
    from splitopt.execute.launch import launch

    job = hsfl_job(0.0, rounds=1)
    res, inproc = launch(job, timeout_s=120), train(job)
    close(res.final_state["global"], inproc.final_state["global"])
    pred = evaluate(job.scenario, job.plan).per_device
    for d, st in res.history[0].devices.items():
        assert st.up_bytes == inproc.history[0].devices[d].up_bytes
        assert st.down_bytes == inproc.history[0].devices[d].down_bytes
        assert st.up_bytes + st.down_bytes == pred[d].comm_bytes
