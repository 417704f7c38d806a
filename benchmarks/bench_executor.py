"""Executor family: split-executor overhead over plain torch, time-to-accuracy on non-IID digits
per training mode, and predicted vs measured phase times (benchmarks/executor.py)."""

from __future__ import annotations

from functools import partial
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, register

MODES = ("fl", "sl", "sflv1", "sflv2", "psl", "hsfl")


def overhead(batch: int, reps: int) -> dict[str, Any]:
    """Objective: CPU ms per step; ratio_cpu is split / plain (goal < 1.05)."""
    import torch
    from splitopt.benchmarks.executor import overhead as measure

    torch.set_num_threads(1)
    r = measure(batch, steps=10, reps=reps)
    return {**r, "objective": r["split_cpu_ms"], "status": "ok", "solve_s": r["split_cpu_ms"] / 1e3}


def plain(batch: int, reps: int) -> dict[str, Any]:
    """The plain-torch side of the same paired measurement (the baseline row)."""
    r = overhead(batch, reps)
    return {"objective": r["plain_cpu_ms"], "status": "ok", "solve_s": r["plain_cpu_ms"] / 1e3}


def accuracy(mode: str, rounds: int, target: float) -> dict[str, Any]:
    """Objective: simulated seconds until the target test accuracy (None if not reached)."""
    import torch
    from splitopt.benchmarks.executor import time_to_accuracy

    torch.set_num_threads(1)
    r = time_to_accuracy(mode, rounds, target=target)
    return {**r, "objective": r["sim_seconds_to_target"],
            "status": "ok" if r["rounds_to_target"] else "target not reached"}


def phases(rounds: int) -> dict[str, Any]:
    """Relative error of predicted vs measured per phase (SFL-V1, calibrated here)."""
    import torch
    from splitopt.benchmarks.executor import predicted_vs_measured

    torch.set_num_threads(1)
    rows = predicted_vs_measured(rounds)
    return {"status": "ok", "phases": rows}


def _cases(quick: bool) -> list[Case]:
    reps, rounds, target = (9, 8, 0.5) if quick else (31, 30, 0.8)
    cases = [Case("step overhead b32", "split executor", partial(overhead, 32, reps)),
             Case("step overhead b32", "plain torch", partial(plain, 32, reps))]
    cases += [Case(f"time to {target:.0%} (digits non-IID)", m,
                   partial(accuracy, m, rounds, target)) for m in MODES]
    cases.append(Case("predicted vs measured (SFL-V1)", "calibrated model",
                      partial(phases, 3 if quick else 6)))
    return cases


SPEC = register(BenchSpec(
    name="executor",
    description="torch executors on scikit-learn's digits: CPU ms per training step of the split "
                "executor vs plain torch (objective), simulated seconds to 80% (quick: 50%) test "
                "accuracy per mode (4 devices, Dirichlet 0.5), predicted vs measured phase times",
    cases=_cases, baseline=("plain torch", "fl"),
    extra={"columns": ["ratio_cpu", "rounds_to_target", "final_accuracy"]}))
