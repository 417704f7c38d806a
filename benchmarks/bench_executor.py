"""Executor family: split-executor overhead over plain torch, time-to-accuracy on non-IID digits
per training mode, and predicted vs measured phase times (benchmarks/executor.py)."""

from __future__ import annotations

from functools import partial
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, register

MODES = ("fl", "sl", "sflv1", "sflv2", "psl", "hsfl")
EMULATED = ("digits", "resnet18-64px")  # the keys of benchmarks/executor.py EMULATED


def overhead(model: str, batch: int, reps: int) -> dict[str, Any]:
    """Objective: CPU ms per step; ratio_cpu is split / plain (goal < 1.05)."""
    import torch
    from splitopt.benchmarks.executor import overhead as digits
    from splitopt.benchmarks.executor import overhead_resnet18

    torch.set_num_threads(1)
    r = (digits(batch, steps=10, reps=reps) if model == "digits_cnn"
         else overhead_resnet18(batch, steps=3, reps=reps))
    return {**r, "objective": r["split_cpu_ms"], "status": "ok", "solve_s": r["split_cpu_ms"] / 1e3}


def plain(model: str, batch: int, reps: int) -> dict[str, Any]:
    """The plain-torch side of a paired measurement of its own (the baseline row)."""
    r = overhead(model, batch, reps)
    return {"objective": r["plain_cpu_ms"], "status": "ok", "solve_s": r["plain_cpu_ms"] / 1e3}


def accuracy(mode: str, rounds: int, target: float) -> dict[str, Any]:
    """Objective: simulated seconds until the target test accuracy (None if not reached)."""
    import torch
    from splitopt.benchmarks.executor import time_to_accuracy

    torch.set_num_threads(1)
    r = time_to_accuracy(mode, rounds, target=target)
    return {**r, "objective": r["sim_seconds_to_target"],
            "status": "ok" if r["rounds_to_target"] else "target not reached"}


def phases(model: str, rounds: int) -> dict[str, Any]:
    """Objective: the largest |relative error| over devices of uplink, downlink and device and
    server compute (CPU seconds), multi-process runner on emulated links, calibrated here."""
    import torch
    from splitopt.benchmarks.executor import predicted_vs_measured

    torch.set_num_threads(1)
    rows = predicted_vs_measured(model, rounds)
    kept = ("uplink_s", "downlink_s", "device_compute_cpu_s", "server_compute_cpu_s")
    worst = max(abs(r["rel_error"]) for r in rows if r["phase"] in kept
                and r["rel_error"] is not None)
    return {"status": "ok", "objective": worst, "links": rows[0]["links"], "phases": rows}


def _cases(quick: bool) -> list[Case]:
    reps, rounds, target = (9, 8, 0.5) if quick else (31, 30, 0.8)
    cases = []
    for model, batch, n in (("digits_cnn", 32, reps), ("resnet18", 16, 5 if quick else 11)):
        inst = f"step overhead {model} b{batch}"
        cases += [Case(inst, "split executor", partial(overhead, model, batch, n)),
                  Case(inst, "plain torch", partial(plain, model, batch, n))]
    cases += [Case(f"time to {target:.0%} (digits non-IID)", m,
                   partial(accuracy, m, rounds, target)) for m in MODES]
    cases += [Case(f"predicted vs measured, emulated links ({model})", "calibrated model",
                   partial(phases, model, 3 if quick else 6)) for model in EMULATED]
    return cases


SPEC = register(BenchSpec(
    name="executor",
    description="torch executors on scikit-learn's digits: CPU ms per training step of the split "
                "executor vs plain torch (objective), simulated seconds to 80% (quick: 50%) test "
                "accuracy per mode (4 devices, Dirichlet 0.5), predicted vs measured seconds per "
                "device and phase over emulated links (objective: worst |rel. error|)",
    cases=_cases, baseline=("plain torch", "fl"),
    extra={"columns": ["ratio_cpu", "rounds_to_target", "final_accuracy"]}))
