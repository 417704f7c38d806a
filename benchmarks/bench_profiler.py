"""Profiler family: seconds and peak memory to profile each zoo model and a GPT-2-XL-sized model
(1.56e9 parameters, on meta tensors), each in a fresh process (benchmarks/profiler.py)."""

from __future__ import annotations

from functools import partial
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, register

QUICK = ("digits_cnn", "resnet18", "gpt2_xl")
FULL = ("digits_cnn", "resnet18", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0",
        "vit_b_16", "gpt2", "bert_base", "gpt2_xl")


def profile(model: str, capture: str) -> dict[str, Any]:
    """Objective: seconds to profile; peak_rss_gib is the process's peak resident memory."""
    from splitopt.benchmarks.profiler import run

    r = run(model, capture, timeout=600)
    if "error" in r:
        return {"status": "error", "error": r["error"]}
    return {**r, "objective": r["seconds"], "solve_s": r["seconds"], "status": "ok"}


def _cases(quick: bool) -> list[Case]:
    return [Case(m, c, partial(profile, m, c)) for m in (QUICK if quick else FULL)
            for c in (("auto",) if quick else ("auto", "fx"))]


SPEC = register(BenchSpec(
    name="profiler",
    description="profile each zoo model from meta tensors (no weights allocated): seconds, peak "
                "RSS (GiB), capture used (auto: torch.fx when it traces every module, else "
                "torch.export)",
    cases=_cases, baseline=None,
    extra={"columns": ["capture", "params", "nodes", "peak_rss_gib", "weights_gib",
                       "cpu_seconds"]}))
