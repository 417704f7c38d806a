"""Run a captured graph one fx node at a time: count FLOPs on meta tensors, or time on real ones.

Each fx node runs on *leaf* copies of its inputs, so that its backward can be run alone: the
inputs that need a gradient in real training (parameters, and activations that depend on one)
are fresh leaves requiring grad, and ``torch.autograd.grad`` of the node's outputs with respect to
them is exactly the node's share of the backward pass. A data input never needs a gradient, so
the first layer's backward computes only its weight gradient, as in real training.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from splitopt.errors import ProfileError
from splitopt.profiler.capture import Captured

META = torch.device("meta")


@dataclass
class NodeRun:
    """What running one fx node gave: FLOPs (meta mode) or median seconds (real mode)."""

    fwd: float = 0.0
    bwd: float = 0.0


def to_meta(t: torch.Tensor, requires_grad: bool = False) -> torch.Tensor:
    """An empty meta tensor with the shape, strides and dtype of ``t``."""
    m = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=META)
    return m.requires_grad_(requires_grad and (t.is_floating_point() or t.is_complex()))


def _conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, bias: Any, stride: Any,
                        padding: Any, dilation: Any, transposed: bool, output_padding: Any,
                        groups: int, output_mask: Any, out_shape: Any, **kwargs: Any) -> int:
    """Torch's convolution-backward count with the weight gradient divided by ``groups``.

    ``torch.utils.flop_counter`` counts the weight gradient of a grouped convolution as if it
    were dense (``groups`` times too many: 32x on a MobileNet depthwise layer); the weight
    gradient does the same multiply-accumulates as the forward pass.
    """
    from torch.utils.flop_counter import conv_backward_flop as registered

    conv_backward_flop = getattr(registered, "__wrapped__", registered)  # the shape formula
    shared = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
              output_padding, groups)
    grad_in = conv_backward_flop(*shared, [output_mask[0], False, False], out_shape=out_shape)
    grad_w = conv_backward_flop(*shared, [False, output_mask[1], False], out_shape=out_shape)
    return grad_in + grad_w // max(1, int(groups))


def _counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.convolution_backward: _conv_backward_flop})


def _needs_grad(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


def fetch_attr(gm: torch.nn.Module, target: str) -> Any:
    """The attribute ``a.b.c`` of a module."""
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class NodeRunner:
    """Execute the fx nodes of a capture in order, on meta tensors (``meta=True``) or real ones.

    Parameters
    ----------
    cap
        The capture.
    meta
        Count FLOPs on meta tensors (no memory, no compute) instead of timing real execution.
    repeats
        Timed repetitions per node in real mode (the median is kept, after one warm-up).
    count
        In meta mode, count FLOPs (False: only propagate shapes, which is faster).

    Repeated layers (ResNet stages, transformer blocks) run the same operation on the same shapes:
    their counts are computed once and reused, keyed by operation, shapes, dtypes, whether each
    input needs a gradient, and the other arguments.

    """

    def __init__(self, cap: Captured, *, meta: bool = True, repeats: int = 3, count: bool = True):
        self.cap, self.meta, self.repeats, self.count = cap, meta, repeats, count
        self.env: dict[fx.Node, Any] = {}
        self.runs: dict[fx.Node, NodeRun] = {}
        self._memo: dict[Any, tuple[NodeRun, Any]] = {}

    def run(self, inputs: Sequence[Any]) -> dict[fx.Node, NodeRun]:
        """Run every node; return the per-fx-node counts or times (values stay in ``env``)."""
        it = iter(inputs)
        for node in self.cap.gm.graph.nodes:
            if node.op == "placeholder":
                x = next(it)
                self.env[node] = to_meta(x) if self.meta and isinstance(x, torch.Tensor) else x
            elif node.op == "get_attr":
                self.env[node] = self._attr(fetch_attr(self.cap.gm, str(node.target)))
            elif node.op == "output":
                self.env[node] = tree_map(self._value, node.args[0])
            else:
                try:
                    self.runs[node] = self._node(node)
                except ProfileError:
                    raise
                except Exception as err:  # noqa: BLE001 - name the node that failed
                    where = self.cap.group.get(node, node.name)
                    raise ProfileError(
                        f"cannot run node {where!r} ({node.format_node()}) on "
                        f"{'meta' if self.meta else 'real'} tensors: {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}") from err
        return self.runs

    def _attr(self, t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        grad = isinstance(t, torch.nn.Parameter) and t.requires_grad
        if self.meta:
            return to_meta(t, grad)
        # real mode: never touch the user's tensors (buffers are updated in place by BatchNorm)
        return t.detach().clone().requires_grad_(grad)

    def _value(self, a: Any) -> Any:
        return self.env[a] if isinstance(a, fx.Node) else a

    def _callable(self, node: fx.Node, args: Any, kwargs: Any) -> tuple[Callable[[], Any], list]:
        """A thunk running ``node`` on leaf copies of its inputs, and those leaves."""
        leaves: list[torch.Tensor] = []

        def prep(v: Any) -> Any:
            if _needs_grad(v):
                leaf = v.detach().requires_grad_()
                leaves.append(leaf)
                return leaf
            return v

        args, kwargs = tree_map(prep, (args, kwargs))
        if self.meta and "device" in kwargs:
            kwargs = {**kwargs, "device": META}
        if node.op == "call_module":
            return self._module_thunk(node, args, kwargs, leaves), leaves

        def thunk() -> Any:
            # clones let in-place operators run on leaves that require grad
            a, k = tree_map(lambda v: v.clone() if any(v is leaf for leaf in leaves) else v,
                            (args, kwargs))
            if node.op == "call_method":
                return getattr(a[0], str(node.target))(*a[1:], **k)
            return node.target(*a, **k)  # type: ignore[operator]

        return thunk, leaves

    def _module_thunk(self, node: fx.Node, args: Any, kwargs: Any,
                      leaves: list[torch.Tensor]) -> Callable[[], Any]:
        mod = self.cap.gm.get_submodule(str(node.target))
        state = {n: self._attr(p) for n, p in mod.named_parameters()}
        leaves.extend(v for v in state.values() if v.requires_grad)
        state.update({n: self._attr(b) for n, b in mod.named_buffers()})

        def thunk() -> Any:
            a, k = tree_map(lambda v: v.clone() if any(v is leaf for leaf in leaves) else v,
                            (args, kwargs))
            return torch.func.functional_call(mod, state, tuple(a), k)

        return thunk

    def _node(self, node: fx.Node) -> NodeRun:
        args, kwargs = tree_map(self._value, (node.args, node.kwargs))
        key = self._key(node, args, kwargs) if self.meta else None
        if key is not None and key in self._memo:
            res, out = self._memo[key]
            self.env[node] = tree_map(
                lambda v: to_meta(v, v.requires_grad) if isinstance(v, torch.Tensor) else v, out)
            return NodeRun(res.fwd, res.bwd)
        thunk, leaves = self._callable(node, args, kwargs)
        with torch.enable_grad():
            if not self.meta:
                res, out = self._time(thunk, leaves)
            elif node.op == "call_module" and node.target in self.cap.leaves_forced:
                res, out = self._count_real(node, args, kwargs)
            elif not self.count:
                res, out = NodeRun(), thunk()
            else:
                res, out = self._count(thunk, leaves)
        self.env[node] = tree_map(
            lambda v: v.detach().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor)
            else v, out)
        if key is not None:
            self._memo[key] = (res, self.env[node])
        return res

    def _key(self, node: fx.Node, args: Any, kwargs: Any) -> Any:
        """Memo key of a meta run, or None when the node cannot be memoised safely."""
        def part(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return ("T", tuple(v.shape), tuple(v.stride()), str(v.dtype), v.requires_grad)
            if isinstance(v, (int, float, bool, str, type(None), torch.dtype, torch.device,
                              torch.memory_format, torch.layout, slice)):
                return repr(v)
            raise TypeError
        try:
            flat = tuple(part(v) for v in tree_flatten((args, kwargs))[0])
        except TypeError:
            return None
        target: Any = node.target
        if node.op == "call_module":
            mod = self.cap.gm.get_submodule(str(node.target))
            if node.target in self.cap.leaves_forced:
                return None
            params = tuple((n, tuple(p.shape), str(p.dtype), p.requires_grad)
                           for n, p in mod.named_parameters())
            target = (type(mod), repr(mod), mod.training, params)
        return (node.op, target, flat)

    @staticmethod
    def _grad_outputs(out: Any) -> list[torch.Tensor]:
        flat, _ = tree_flatten(out)
        return [o for o in flat if isinstance(o, torch.Tensor) and o.grad_fn is not None]

    def _count(self, thunk: Callable[[], Any], leaves: list) -> tuple[NodeRun, Any]:
        with _counter() as fc:
            out = thunk()
        res = NodeRun(float(fc.get_total_flops()))
        outs = self._grad_outputs(out)
        if outs and leaves:
            with _counter() as fc:
                torch.autograd.grad(outs, leaves, [torch.ones_like(o) for o in outs],
                                    allow_unused=True)
            res.bwd = float(fc.get_total_flops())
        return res, out

    def _count_real(self, node: fx.Node, args: Any, kwargs: Any) -> tuple[NodeRun, Any]:
        """Count an untraceable leaf on real random inputs: its Python may branch on values."""
        mod = self.cap.gm.get_submodule(str(node.target))
        if any(t.is_meta for t in [*mod.parameters(), *mod.buffers()]):
            raise ProfileError(f"submodule {node.target!r} could not be traced and its weights "
                               "are on the meta device: build the model on 'cpu' to profile it.")

        def real(v: Any) -> Any:
            if not isinstance(v, torch.Tensor):
                return v
            r = (torch.randn(v.shape, dtype=v.dtype) if v.is_floating_point()
                 else torch.zeros(v.shape, dtype=v.dtype))
            return r.requires_grad_(v.requires_grad)

        args, kwargs = tree_map(real, (args, kwargs))
        leaves = [v for v in tree_flatten((args, kwargs))[0] if _needs_grad(v)]
        leaves += [p for p in mod.parameters() if p.requires_grad]
        state = {k: v.detach().clone() for k, v in mod.state_dict().items()}
        try:
            res, out = self._count(lambda: mod(*args, **kwargs), leaves)
        finally:
            mod.load_state_dict(state)  # undo buffer updates (BatchNorm statistics)
        return res, tree_map(lambda v: to_meta(v, v.requires_grad)
                             if isinstance(v, torch.Tensor) else v, out)

    def _time(self, thunk: Callable[[], Any], leaves: list) -> tuple[NodeRun, Any]:
        fwd, bwd = [], []
        out = None
        for rep in range(self.repeats + 1):
            t0 = time.perf_counter()
            out = thunk()
            t1 = time.perf_counter()
            outs = self._grad_outputs(out)
            if outs and leaves:
                torch.autograd.grad(outs, leaves, [torch.ones_like(o) for o in outs],
                                    allow_unused=True)
            t2 = time.perf_counter()
            if rep:  # the first run is a warm-up
                fwd.append(t1 - t0)
                bwd.append(t2 - t1 if outs and leaves else 0.0)
        return NodeRun(statistics.median(fwd), statistics.median(bwd)), out
