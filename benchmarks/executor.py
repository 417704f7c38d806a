"""Benchmark of the executors (issue 7): overhead, time-to-accuracy, predicted vs measured.

1. Overhead per step of the split executor (the in-process runner: one device, vanilla SL at a
   cut inside the conv stack, timing and transfer pricing included) over plain torch training of
   the same model on the same batches in one process. Short bursts are interleaved (plain, split,
   plain, ...) and the median of the paired ratios is reported, in wall time and in this
   process's CPU time (``time.process_time``, one torch thread), which load from other processes
   on a shared machine disturbs far less than wall time.
2. Time-to-accuracy on digits, non-IID (Dirichlet alpha = 0.5), 4 devices, for FL, SL, SFL-V1,
   SFL-V2, parallel SL and an HSFL plan (two devices FL, two split): rounds and simulated seconds
   (measured compute + priced transfers) until the test accuracy first reaches the target.
3. Predicted vs measured phase times per round (SFL-V1) with the cost model calibrated from
   per-node times measured here; the relative error per phase.

    python benchmarks/executor.py            # full
    python benchmarks/executor.py --quick    # seconds to a minute
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from splitopt.execute.examples import digits_job, digits_scenario
from splitopt.execute.runner import InProcessRunner, train
from splitopt.execute.timing import calibrate, compare, predict

MODES = ("fl", "sl", "sflv1", "sflv2", "psl", "hsfl")


def overhead(batch: int, steps: int, reps: int) -> dict[str, Any]:
    """Median seconds per step, plain torch vs the split executor, and their ratio."""
    from splitopt import zoo
    from splitopt.execute.data import DeviceData

    job = digits_job(1, mode="sl", cuts=["relu2"], batch_sizes=[batch], rounds=1,
                     local_iters=steps)
    runner = InProcessRunner(job)
    events = job.training_mode().round_events(0, ["dev0"], steps)
    model, _ = job.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=job.config.lr, momentum=job.config.momentum)
    data = DeviceData(runner.data.shards["dev0"], seed=1)
    loss_fn = zoo.loss_fn("digits_cnn")

    def plain() -> None:
        for _ in range(steps):
            x, y = data.next(batch)
            loss_fn(model(*x), y).backward()
            opt.step()
            opt.zero_grad()

    def split() -> None:
        runner.run_round(0, events)

    return {"section": "overhead", "model": "digits_cnn", "batch": batch, "steps": steps,
            "reps": reps, **_paired(plain, split, steps, reps)}


def overhead_resnet18(batch: int, steps: int, reps: int, image_size: int = 64) -> dict[str, Any]:
    """The same paired measurement on resnet18 (synthetic images), cut after layer2."""
    from splitopt import zoo
    from splitopt.execute.data import DeviceData
    from splitopt.execute.job import Job, RunConfig
    from splitopt.plan import DevicePlan, Plan
    from splitopt.profiler import profile

    model, ex = zoo.build("resnet18", image_size=image_size)
    g = profile(model, ex)
    sc = digits_scenario(1, batch_size=batch, local_iters=steps, graph=g)
    plan = Plan((DevicePlan("dev0", g.pred_closure(["layer2.1.add"]), 1.0, batch_size=batch),))
    job = Job(plan, sc, "resnet18", RunConfig(mode="sl", rounds=1, data="synthetic",
                                              samples_per_device=16 * batch),
              model_config={"image_size": image_size})
    runner = InProcessRunner(job)
    events = job.training_mode().round_events(0, ["dev0"], steps)
    plain_model, _ = job.build_model()
    opt = torch.optim.SGD(plain_model.parameters(), lr=job.config.lr,
                          momentum=job.config.momentum)
    data = DeviceData(runner.data.shards["dev0"], seed=1)
    loss_fn = zoo.loss_fn("resnet18")

    def plain() -> None:
        for _ in range(steps):
            x, y = data.next(batch)
            loss_fn(plain_model(*x), y).backward()
            opt.step()
            opt.zero_grad()

    def split() -> None:
        runner.run_round(0, events)

    return {"section": "overhead", "model": f"resnet18 {image_size}px", "batch": batch,
            "steps": steps, "reps": reps, **_paired(plain, split, steps, reps)}


def _paired(plain: Any, split: Any, steps: int, reps: int) -> dict[str, Any]:
    """Interleaved bursts (plain, split, ...): medians of seconds per step and of the ratios."""
    wall: dict[str, list[float]] = {"plain": [], "split": []}
    cpu: dict[str, list[float]] = {"plain": [], "split": []}
    for _ in range(reps + 1):  # the first repetition warms up and is dropped
        for name, fn in (("plain", plain), ("split", split)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - t0) / steps)
            cpu[name].append((time.process_time() - c0) / steps)
    ratio = {k: [s / p for s, p in zip(v["split"][1:], v["plain"][1:], strict=True)]
             for k, v in (("wall", wall), ("cpu", cpu))}
    med = statistics.median
    return {"plain_ms": 1e3 * med(wall["plain"][1:]), "split_ms": 1e3 * med(wall["split"][1:]),
            "ratio_wall": med(ratio["wall"]), "plain_cpu_ms": 1e3 * med(cpu["plain"][1:]),
            "split_cpu_ms": 1e3 * med(cpu["split"][1:]), "ratio_cpu": med(ratio["cpu"]),
            "ratio_cpu_min": min(ratio["cpu"]), "ratio_cpu_max": max(ratio["cpu"])}


def time_to_accuracy(mode: str, rounds: int, target: float) -> dict[str, Any]:
    """Rounds and simulated seconds until the test accuracy reaches ``target``."""
    sc = digits_scenario(4, batch_size=16, local_iters=5, bandwidth_hz=2e6)
    modes = ["fl", "split", "fl", "split"] if mode == "hsfl" else None
    job = digits_job(4, mode=mode, modes=modes, scenario=sc, rounds=rounds, lr=0.05, iid=False,
                     alpha=0.5, cuts=["conv1", "relu2", "fc1", "relu2"])
    t0 = time.perf_counter()
    res = train(job)
    wall = time.perf_counter() - t0
    clock, hit = 0.0, None
    for rec in res.history:
        clock += rec.latency_s
        if hit is None and rec.test_accuracy >= target:
            hit = (rec.round + 1, clock)
    return {"section": "time_to_accuracy", "mode": mode, "target": target,
            "rounds_to_target": hit[0] if hit else None,
            "sim_seconds_to_target": hit[1] if hit else None,
            "final_accuracy": res.history[-1].test_accuracy, "rounds_run": rounds,
            "wall_s": wall}


def predicted_vs_measured(rounds: int) -> list[dict[str, Any]]:
    """Relative error per phase, SFL-V1 on 3 devices, cost model calibrated here."""
    job = digits_job(3, mode="sflv1", rounds=rounds, local_iters=5, batch_sizes=[32, 32, 32],
                     cuts=["conv1", "relu2", "fc1"])
    sc = calibrate(job)
    pred, latency = predict(job, sc)
    res = train(job)
    summary = compare(res.history, pred, latency)["phases"]
    return [{"section": "predicted_vs_measured", "phase": k, **v} for k, v in summary.items()]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Every section; returns the rows (also printed)."""
    torch.set_num_threads(1)
    rows = [overhead(b, steps=10, reps=9 if quick else 31) for b in ((32,) if quick else (32, 128))]
    rows.append(overhead_resnet18(16, steps=3, reps=5 if quick else 11))
    rounds = 8 if quick else 30
    rows += [time_to_accuracy(m, rounds, target=0.8) for m in MODES]
    rows += predicted_vs_measured(3 if quick else 6)
    for r in rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return rows


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
