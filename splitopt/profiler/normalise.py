"""Capture adjustments that make torch.export and torch.fx give the same graph of a model.

- :func:`no_cache`: a Hugging Face causal LM returns its key/value cache by default, which neither
  route can return; the capture runs with the cache off.
- :func:`drop_identities`: torch.export records no operation for a leaf that returns its input
  itself (``StochasticDepth(p=0)``, ``nn.Identity``), so the fx route drops such calls too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode


@contextmanager
def no_cache(model: nn.Module) -> Iterator[None]:
    """Turn a Hugging Face model's key/value cache off while it is captured.

    A causal LM returns its ``DynamicCache`` by default, an object neither torch.export nor
    torch.fx can return; training never uses it, so the capture (and every part built from it)
    runs with ``config.use_cache = False``. Models without such a config are untouched.
    """
    cfg = getattr(model, "config", None)
    if getattr(cfg, "use_cache", None) is not True:
        yield
        return
    cfg.use_cache = False
    try:
        yield
    finally:
        cfg.use_cache = True


def drop_identities(gm: fx.GraphModule, values: dict[fx.Node, Any]) -> None:
    """Drop calls of parameter-free leaves that return their input itself in train and eval mode.

    ``StochasticDepth(p=0)`` or ``nn.Identity`` run no operation, so torch.export records none
    and has no node for them; dropping them here gives both routes the same node names.
    """
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.all_input_nodes) != 1 or node.kwargs:
            continue
        mod, src = gm.get_submodule(str(node.target)), node.all_input_nodes[0]
        x = values.get(src)
        if next(mod.parameters(), None) is not None or not isinstance(x, torch.Tensor):
            continue
        was = mod.training
        try:
            with _Calls() as calls:  # F.dropout(x, 0.0) returns x but is an operation to export
                same = all(mod.train(mode)(x) is x for mode in (True, False))
            same = same and not calls.names
        except Exception:  # noqa: BLE001 - a module that cannot run alone is no identity
            same = False
        finally:
            mod.train(was)
        if same:
            node.replace_all_uses_with(src)
            gm.graph.erase_node(node)
    gm.recompile()


class _Calls(TorchFunctionMode):
    """Record the torch functions called inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))
