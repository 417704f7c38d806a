"""What crosses a cut, and weights tied across it (helpers of :mod:`splitopt.execute.split`).

Crossing values are of three sorts:

- **data**: tensors (and lists of tensors, sent element by element). These are the bytes the cost
  model prices: each LayerGraph node is left by one data value (``splitopt.profiler.outputs``), so
  the data the device part returns is exactly ``sum(out_bytes(u) for u in boundary(S))`` per sample.
- **scalars**: numbers and sizes that torch.fx traces as values (``input_ids.size(1)``). An int
  that is a dimension of a data tensor the server receives (GPT-2's sequence length is dim 1 of
  the embedding output) is read there from that tensor's shape (:func:`shape_dims`: found on
  the captured shapes and checked on meta runs with each input dimension changed), so nothing
  is sent for it. Any other is sent as a 0-d / 1-d int or float tensor after the data (8 bytes
  per batch, which the cost model does not price; torch.export makes them constants) and turned
  back into a Python number on the server.
- **devices** (``x.device``) are recomputed on the server from the data it receives, and any
  other constant (a dtype) is the captured value.

Weights tied across the cut (GPT-2's ``transformer.wte`` and ``lm_head``) are handled the way
pipeline-parallel trainers do: each side holds a copy, both compute their gradient, and the two
gradients are summed before either optimiser steps (:func:`sum_tied_grads` in one process,
:func:`tied_grads` / :func:`add_tied_grads` when the gradients travel between processes). With
the same optimiser on both sides the two copies stay equal, and training equals unsplit training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from splitopt.errors import SplitoptError
from splitopt.profiler.capture import Captured
from splitopt.profiler.outputs import is_data


def _retraced(fn: Callable[..., Any], value: Any) -> fx.Proxy | None:
    """``fn(value)`` as one graph call when fx re-traces a part (an unpickled GraphModule).

    Unpickling a GraphModule traces its code again with proxies for values; these helpers
    branch on the value, so they record themselves as a call instead of running.
    """
    items = value if isinstance(value, (tuple, list)) else (value,)
    proxy = next((v for v in items if isinstance(v, fx.Proxy)), None)
    if proxy is None:
        return None
    return proxy.tracer.create_proxy("call_function", fn, (value,), {})


def scalar_to_tensor(value: Any) -> torch.Tensor:
    """A number, bool or size as a tensor that can travel with the data."""
    retraced = _retraced(scalar_to_tensor, value)
    if retraced is not None:
        return retraced  # type: ignore[return-value]
    return torch.as_tensor(tuple(value) if isinstance(value, (tuple, list)) else value)


def tensor_to_scalar(t: torch.Tensor) -> Any:
    """Undo :func:`scalar_to_tensor`: a Python number, or a ``torch.Size`` for a 1-d tensor."""
    retraced = _retraced(tensor_to_scalar, t)
    if retraced is not None:
        return retraced
    return t.item() if t.dim() == 0 else torch.Size(int(x) for x in t.tolist())


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (bool, int, float, torch.SymInt, torch.SymFloat, torch.SymBool)):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(
        isinstance(x, (int, torch.SymInt)) for x in value)


class Crossing:
    """The values a cut sends (data, then scalars) and how each side builds its end."""

    def __init__(self, cap: Captured, nodes: list[fx.Node], on_dev: dict[fx.Node, bool]):
        self.cap = cap
        self.data: list[fx.Node] = []
        self.scalars: list[fx.Node] = []
        self.recomputed: list[fx.Node] = []
        for n in nodes:
            if not on_dev[n] or not any(on_dev.get(u) is False for u in n.users):
                continue
            v = cap.values.get(n)
            if is_data(v):
                if isinstance(v, (tuple, list)) and not all(isinstance(t, torch.Tensor) for t in v):
                    raise SplitoptError(f"a nested list of tensors ({cap.group[n]!r}) crosses "
                                        "this cut; move the cut")
                self.data.append(n)
            elif _is_scalar(v):
                self.scalars.append(n)
            else:
                self.recomputed.append(n)
        self.inferred = shape_dims(cap, self.scalars, self.data) if self.scalars else {}
        self.scalars = [n for n in self.scalars if n not in self.inferred]
        self.names = self._data_names()
        self.scalar_names = [f"{cap.group[n]}#{n.name}" for n in self.scalars]

    def _data_names(self) -> list[str]:
        names, count = [], {}
        for n in self.data:
            g = self.cap.group[n]
            k = count.get(g, 0)
            count[g] = k + 1
            base = g if k == 0 else f"{g}#{k}"
            v = self.cap.values.get(n)
            names += ([f"{base}[{j}]" for j in range(len(v))] if isinstance(v, (tuple, list))
                      else [base])
        return names

    def _pieces(self, n: fx.Node) -> int | None:
        v = self.cap.values.get(n)
        return len(v) if isinstance(v, (tuple, list)) else None

    def device_outputs(self, graph: fx.Graph, env: dict[fx.Node, Any]) -> tuple[Any, ...]:
        """The device part's outputs: the data (lists element by element), then the scalars."""
        out: list[Any] = []
        for n in self.data:
            k = self._pieces(n)
            out += ([env[n]] if k is None else
                    [graph.call_function(_item, (env[n], j)) for j in range(k)])
        out += [graph.call_function(scalar_to_tensor, (env[n],)) for n in self.scalars]
        return tuple(out)

    def server_inputs(self, graph: fx.Graph,
                      mutated: Callable[[Captured, fx.Node, dict[fx.Node, bool]], bool],
                      on_dev: dict[fx.Node, bool]) -> dict[fx.Node, Any]:
        """Placeholders of the server part, mapped back to the fx nodes they stand for."""
        env: dict[fx.Node, Any] = {}
        names = iter(self.names)
        first = None
        placeholder: dict[fx.Node, fx.Node] = {}
        for n in self.data:
            k = self._pieces(n)
            phs = [graph.placeholder(_identifier(next(names))) for _ in range(k or 1)]
            first = first or phs[0]
            placeholder[n] = phs[0]
            if k is not None:
                kind = tuple if isinstance(self.cap.values[n], tuple) else list
                env[n] = graph.call_function(kind, (phs,))
            else:  # a boundary leaf that a server-side op modifies in place must be a copy
                env[n] = (graph.call_method("clone", (phs[0],))
                          if mutated(self.cap, n, on_dev) else phs[0])
        for n, name in zip(self.scalars, self.scalar_names):
            env[n] = graph.call_function(tensor_to_scalar, (graph.placeholder(_identifier(name)),))
        for n, (d, dim) in self.inferred.items():  # read off a tensor the server receives
            env[n] = graph.call_method("size", (placeholder[d], dim))
        for n in self.recomputed:
            v = self.cap.values.get(n)
            env[n] = (graph.call_function(getattr, (first, "device"))
                      if isinstance(v, torch.device) and first is not None else v)
        return env

    def shapes(self) -> list[tuple[int, ...] | None]:
        """Shapes of the server part's inputs, as captured (None for a scalar)."""
        out: list[tuple[int, ...] | None] = []
        for n in self.data:
            v = self.cap.values.get(n)
            out += [tuple(t.shape) for t in v] if isinstance(v, (tuple, list)) else [tuple(v.shape)]
        return out + [None] * len(self.scalars)


def shape_dims(cap: Captured, scalars: list[fx.Node],
               data: list[fx.Node]) -> dict[fx.Node, tuple[fx.Node, int]]:
    """The int scalars that equal a dimension of a crossing data tensor: scalar -> (tensor, dim).

    A candidate equal on the captured values must stay equal when the model runs on meta
    tensors with each input dimension in turn one larger (the shapes it can train on), and
    the scalar must change in at least one such run; a run that fails (a shape the model does
    not take) proves nothing either way. A scalar with no such dimension is sent.
    """
    from splitopt.profiler.runner import NodeRunner

    base = cap.values
    cands = {n: [(d, j) for d in data if isinstance(base.get(d), torch.Tensor)
                 for j, size in enumerate(base[d].shape) if size == base[n]]
             for n in scalars if type(base.get(n)) is int}
    cands = {n: c for n, c in cands.items() if c}
    if not cands:
        return {}
    phs = [n for n in cap.gm.graph.nodes if n.op == "placeholder"]
    varied: set[fx.Node] = set()
    for p, ph in enumerate(phs):
        shape = getattr(base.get(ph), "shape", ())
        for i in range(len(shape)):
            inputs = [torch.empty(tuple(x.shape[:i]) + (x.shape[i] + 1,) + tuple(x.shape[i + 1:])
                                  if q == p else tuple(x.shape), dtype=x.dtype, device="meta")
                      if isinstance(x, torch.Tensor) else x
                      for q, x in enumerate(base.get(h) for h in phs)]
            run = NodeRunner(cap, meta=True, count=False)
            try:
                run.run(inputs)
            except Exception:  # noqa: BLE001 - a shape the model does not take
                continue
            for n, c in cands.items():
                if run.env.get(n) != base[n]:
                    varied.add(n)
                cands[n] = [(d, j) for d, j in c
                            if run.env.get(n) == _dim(run.env.get(d), j)]
    return {n: c[0] for n, c in cands.items() if c and n in varied}


def _dim(value: Any, j: int) -> int | None:
    shape = getattr(value, "shape", ())
    return int(shape[j]) if j < len(shape) else None


def _item(seq: Sequence[Any], j: int) -> Any:
    return seq[j]


def _identifier(name: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in name)
    return out if out and not out[0].isdigit() else f"t_{out}"


# --------------------------------------------------------------------------- tied weights
def tied_grads(module: nn.Module, names: Sequence[str]) -> list[torch.Tensor]:
    """The gradients of ``module``'s parameters ``names`` (zeros where none was computed)."""
    if not names:  # the common case, every step: no weights tied across the cut
        return []
    params = dict(module.named_parameters(remove_duplicate=False))
    return [params[k].grad.detach().clone() if params[k].grad is not None
            else torch.zeros_like(params[k]) for k in names]


def add_tied_grads(module: nn.Module, names: Sequence[str],
                   grads: Sequence[torch.Tensor]) -> None:
    """Add the other side's gradients ``grads`` to ``module``'s parameters ``names``."""
    params = dict(module.named_parameters(remove_duplicate=False))
    for k, g in zip(names, grads, strict=True):
        p = params[k]
        p.grad = g.to(p.device).clone() if p.grad is None else p.grad.add_(g.to(p.device))


def sum_tied_grads(device: nn.Module, server: nn.Module,
                   tied: Sequence[tuple[str, str]]) -> None:
    """Give both copies of each tied weight the sum of the two sides' gradients (one process).

    ``tied`` is :attr:`SplitModel.tied`: ``(device-side name, server-side name)`` pairs. Call
    it after both backward passes and before either optimiser steps. When both sides hold the
    very same ``Parameter`` (one process, one model) its gradient already is the sum, and this
    does nothing.
    """
    dev = dict(device.named_parameters(remove_duplicate=False))
    srv = dict(server.named_parameters(remove_duplicate=False))
    for d, s in tied:
        if dev[d] is srv[s]:
            continue
        from_dev = tied_grads(device, [d])
        add_tied_grads(device, [d], tied_grads(server, [s]))
        add_tied_grads(server, [s], from_dev)
