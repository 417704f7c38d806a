"""Cut a torch model by a device-side node set into a device part and a server part.

The parts are built from the same capture as the profiler (:mod:`splitopt.profiler.capture`), so
node names are the profiler's. Any predecessor-closed set of the graph works: every tensor that a
device-side node produces and a server-side node consumes crosses the cut (skip connections
included). Both parts are ``torch.fx.GraphModule`` objects whose parameters and buffers are the
*original* objects under their *original* names: ``device.state_dict()`` and
``server.state_dict()`` use the model's keys, optimisers over ``part.parameters()`` update the
model itself, and ``server(*device(*inputs))`` computes what ``model(*inputs)`` computes.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.utils._pytree import tree_map, tree_unflatten

from splitopt.errors import InputError, ProfileError, SplitoptError
from splitopt.execute.split_parts import Crossing, sum_tied_grads
from splitopt.graph import LayerGraph
from splitopt.profiler.capture import OUTPUT, Captured
from splitopt.profiler.core import as_args, assemble, capture_model, on_meta
from splitopt.profiler.runner import fetch_attr, to_meta

_INPLACE_OPS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


@dataclass
class SplitModel:
    """The two halves of a model cut at a device-side set.

    Attributes
    ----------
    device
        ``device(*inputs)`` returns the tuple of boundary tensors, in the order of ``boundary``.
    server
        ``server(*boundary_tensors)`` returns the model's output.
    boundary
        Names of the crossing data tensors, in the order ``device(*inputs)`` returns them: the
        producing node's name (``graph.boundary(device_side)``), ``name[j]`` for the pieces of a
        list of tensors, ``name#k`` (k >= 1) for a further tensor of the same node.
    device_side
        The device-side node set (inputs included).
    capture
        The capture route the parts were built from (``"export"`` or ``"fx"``).
    shared
        Server-side names of parameters present in both parts (weights tied across the cut).
    scalars
        Names of the numbers and sizes that cross (``input_ids.size(1)`` under torch.fx): the
        device part returns them, as 0-d / 1-d tensors, after the data tensors of ``boundary``.
        They are a few bytes per batch, not per sample (see :mod:`splitopt.execute.split_parts`).
    tied
        ``(device-side name, server-side name)`` of each weight tied across the cut. Here both
        are the same ``Parameter``, so in one process gradients add up as in the whole model;
        when each side holds its own copy, sum the two gradients before stepping
        (:func:`~splitopt.execute.split_parts.sum_tied_grads`).

    """

    device: fx.GraphModule
    server: fx.GraphModule
    boundary: list[str]
    device_side: frozenset[str]
    capture: str
    shared: list[str] = field(default_factory=list)
    scalars: list[str] = field(default_factory=list)
    tied: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, *inputs: Any) -> Any:
        """``server(*device(*inputs))``: the whole model."""
        return self.server(*self.device(*inputs))

    def parts(self) -> tuple[fx.GraphModule, fx.GraphModule]:
        """``(device, server)``."""
        return self.device, self.server

    def separate(self) -> SplitModel:
        """The same split with a server part that holds its own copy of every weight.

        That is how a server in another process holds it. Weights tied across the cut (``tied``)
        then have a copy on each side: call :meth:`sum_tied_grads` after both backward passes
        and before the optimisers step, and training equals unsplit training.
        """
        server = copy.deepcopy(self.server)
        # GraphModule's deepcopy drops hooks: the export guard and the output structure
        if not server._forward_pre_hooks:
            for hook in self.server._forward_pre_hooks.values():
                server.register_forward_pre_hook(hook)
        if not server._forward_hooks:
            for hook in self.server._forward_hooks.values():
                server.register_forward_hook(hook)
        return replace(self, server=server)

    def sum_tied_grads(self) -> None:
        """Give both copies of each tied weight the sum of the two sides' gradients."""
        sum_tied_grads(self.device, self.server, self.tied)


def split_model(model: nn.Module, example_inputs: Any, device_side: Iterable[str],
                graph: LayerGraph | None = None, *, capture: str | None = None) -> SplitModel:
    """Split ``model`` so that the nodes in ``device_side`` run on the device.

    Parameters
    ----------
    model
        The model (not modified; the parts share its parameters).
    example_inputs
        Positional arguments of one forward call (used to capture the graph).
    device_side
        Predecessor-closed set of node names (the profiler's names) holding every input node and
        not the output node, e.g. ``Plan.devices[k].device_side`` or a prefix of ``graph.names``.
    graph
        The profiled graph the names come from; its ``meta["capture"]`` selects the same capture
        route so that names agree.
    capture
        Force a capture route (``"auto"``, ``"export"``, ``"fx"``).

    Raises
    ------
    InputError
        Unknown node names, a set that is not predecessor-closed, or a set holding the output.

    See Also
    --------
    Splitter : capture once, split at many cuts.

    """
    return Splitter(model, example_inputs, graph, capture=capture).split(device_side)


class Splitter:
    """Capture a model once and cut it at any number of device-side sets.

    Parameters are those of :func:`split_model`. Unless ``capture`` forces a route, the parts are
    built from the torch.fx capture when it yields the same node names as ``graph`` (or knows
    every requested name): its leaf modules run as themselves, so ``train()``/``eval()`` and any
    batch size work as in the model. Otherwise the graph's own route is used; a part built from
    torch.export is fixed to the training mode and input shapes it was captured with, and says
    so (a clear error) if called otherwise.
    """

    def __init__(self, model: nn.Module, example_inputs: Any, graph: LayerGraph | None = None,
                 *, capture: str | None = None):
        meta = on_meta(model)
        args = as_args(example_inputs)
        if meta:
            args = tuple(to_meta(a) if isinstance(a, torch.Tensor) else a for a in args)
        self.model, self.graph, self.args, self.forced = model, graph, args, capture
        self._caps: dict[str, tuple[Captured, LayerGraph]] = {}
        self.cap, self.shape = self._choose()

    def _capture(self, mode: str) -> tuple[Captured, LayerGraph]:
        if mode not in self._caps:
            cap = capture_model(self.model, self.args, mode)
            self._caps[mode] = self._caps[cap.capture] = (cap, assemble(
                cap, {}, {}, 1, type(self.model).__name__))
        return self._caps[mode]

    def _choose(self) -> tuple[Captured, LayerGraph]:
        if self.forced is not None:
            return self._capture(self.forced)
        try:
            cap, shape = self._capture("fx")
            if self.graph is None or set(shape.names) == set(self.graph.names):
                return cap, shape
        except ProfileError:
            pass
        return self._capture(self.graph.meta.get("capture", "auto") if self.graph else "auto")

    def split(self, device_side: Iterable[str]) -> SplitModel:
        """Build the :class:`SplitModel` of one device-side set."""
        if isinstance(device_side, str):
            raise InputError("device_side", device_side, "a set of node names, not one string")
        s = frozenset(device_side)
        cap, shape = self.cap, self.shape
        if self.forced is None and not s <= set(shape.names) and cap.capture == "fx":
            cap, shape = self._capture("export")  # names only torch.export gives
        return _build(cap, self.model, _check_set(shape, s, self.graph))


def _check_set(shape: LayerGraph, device_side: Iterable[str],
               graph: LayerGraph | None) -> frozenset[str]:
    if isinstance(device_side, str):
        raise InputError("device_side", device_side, "a set of node names, not one string")
    s = frozenset(device_side)
    unknown = sorted(n for n in s if n not in shape)
    if unknown:
        hint = ("The graph was profiled from a different capture or model."
                if graph is not None else "Use the names of splitopt.profile(model, inputs).")
        raise InputError("device_side", unknown[:5], f"node names of the model "
                         f"({', '.join(shape.names[:6])}, ...)", hint)
    if OUTPUT in s:
        raise InputError("device_side", OUTPUT, "a set without the output node",
                         "The output stays on the server; to train on the device alone, use the "
                         "whole model.")
    # a set named by a graph profiled before view nodes existed (profiler rule 6) lacks the view
    # nodes its members read: they compute nothing, so add them (the old graph over-prices)
    needed = shape.pred_closure(s) - s
    if needed and all(shape.node(n).kind == "view" for n in needed):
        s |= needed
    return shape.check_split(s)


def _side_of(cap: Captured, s: frozenset[str]) -> dict[fx.Node, bool]:
    """Fx node -> True when it runs on the device (get_attr nodes are placed where used)."""
    return {n: g in s for n, g in cap.group.items()}


def _build(cap: Captured, model: nn.Module, s: frozenset[str]) -> SplitModel:
    on_dev = _side_of(cap, s)
    nodes = [n for n in cap.gm.graph.nodes if n in on_dev]
    cross = Crossing(cap, nodes, on_dev)
    dev_graph, dev_attrs = fx.Graph(), set[str]()
    # a size read from a server-side node (no data edge orders them): its captured value
    env: dict[fx.Node, Any] = {m: cap.values.get(m) for n in nodes if on_dev[n]
                               for m in n.all_input_nodes if on_dev.get(m) is False}
    for n in nodes:
        if on_dev[n]:
            _copy(n, dev_graph, env, dev_attrs)
    dev_graph.output(cross.device_outputs(dev_graph, env))
    srv_graph, srv_attrs = fx.Graph(), set[str]()
    env = cross.server_inputs(srv_graph, _mutated, on_dev)
    for n in nodes:
        if not on_dev[n] and n.op != "output":
            _copy(n, srv_graph, env, srv_attrs)
    srv_graph.output(_output_args(cap, env))
    device = _module(dev_graph, dev_attrs, model, cap, "DevicePart")
    server = _module(srv_graph, srv_attrs, model, cap, "ServerPart")
    if cap.out_spec is not None:
        server.register_forward_hook(Restructure(cap.out_spec))
    if cap.capture == "export":
        inputs = [n for n in nodes if n.op == "placeholder"]
        device.register_forward_pre_hook(ExportGuard("device", model.training, _shapes(inputs)))
        server.register_forward_pre_hook(ExportGuard("server", model.training, cross.shapes()))
    dev_params = {id(p): k for k, p in device.named_parameters()}
    tied = [(dev_params[id(p)], k) for k, p in server.named_parameters() if id(p) in dev_params]
    return SplitModel(device, server, cross.names, s, cap.capture, sorted(k for _, k in tied),
                      cross.scalar_names, sorted(tied))


class ExportGuard:
    """Forward pre-hook of a part built from torch.export: refuse what it was not captured for.

    torch.export fixes BatchNorm/Dropout behaviour and tensor shapes at capture time, so calling
    such a part in the other training mode or on other shapes would silently compute something
    else (or fail deep inside torch). This hook raises a clear error instead.
    """

    def __init__(self, part: str, training: bool, shapes: list[tuple[int, ...] | None]):
        self.part, self.training, self.shapes = part, training, shapes

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """Raise :class:`SplitoptError` if the call differs from the capture."""
        if module.training != self.training:
            raise SplitoptError(
                f"the {self.part} part was captured by torch.export with the model in "
                f"{'training' if self.training else 'eval'} mode, which fixed its BatchNorm and "
                "Dropout behaviour; split again with the model in the mode you need, or use "
                "capture='fx' where the model traces with torch.fx")
        got = [tuple(a.shape) if isinstance(a, torch.Tensor) else None for a in args]
        if got != self.shapes:
            raise SplitoptError(
                f"the {self.part} part was captured by torch.export for input shapes "
                f"{self.shapes}; got {got}. Split again with example inputs of these shapes, or "
                "use capture='fx' where the model traces with torch.fx")


def _shapes(nodes: list[fx.Node]) -> list[tuple[int, ...] | None]:
    vals = [n.meta.get("val") for n in nodes]
    return [tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in vals]


def _copy(n: fx.Node, graph: fx.Graph, env: dict[fx.Node, fx.Node], attrs: set[str]) -> None:
    for m in n.all_input_nodes:
        if m.op == "get_attr" and m not in env:
            env[m] = graph.get_attr(str(m.target))
            attrs.add(str(m.target))
    if n.op == "call_module":
        attrs.add(str(n.target))
    env[n] = graph.node_copy(n, lambda x: env[x])


def _mutated(cap: Captured, n: fx.Node, on_dev: dict[fx.Node, bool]) -> bool:
    """True when a server-side user may modify ``n`` in place (a boundary leaf must be cloned)."""
    for u in n.users:
        if on_dev.get(u, True):
            continue
        t = u.target
        if isinstance(t, torch._ops.OpOverload) and t._schema.is_mutable:
            return True
        if u.op == "call_module" and getattr(cap.gm.get_submodule(str(t)), "inplace", False):
            return True
        if u.op == "call_method" and str(t).endswith("_") and not str(t).endswith("__"):
            return True
        if t in _INPLACE_OPS or u.kwargs.get("inplace"):
            return True
    return False


def _output_args(cap: Captured, env: dict[fx.Node, fx.Node]) -> Any:
    out = next(n for n in cap.gm.graph.nodes if n.op == "output")
    mapped = tree_map(lambda a: env[a] if isinstance(a, fx.Node) else a, out.args[0])
    return mapped


class Restructure:
    """Forward hook of a part built from torch.export: the model's output structure.

    An export graph returns a flat tuple; a graph cannot return a ``ModelOutput`` (fx turns any
    dict into a plain one), so the structure is restored after the call.
    """

    def __init__(self, spec: Any):
        self.spec = spec

    def __call__(self, module: nn.Module, args: Any, out: Any) -> Any:
        """The model's output object from the flat outputs."""
        return tree_unflatten(list(out), self.spec)


def _module(graph: fx.Graph, attrs: set[str], model: nn.Module, cap: Captured,
            cls: str) -> fx.GraphModule:
    """A GraphModule holding the model's own objects under their own names."""
    root: dict[str, Any] = {}
    for target in sorted(attrs):
        try:
            root[target] = fetch_attr(model, target)
        except AttributeError:  # a constant that export lifted: only the capture has it
            root[target] = fetch_attr(cap.gm, target)
    for node in graph.nodes:
        node.type = None  # a type annotation on a placeholder would make the part unpicklable
    graph.lint()
    return fx.GraphModule(root, graph, cls)


def to_pipe_split_spec(model: nn.Module, graph: LayerGraph,
                       device_side: Iterable[str]) -> dict[str, Any]:
    """The cut as a ``split_spec`` for ``torch.distributed.pipelining.pipeline``.

    ``pipeline(model, mb_args, split_spec=spec)`` then builds two stages whose modules keep the
    original parameter names. It applies to chain-like cuts at a module boundary: the device
    side must be everything the model runs before one submodule call (a prefix of the execution
    order, ``graph.names``), and the first server-side node must start a submodule. The split
    point is the outermost submodule that starts there (``layer2`` rather than
    ``layer2.0.conv1``). Other cuts (skip connections crossing into the middle of a block, a
    functional operation first) are refused with an :class:`InputError`; use
    :func:`split_model`, which handles any predecessor-closed set.

    Returns
    -------
    dict
        ``{fqn: SplitPoint.BEGINNING}``.

    """
    from torch.distributed.pipelining import SplitPoint

    s = graph.check_split(device_side)
    order = graph.names
    k = next(i for i, n in enumerate(order) if n not in s)
    late = [n for n in order[k:] if n in s]
    if late:
        raise InputError("device_side", late[:3], "a prefix of the execution order (graph.names)"
                         " for torch.distributed.pipelining", "Use split_model for this cut.")
    crossing = graph.boundary(s)
    if len(crossing) != 1:
        raise InputError("device_side", crossing, "a cut that one tensor crosses (chain-like) for "
                         "torch.distributed.pipelining", "Use split_model for this cut.")
    first = order[k]
    point = _outermost_start(model, first, s, order)
    if point is None:
        raise InputError("device_side", first, "a cut right before a submodule call for "
                         "torch.distributed.pipelining (the first server-side node is a "
                         f"{graph.node(first).kind!r} operation or a repeated call)",
                         "Use split_model for this cut.")
    return {point: SplitPoint.BEGINNING}


def _outermost_start(model: nn.Module, first: str, s: frozenset[str],
                     order: list[str]) -> str | None:
    """The outermost submodule whose first node is ``first`` and none of whose nodes is in ``s``."""
    if "@" in first:
        return None
    parts = first.split(".")
    for i in range(1, len(parts) + 1):
        fqn = ".".join(parts[:i])
        try:
            model.get_submodule(fqn)
        except AttributeError:
            continue
        inside = [n for n in order if n == fqn or n.startswith(fqn + ".")]
        if inside and inside[0] == first and not any(n in s for n in inside):
            return fqn
    return None
