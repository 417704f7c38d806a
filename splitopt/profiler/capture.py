"""Capture a torch model as an fx graph whose operations are grouped into LayerGraph nodes.

One capture feeds both the profiler (:func:`splitopt.profiler.profile`) and the splitter
(:func:`splitopt.execute.split.split_model`), so that node names always agree.

Two routes:

``export``
    ``torch.export.export(..., strict=False)`` then ``ExportedProgram.module()``: an ATen-level fx
    graph whose ``get_attr`` targets are the original parameter names and whose nodes carry the
    ``nn_module_stack`` of the module that ran them.
``fx``
    ``torch.fx`` symbolic tracing with every leaf module kept as one ``call_module`` node; a
    submodule whose tracing fails is retried as a leaf (an opaque single node).

Naming rule (docs/profiler.md): every operation run inside a *leaf* module (a module without
children, or one of :data:`OPAQUE`) belongs to the node named by the module's fully qualified name;
the k-th repeated call (k >= 1) of the same module is ``FQN@k``. Any other operation (residual
adds, flatten, cat, attention matmuls, ...) is its own node named ``<enclosing FQN>.<op>`` (just
``<op>`` at the top level), with ``_1``, ``_2``, ... appended to make it unique. Three kinds of
operations outside leaf modules join the node of their first input instead: ``getitem`` on a
tuple; operations that compute no tensor (``x.shape``, ``x.size(0)``, arithmetic on sizes); and
operations that only reshape or select (:data:`SHAPE_OPS`: view, transpose, split, select, ...)
when all their inputs come from one node that is not a model input. Model inputs are nodes named
by the forward argument names. A node left by several tensors gives each tensor that leaves through
view operations its own node ``<name>:<k>`` (:mod:`splitopt.profiler.outputs`). In-place and
out-of-place variants of an op share its name (``add`` for ``add_``), so both routes agree.
"""

from __future__ import annotations

import inspect
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from splitopt.errors import InputError, ProfileError
from splitopt.profiler.normalise import drop_identities, no_cache
from splitopt.profiler.outputs import split_outputs

#: Modules with children that still run as one unit (their children are not called as modules).
OPAQUE: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)

CAPTURES = ("auto", "export", "fx")

OUTPUT = "output"


@dataclass
class Captured:
    """A captured model: the fx graph module and the LayerGraph node each fx node belongs to.

    Attributes
    ----------
    gm
        The captured ``fx.GraphModule`` (parameters are the model's own objects).
    group
        fx node -> LayerGraph node name (inputs: the argument name; the fx output node: ``output``).
        Nodes absent from the map (``get_attr``, dropped guards) belong to no LayerGraph node.
    kinds
        LayerGraph node name -> kind (module class name, ATen/function op name, ``input``).
    inputs
        LayerGraph input node names, in argument order.
    capture
        ``"export"`` or ``"fx"``.
    reason
        Why ``auto`` did not take a complete fx capture (empty when it did).
    leaves_forced
        Submodules made leaves because they could not be traced (fx route).
    out_spec
        pytree spec of the model's output, for ``export`` (``None`` for ``fx``).
    values
        fx node -> its value in the capture (fake or meta tensors, Python numbers for sizes).
    views
        Names of the view nodes that :func:`~splitopt.profiler.outputs.split_outputs` made (one
        per output tensor of a multi-output group).

    """

    gm: fx.GraphModule
    group: dict[fx.Node, str]
    kinds: dict[str, str]
    inputs: list[str]
    capture: str
    reason: str = ""
    leaves_forced: list[str] = field(default_factory=list)
    out_spec: Any = None
    values: dict[fx.Node, Any] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)


def capture(model: nn.Module, example_inputs: Sequence[Any], mode: str = "auto") -> Captured:
    """Capture ``model`` called on ``example_inputs`` (a tuple of positional arguments).

    ``"auto"``: the torch.fx capture when fx traces every module, node for node the torch.export
    graph (tests/test_profiler_small.py) at a fraction of its CPU time; else torch.export; else
    fx with opaque submodules.

    Raises
    ------
    InputError
        If ``mode`` is not one of :data:`CAPTURES` or the arguments are not a module and a tuple.
    ProfileError
        If no route can trace the model.

    """
    if mode not in CAPTURES:
        raise InputError("capture", mode, f"one of {list(CAPTURES)}")
    if not isinstance(model, nn.Module):
        raise InputError("module", type(model).__name__, "a torch.nn.Module")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    with no_cache(model):
        if mode == "fx":
            return _from_fx(model, args)
        if mode == "export":
            try:
                return _from_export(model, args)
            except Exception as err:  # noqa: BLE001 - any export failure is the route's error
                raise ProfileError(f"torch.export could not capture {type(model).__name__}: "
                                   f"{_first_line(err)}") from err
        return _auto(model, args)


def _auto(model: nn.Module, args: tuple[Any, ...]) -> Captured:
    """The torch.fx capture when it traces everything, else torch.export, else fx with opaques."""
    partial: Captured | None = None
    try:
        partial = _from_fx(model, args)
        if not partial.leaves_forced:
            return partial
        fx_reason = f"torch.fx made {partial.leaves_forced[:3]} opaque"
    except Exception as err:  # noqa: BLE001 - any fx failure means: try torch.export
        fx_reason = str(err) if isinstance(err, ProfileError) else \
            f"torch.fx failed: {_first_line(err)}"
    try:
        cap = _from_export(model, args)
    except Exception as err:  # noqa: BLE001 - any export failure means: keep the fx capture
        reason = f"torch.export failed: {_first_line(err)}"
        if partial is None:
            raise ProfileError(f"cannot capture {type(model).__name__}: {reason}; then "
                               f"{fx_reason}. Fix the route you prefer (capture='export' or "
                               "'fx' shows its error alone).") from err
        partial.reason = reason
        return partial
    cap.reason = fx_reason
    return cap


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def is_leaf(module: nn.Module) -> bool:
    """True when ``module`` runs as one LayerGraph node."""
    return isinstance(module, OPAQUE) or next(module.children(), None) is None


# --------------------------------------------------------------------------- export route
def _from_export(model: nn.Module, args: tuple[Any, ...]) -> Captured:
    ep = torch.export.export(model, args, strict=False)
    gm = ep.module()
    _drop_guards(gm, model)
    values = {n: n.meta.get("val") for n in gm.graph.nodes}
    return _group(gm, model, "export", ep.call_spec.out_spec, values)


def _drop_guards(gm: fx.GraphModule, model: nn.Module) -> None:
    """Remove nodes that export adds to check inputs (``_guards_fn``): they are no operation."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and not node.users and not _has_module(model, node.target):
            gm.graph.erase_node(node)
    gm.recompile()


def _has_module(model: nn.Module, target: str) -> bool:
    try:
        model.get_submodule(target)
        return True
    except AttributeError:
        return False


# --------------------------------------------------------------------------- fx route
class _LeafTracer(fx.Tracer):
    def __init__(self, forced: set[str]):
        super().__init__()
        self.forced = forced

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.forced or is_leaf(m)


def _defaults(model: nn.Module, n_given: int) -> dict[str, Any]:
    """Forward parameters not given positionally, fixed to their defaults while tracing."""
    params = list(inspect.signature(model.forward).parameters.values())[n_given:]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _from_fx(model: nn.Module, args: tuple[Any, ...]) -> Captured:
    forced: set[str] = set()
    concrete = _defaults(model, len(args))
    for _ in range(len(list(model.modules())) + 1):
        tracer = _LeafTracer(forced)
        try:
            graph = tracer.trace(model, concrete_args=concrete or None)
        except Exception as err:  # noqa: BLE001 - locate the failing submodule and retry
            culprit = _innermost(tracer)
            if not culprit or culprit in forced:
                where = f"in submodule {culprit!r}" if culprit else "in the top-level forward"
                raise ProfileError(
                    f"torch.fx failed {where}: {_first_line(err)}. torch.fx needs a forward "
                    "without Python control flow on tensor values and returning tensors (or "
                    "tuples, lists, dicts of them)") from err
            forced.add(culprit)
            continue
        gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
        _drop_default_placeholders(gm, len(args))
        cap = Captured(gm, {}, {}, [], "fx", leaves_forced=sorted(forced))
        values = _shapes(cap, args)
        drop_identities(gm, values)
        cap = _group(gm, model, "fx", None, values)
        cap.leaves_forced = sorted(forced)
        return cap
    raise ProfileError(f"cannot trace {type(model).__name__} with torch.fx")  # pragma: no cover


def _drop_default_placeholders(gm: fx.GraphModule, n_given: int) -> None:
    """Concrete (default) arguments leave unused placeholders behind: drop them."""
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for n in phs[n_given:]:
        for u in list(n.users):  # fx checks a concrete None with _assert_is_none
            if not u.users and "assert" in getattr(u.target, "__name__", ""):
                gm.graph.erase_node(u)
        if n.users:
            raise ProfileError(f"the traced forward still uses argument {n.target!r} after fixing "
                               "it to its default; pass it in example_inputs")
        gm.graph.erase_node(n)
    gm.recompile()


def _shapes(cap: Captured, args: tuple[Any, ...]) -> dict[fx.Node, Any]:
    """Run the traced graph on meta tensors once: which node computes a tensor, which does not."""
    from splitopt.profiler.runner import NodeRunner, to_meta

    runner = NodeRunner(cap, meta=True, count=False)
    runner.run([to_meta(a) if isinstance(a, torch.Tensor) else a for a in args])
    return runner.env


def _innermost(tracer: fx.Tracer) -> str:
    """The qualified name of the innermost module being traced when tracing failed."""
    stack = getattr(tracer, "module_stack", None) or {}
    for key in reversed(list(stack)):
        path = stack[key][0] if isinstance(stack[key], tuple) else key
        if path:
            return str(path)
    return ""


# --------------------------------------------------------------------------- grouping
def _group(gm: fx.GraphModule, model: nn.Module, route: str, out_spec: Any,
           values: dict[fx.Node, Any]) -> Captured:
    names = _Namer({n for n, _ in model.named_modules() if n} | {OUTPUT})
    group: dict[fx.Node, str] = {}
    kinds: dict[str, str] = {}
    inputs: list[str] = []
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            name = names.unique(str(node.target).lstrip("*"))
            inputs.append(name)
            group[node], kinds[name] = name, "input"
        elif node.op == "output":
            group[node] = OUTPUT
        elif node.op == "get_attr":
            continue
        else:
            leaf = _leaf_name(node, model, route, calls)
            host = None if leaf else _host(node, values, group, set(inputs))
            if host is not None:
                group[node] = host
                continue
            name, kind = leaf or _op_name(node, names)
            group[node] = name
            kinds.setdefault(name, kind)
    views = split_outputs(gm, group, kinds, values, {*inputs, OUTPUT}, _is_view)
    return Captured(gm, group, kinds, inputs, route, out_spec=out_spec, values=values,
                    views=views)


def _is_view(node: fx.Node) -> bool:
    """An operation that only reshapes or selects (a piece of a tuple, a view of a tensor)."""
    return node.op in ("call_function", "call_method") and (
        node.target is operator.getitem or _op_of(node) in SHAPE_OPS)


#: Operations that only reshape or select a tensor (no FLOPs): they join their input's node
SHAPE_OPS = frozenset({
    "view", "reshape", "_unsafe_view", "transpose", "permute", "unflatten", "flatten",
    "contiguous", "expand", "t", "unsqueeze", "squeeze", "split", "split_with_sizes", "chunk",
    "unbind", "select", "slice", "alias"})


def _host(node: fx.Node, values: dict[fx.Node, Any], group: dict[fx.Node, str],
          inputs: set[str]) -> str | None:
    """The node that ``node`` joins (docs/profiler.md), or None when it is a node of its own."""
    if _rides_along(node, values, group):
        return group[next(m for m in node.all_input_nodes if m in group)]
    # sizes (ints) do not tie a reshape to a node; tensors do
    owners = [group[m] for m in node.all_input_nodes
              if m in group and isinstance(values.get(m), torch.Tensor)]
    if len(set(owners)) == 1 and owners[0] not in inputs and _op_of(node) in SHAPE_OPS:
        return owners[0]
    return None


def _rides_along(node: fx.Node, values: dict[fx.Node, Any], group: dict[fx.Node, str]) -> bool:
    """True for getitem on a tuple and for size arithmetic: they join their first input's node."""
    if node.op == "call_module" or not any(m in group for m in node.all_input_nodes):
        return False
    if node.op == "call_function" and node.target is operator.getitem:
        src = node.args[0]
        return isinstance(src, fx.Node) and not isinstance(values.get(src), torch.Tensor)
    flat = [v for v in _flat(values.get(node)) if isinstance(v, torch.Tensor)]
    return not flat and node in values


def _flat(value: Any) -> list[Any]:
    from torch.utils._pytree import tree_flatten

    return tree_flatten(value)[0]


def _leaf_name(node: fx.Node, model: nn.Module, route: str,
               calls: dict[str, int]) -> tuple[str, str] | None:
    """``(FQN[@k], class name)`` when ``node`` runs inside a leaf module, else None."""
    if route == "fx" and node.op == "call_module":
        key = str(node.target)
        k = calls.get(key, 0)
        calls[key] = k + 1
        return (key if k == 0 else f"{key}@{k}"), type(model.get_submodule(key)).__name__
    for key, value in (node.meta.get("nn_module_stack") or {}).items():
        path = _clean_path(value[0])
        if not path:
            continue
        try:
            mod = model.get_submodule(path)
        except AttributeError:
            continue
        if is_leaf(mod):
            m = re.search(r"@(\d+)$", str(key))
            return (path + (f"@{m.group(1)}" if m else "")), type(mod).__name__
    return None


def _clean_path(path: Any) -> str:
    # Some torch versions spell the stack as L['self'].a.b or L__self___a_b: keep a dotted path.
    text = str(path)
    text = re.sub(r"^L\['self'\]\.?", "", text)
    return re.sub(r"\._modules\['([^']+)'\]", r".\1", text).lstrip(".")


def _op_name(node: fx.Node, names: _Namer) -> tuple[str, str]:
    op = _op_of(node)
    scope = ""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        scope = _clean_path(list(stack.values())[-1][0])
    # in-place and out-of-place variants share a name (fx traces ``out += x`` as ``add``, export
    # as ``add_``), so both routes name the node alike
    base = op.strip("_") or op
    base = _ATEN_NAMES.get(base, base).rstrip("_") or base
    return names.unique(f"{scope}.{base}" if scope else base), op


def _op_of(node: fx.Node) -> str:
    t = node.target
    if t is operator.getitem:  # indexing a tensor: the name of the ATen op export would show
        index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        if any(isinstance(i, (fx.Node, list)) for i in index):
            return "index"
        return "select" if any(isinstance(i, int) for i in index) else "slice"
    if node.op == "call_method":
        return str(t)
    if node.op == "call_module":
        return str(t).rsplit(".", 1)[-1]
    if isinstance(t, torch._ops.OpOverload):
        return t._opname
    name = getattr(t, "__name__", str(t)).strip("_") or "op"
    return _ATEN_NAMES.get(name, name)


#: Python operators whose ATen name differs, so that both routes name the node alike
_ATEN_NAMES = {"invert": "bitwise_not", "truediv": "div", "floordiv": "floor_divide",
               "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor", "iadd": "add_",
               "isub": "sub_", "imul": "mul_", "itruediv": "div_"}


class _Namer:
    """Hand out unique names: ``base``, then ``base_1``, ``base_2``, ..."""

    def __init__(self, taken: set[str]):
        self.taken = set(taken)

    def unique(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name
