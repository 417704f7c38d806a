"""Executors: cut a torch model by a plan and train it (see docs/).

Submodules are imported lazily so that ``import splitopt.execute`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"SplitModel": "split", "split_model": "split", "to_pipe_split_spec": "split"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'splitopt.execute' has no attribute {name!r}")
