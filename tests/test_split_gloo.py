"""A GPT-2 split after its tied embedding trains over gloo in two processes equal to unsplit.

Rank 0 runs the device part, rank 1 the server part, each with its own copy of the model (so each
holds its own copy of the weight tied across the cut: ``transformer.wte`` / ``lm_head``). Per step
the device sends the boundary tensors (and the sizes torch.fx traced as values), the server sends
back their gradients and its gradient of the tied weight, the device sends its own; each side adds
the other's gradient (``split_parts.tied_grads`` / ``add_tied_grads``) before its optimiser steps.
This is the exchange a multi-process runner does for tied weights.
"""

from __future__ import annotations

import copy
import socket

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from splitopt import zoo  # noqa: E402
from splitopt.execute.split import Splitter  # noqa: E402
from splitopt.execute.split_parts import add_tied_grads, tied_grads  # noqa: E402
from splitopt.zoo._losses import lm_loss  # noqa: E402

SIZES = {"n_layer": 2, "n_embd": 16, "n_head": 2, "vocab_size": 50, "n_positions": 16,
         "dropout": 0.0}
STEPS = 3
DTYPES = [torch.float32, torch.int64, torch.float64, torch.bool]


def build():
    model, (ids,) = zoo.build("gpt2", batch_size=3, seq_len=8, **SIZES)
    return model, ids


def optimiser(params):
    return torch.optim.Adam(params, lr=1e-2)


def send(tensors, dst):
    """A list of tensors: a header (count, then dtype, rank and shape of each), then each one."""
    head = [len(tensors)]
    for t in tensors:
        head += [DTYPES.index(t.dtype), t.dim(), *t.shape]
    dist.send(torch.tensor([len(head)], dtype=torch.int64), dst)
    dist.send(torch.tensor(head, dtype=torch.int64), dst)
    for t in tensors:
        dist.send(t.detach().contiguous(), dst)


def recv(src):
    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, src)  # the header's length, then the header
    rest = torch.zeros(int(size), dtype=torch.int64)
    dist.recv(rest, src)
    head, out, i = rest.tolist(), [], 1
    for _ in range(head[0]):
        dtype, ndim = DTYPES[head[i]], head[i + 1]
        shape, i = head[i + 2:i + 2 + ndim], i + 2 + ndim
        t = torch.empty(shape, dtype=dtype)
        dist.recv(t, src)
        out.append(t)
    return out


def _worker(rank, port, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                           world_size=2)
    try:
        model, ids = build()
        splitter = Splitter(model, (ids,), capture="fx")
        sp = splitter.split(splitter.shape.pred_closure(["transformer.wte"]))
        dev_names = [d for d, _ in sp.tied]
        srv_names = [s for _, s in sp.tied]
        part = sp.device if rank == 0 else sp.server
        opt = optimiser(list(part.parameters()))
        for _ in range(STEPS):
            opt.zero_grad()
            if rank == 0:  # the device
                acts = sp.device(ids)
                send(list(acts), 1)
                *grads, g_srv = recv(1)
                pairs = [(a, g) for a, g in zip(acts, grads) if a.requires_grad and g.numel()]
                torch.autograd.backward([a for a, _ in pairs], [g for _, g in pairs])
                mine = tied_grads(sp.device, dev_names)
                add_tied_grads(sp.device, dev_names, [g_srv])
                send(mine, 1)
            else:  # the server
                ins = [a.requires_grad_(a.is_floating_point()) for a in recv(0)]
                lm_loss(sp.server(*ins), ids).backward()
                grads = [i.grad if i.grad is not None else torch.zeros(0) for i in ins]
                send([*grads, *tied_grads(sp.server, srv_names)], 0)
                add_tied_grads(sp.server, srv_names, recv(0))
            opt.step()
        torch.save({k: p.detach() for k, p in part.named_parameters()}, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two spawned processes (~25 s); test_split_gpt.py checks the sums in process
def test_tied_embedding_across_the_cut_trains_over_gloo_equal_to_unsplit(tmp_path):
    model, ids = build()
    ref = copy.deepcopy(model)
    opt = optimiser(list(ref.parameters()))
    for _ in range(STEPS):
        opt.zero_grad()
        lm_loss(ref(ids), ids).backward()
        opt.step()
    mp.spawn(_worker, args=(_free_port(), str(tmp_path / "params")), nprocs=2, join=True)
    device = torch.load(tmp_path / "params.0")
    server = torch.load(tmp_path / "params.1")
    want = dict(ref.named_parameters(remove_duplicate=False))
    assert "transformer.wte.weight" in device and "lm_head.weight" in server  # a copy each side
    for got in (device, server):
        for k, p in got.items():
            torch.testing.assert_close(p, want[k], msg=k)
    assert set(device) | set(server) >= set(dict(ref.named_parameters()))
