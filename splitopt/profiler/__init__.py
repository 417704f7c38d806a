"""torch model -> LayerGraph (see docs/profiler.md).

``profile`` captures the graph (torch.fx when it traces every module, else torch.export), counts
per-sample forward and backward FLOPs with ``torch.utils.flop_counter`` on meta tensors, and
optionally times each node on this machine. ``profile_model`` does the same from a zoo name or
``package.module:factory``; ``attach_profile`` attaches the measured H100 per-layer times by module
name.
"""

from __future__ import annotations

from typing import Any

__all__ = ["attach_profile", "load_model", "profile", "profile_model"]


def __getattr__(name: str) -> Any:
    # torch is imported only when a profiler function is first used
    if name == "profile":
        from splitopt.profiler.core import profile

        return profile
    if name in ("profile_model", "load_model"):
        from splitopt.profiler import spec

        return getattr(spec, name)
    if name == "attach_profile":
        from splitopt.profiler.attach import attach_profile

        return attach_profile
    raise AttributeError(f"module 'splitopt.profiler' has no attribute {name!r}")
