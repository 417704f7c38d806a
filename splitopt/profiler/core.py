"""``profile``: a torch model -> its LayerGraph (per-sample FLOPs, bytes, optional CPU times)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.utils._pytree import tree_flatten

from splitopt.errors import InputError, ProfileError
from splitopt.graph import LayerGraph, Node
from splitopt.profiler.capture import OUTPUT, Captured, capture
from splitopt.profiler.outputs import is_data
from splitopt.profiler.runner import NodeRun, NodeRunner, fetch_attr, to_meta


def as_args(example_inputs: Any) -> tuple[Any, ...]:
    """Positional arguments from ``example_inputs`` (a tensor, a tuple or a list)."""
    if isinstance(example_inputs, (tuple, list)):
        args = tuple(example_inputs)
    else:
        args = (example_inputs,)
    if not args or not any(isinstance(a, torch.Tensor) for a in args):
        raise InputError("example_inputs", type(example_inputs).__name__,
                         "a tensor or a tuple of positional arguments holding at least one tensor")
    return args


def batch_of(args: Sequence[Any]) -> int:
    """The batch size: the leading dimension of the first tensor argument (1 for a 0-d tensor)."""
    t = next(a for a in args if isinstance(a, torch.Tensor))
    return int(t.shape[0]) if t.dim() else 1


def on_meta(module: nn.Module) -> bool:
    """True when the module's parameters or buffers live on the meta device."""
    if not isinstance(module, nn.Module):
        raise InputError("module", type(module).__name__, "a torch.nn.Module")
    return any(t.is_meta for t in [*module.parameters(), *module.buffers()])


def profile(module: nn.Module, example_inputs: Any, *, measure: bool = False,
            capture: str = "auto", device_class: str = "cpu", name: str = "",
            repeats: int = 3) -> LayerGraph:
    """Profile a torch model into a :class:`~splitopt.graph.LayerGraph`.

    Parameters
    ----------
    module
        The model. Build it on the ``meta`` device to profile it without allocating its weights.
    example_inputs
        Positional arguments of one forward call; the leading dimension of the first tensor is
        the batch, by which every FLOP and byte count is divided (profile at batch 1 for the most
        faithful per-sample numbers).
    measure
        Also time each node's forward and backward on this machine (real tensors; the model must
        not be on meta) and attach them as measured times of ``device_class``.
    capture
        ``"auto"`` (torch.fx when it traces every module: the graph torch.export gives; else
        torch.export; else fx with opaque submodules), ``"export"`` or ``"fx"``.
    device_class
        Name under which measured times are stored.
    name
        Graph name (default: the module's class name).
    repeats
        Timed repetitions per node when measuring (median kept).

    Returns
    -------
    LayerGraph
        Nodes named as docs/profiler.md states; ``meta`` records the capture used and why.

    Raises
    ------
    ProfileError
        If the model cannot be traced or a node cannot run on meta tensors.

    """
    meta = on_meta(module)
    args = as_args(example_inputs)
    batch = batch_of(args)
    t0 = time.perf_counter()
    cap_args = tuple(to_meta(a) if meta and isinstance(a, torch.Tensor) else a for a in args)
    cap = capture_model(module, cap_args, capture)
    runner = NodeRunner(cap, meta=True)
    counts = runner.run(cap_args)
    graph = assemble(cap, counts, runner.env, batch, name or type(module).__name__)
    graph.meta["profile_seconds"] = time.perf_counter() - t0
    if measure:
        if meta:
            raise ProfileError("measure=True needs real weights; the model is on the meta device."
                               " Build it on 'cpu' to time it.")
        graph = graph.with_times(device_class, measure_times(cap, args, batch, repeats))
    return graph


def capture_model(module: nn.Module, args: tuple[Any, ...], mode: str) -> Captured:
    """:func:`splitopt.profiler.capture.capture` without changing the user's module state."""
    state = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()
             if isinstance(v, torch.Tensor) and not v.is_meta and not isinstance(v, nn.Parameter)}
    cap = capture(module, args, mode)
    # tracing runs the forward on fake tensors; restore buffers in case a route wrote them
    with torch.no_grad():
        live = module.state_dict(keep_vars=True)
        for k, v in state.items():
            if not torch.equal(live[k], v):
                live[k].copy_(v)
    return cap


def measure_times(cap: Captured, args: tuple[Any, ...], batch: int,
                  repeats: int = 3) -> dict[str, tuple[float, float]]:
    """Median per-sample forward and backward seconds of every LayerGraph node on this machine."""
    runner = NodeRunner(cap, meta=False, repeats=repeats)
    runs = runner.run(args)
    times: dict[str, list[float]] = {}
    for node, r in runs.items():
        acc = times.setdefault(cap.group[node], [0.0, 0.0])
        acc[0] += r.fwd / batch
        acc[1] += r.bwd / batch
    return {k: (v[0], v[1]) for k, v in times.items()}


def _nbytes(value: Any) -> float:
    flat, _ = tree_flatten(value)
    return float(sum(t.numel() * t.element_size() for t in flat if isinstance(t, torch.Tensor)))


def assemble(cap: Captured, counts: dict[fx.Node, NodeRun], values: dict[fx.Node, Any],
             batch: int, name: str) -> LayerGraph:
    """Sum the fx-node counts into LayerGraph nodes (see docs/profiler.md)."""
    acc: dict[str, dict[str, float]] = {}
    edges: set[tuple[str, str]] = set()
    seen_params: dict[int, str] = {}
    tied: dict[tuple[str, str], float] = {}
    for node in cap.gm.graph.nodes:
        g = cap.group.get(node)
        if g is None:
            continue
        a = acc.setdefault(g, dict.fromkeys(("fwd_flops", "bwd_flops", "out_bytes",
                                             "param_bytes"), 0.0))
        if node in counts:
            a["fwd_flops"] += counts[node].fwd / batch
            a["bwd_flops"] += counts[node].bwd / batch
        a["param_bytes"] += _own_param_bytes(cap, node, seen_params, tied)
        leaves_group = node.op == "placeholder" or any(cap.group.get(u) != g for u in node.users)
        if leaves_group and node.op != "output":
            a["out_bytes"] += _nbytes(values.get(node)) / batch
        if node.op == "output":
            a["out_bytes"] = _nbytes(values.get(node)) / batch
        for m in node.all_input_nodes:
            h = cap.group.get(m)
            # sizes and devices read across groups are no data: they cross as metadata (or are
            # constants, as torch.export makes them), so they neither cost bytes nor order nodes
            if h is not None and h != g and is_data(values.get(m, cap.values.get(m))):
                edges.add((h, g))
    views = set(cap.views)
    nodes = [Node(g, kind="output" if g == OUTPUT else cap.kinds[g],  # type: ignore[arg-type]
                  act_bytes=0.0 if g in views else None, **a) for g, a in acc.items()]
    meta = {"capture": cap.capture, "capture_reason": cap.reason,
            "leaves_forced": cap.leaves_forced, "batch_profiled": batch}
    if tied:  # weights used by two nodes: [first user, later user, bytes]
        meta["tied"] = [[u, w, b] for (u, w), b in sorted(tied.items())]
    return LayerGraph(nodes, sorted(edges), cap.inputs, OUTPUT, name=name, meta=meta)


def _own_param_bytes(cap: Captured, node: fx.Node, seen: dict[int, str],
                     tied: dict[tuple[str, str], float]) -> float:
    """Bytes of the parameters ``node`` uses that no earlier node used (tied weights once).

    A parameter that a node of another group uses again is recorded in ``tied``: ``(first
    user, later user) -> bytes`` (GPT-2's ``transformer.wte`` and ``lm_head``).
    """
    params: list[Any] = []
    if node.op == "call_module":
        params = list(cap.gm.get_submodule(str(node.target)).parameters())
    for m in node.all_input_nodes:
        if m.op == "get_attr":
            params.append(fetch_attr(cap.gm, str(m.target)))
    total = 0.0
    g = cap.group[node]
    for p in params:
        if not isinstance(p, nn.Parameter):
            continue
        size = float(p.numel() * p.element_size())
        if id(p) not in seen:
            seen[id(p)] = g
            total += size
        elif seen[id(p)] != g:
            tied[(seen[id(p)], g)] = tied.get((seen[id(p)], g), 0.0) + size
    return total
