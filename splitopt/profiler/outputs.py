"""One LayerGraph node per output tensor: the rule that makes priced bytes equal sent bytes.

The cost model prices a cut node by node: a boundary node sends its ``out_bytes`` once. That is
exact only when every node has *one* output value, so that "some consumer is on the other side"
means "this value crosses". A group of fx operations can leave several tensors, each read by
different consumers: GPT-2's ``c_attn`` leaves q, k and v (the split of its output), a GLU's
``chunk`` leaves two halves, ``scores`` leaves the scores and ``scores[0, 0]``. Priced per node,
a cut that sends only v would be charged q + k + v.

:func:`split_outputs` gives each such tensor its own node. A tensor that leaves its group through
a chain of view operations (``getitem``, ``split``'s pieces, ``view``, ``transpose``, ... of
:data:`~splitopt.profiler.capture.SHAPE_OPS`) read by nothing else in the group becomes the node
``<group>:<k>`` (k: its position among the group's output tensors, in execution order), holding
that chain; it computes no FLOPs, keeps no activation of its own (it is a view of its
producer's output: ``act_bytes`` 0) and sends only its own bytes. The group keeps the tensor the
chains start from (the split's list of pieces, sent whole only when a piece's node is cut from
it, which a minimum cut never prefers), so every node is left by one value and each crossing
tensor is priced once. Both capture routes apply the same rule, so their node names agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten


def is_data(value: Any) -> bool:
    """True for a tensor or a (nested) tuple/list of tensors: a value that is sent as data."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)) and value:
        flat = tree_flatten(value)[0]
        return bool(flat) and all(isinstance(t, torch.Tensor) for t in flat)
    return False


def exits_of(nodes: list[fx.Node], group: dict[fx.Node, str], g: str,
             values: dict[fx.Node, Any]) -> list[fx.Node]:
    """The data-valued fx nodes of group ``g`` read by another group, in execution order."""
    return [n for n in nodes if is_data(values.get(n))
            and any(group.get(u) not in (None, g) for u in n.users)]


def split_outputs(gm: fx.GraphModule, group: dict[fx.Node, str], kinds: dict[str, str],
                  values: dict[fx.Node, Any], skip: set[str],
                  is_view: Callable[[fx.Node], bool]) -> list[str]:
    """Give each output tensor of a multi-output group its own node (module docstring).

    Mutates ``group`` and ``kinds``; returns the names of the new view nodes. Groups in ``skip``
    (inputs, the output) are left alone.
    """
    members: dict[str, list[fx.Node]] = {}
    for n in gm.graph.nodes:
        if n in group:
            members.setdefault(group[n], []).append(n)
    made = []
    for g, nodes in members.items():
        if g in skip:
            continue
        exits = exits_of(nodes, group, g, values)
        if len(exits) < 2:
            continue
        # last first: a view read by a later view leaves the group only once that one has left
        for k in reversed(range(len(exits))):
            if len(exits_of([n for n in nodes if group[n] == g], group, g, values)) < 2:
                break
            chain = _view_chain(exits[k], group, g, values, is_view)
            if chain:
                name = f"{g}:{k}"
                for n in chain:
                    group[n] = name
                kinds[name] = "view"
                made.append(name)
    return made


def _view_chain(e: fx.Node, group: dict[fx.Node, str], g: str, values: dict[fx.Node, Any],
                is_view: Callable[[fx.Node], bool]) -> list[fx.Node]:
    """The view operations of ``g`` that lead to the output tensor ``e`` and to nothing else."""
    if any(group.get(u) == g for u in e.users):
        return []  # read inside its group too: it stays there
    chain: list[fx.Node] = []
    n, after = e, None
    while (group.get(n) == g and is_view(n) and is_data(values.get(n))
           and (after is None or set(n.users) == {after})):
        chain.insert(0, n)
        srcs = [m for m in n.all_input_nodes if is_data(values.get(m))]
        if len(srcs) != 1:
            break
        n, after = srcs[0], n
    # the chain must start from a value of the group (its producer stays in the group)
    while chain and not any(group.get(m) == g for m in chain[0].all_input_nodes
                            if is_data(values.get(m))):
        chain.pop(0)
    return chain


def multi_output_groups(gm: fx.GraphModule, group: dict[fx.Node, str],
                        values: dict[fx.Node, Any]) -> list[str]:
    """Groups still left by several data values (priced whole: see docs/profiler.md limits)."""
    members: dict[str, list[fx.Node]] = {}
    for n in gm.graph.nodes:
        if n in group:
            members.setdefault(group[n], []).append(n)
    return [g for g, ns in members.items() if len(exits_of(ns, group, g, values)) > 1]

