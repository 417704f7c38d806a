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
3. Predicted vs measured seconds per device and phase (device compute, uplink, downlink, server
   compute, aggregation) of the multi-process runner over emulated links (kernel-shaped ``htb``
   where possible, else paced), on digits_cnn and on resnet18 with 64 px images, the prediction
   calibrated here first (:func:`splitopt.execute.timing.calibrate`); a markdown table at the end.

    python benchmarks/executor.py                       # full
    python benchmarks/executor.py --quick               # a few minutes
    python benchmarks/executor.py --only=links          # section 3 only (overhead,accuracy,links)
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from splitopt.execute.examples import digits_job, digits_scenario
from splitopt.execute.runner import InProcessRunner, train
from splitopt.execute.timing import (
    CPU_COMPARED,
    TRANSFER_GAP_S,
    calibrate,
    compare,
    predict,
    rel_error,
)

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


def resnet18_job(cuts: list[str], batch: int, steps: int, *, mode: str = "sl", rounds: int = 1,
                 image_size: int = 64, bandwidth_hz: float = 1e6) -> Any:
    """resnet18 on synthetic ``image_size`` images, one device per cut (device side up to it)."""
    from splitopt import zoo
    from splitopt.execute.job import Job, RunConfig
    from splitopt.plan import DevicePlan, Plan
    from splitopt.profiler import profile

    model, ex = zoo.build("resnet18", image_size=image_size)
    g = profile(model, ex)
    sc = digits_scenario(len(cuts), batch_size=batch, local_iters=steps, graph=g,
                         bandwidth_hz=bandwidth_hz)
    plan = Plan(tuple(DevicePlan(d.name, g.pred_closure([c]), 1.0 / len(cuts), batch_size=batch)
                      for d, c in zip(sc.devices, cuts, strict=True)))
    return Job(plan, sc, "resnet18", RunConfig(mode=mode, rounds=rounds, data="synthetic",
                                               samples_per_device=16 * batch),
               model_config={"image_size": image_size})


def overhead_resnet18(batch: int, steps: int, reps: int, image_size: int = 64) -> dict[str, Any]:
    """The same paired measurement on resnet18 (synthetic images), cut after layer2."""
    from splitopt import zoo
    from splitopt.execute.data import DeviceData

    job = resnet18_job(["layer2.1.add"], batch, steps, image_size=image_size)
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


EMULATED = {
    # SL: devices in turn through one server process, so each part runs alone on its core
    "digits": lambda rounds: digits_job(
        2, mode="sl", cuts=["conv1", "relu2"], batch_sizes=[16, 16], rounds=rounds,
        local_iters=3, scenario=digits_scenario(2, batch_size=16, local_iters=3,
                                                bandwidth_hz=4e6)),
    "resnet18-64px": lambda rounds: resnet18_job(
        ["layer1.1.add", "layer2.1.add"], 16, 2, rounds=rounds, bandwidth_hz=2e7),
    # the demo's exact plan (6 devices, 1-10 ms messages), trained as the demo trains it
    "demo-plan": lambda rounds: demo_job(rounds),
}


def demo_job(rounds: int) -> Any:
    """The exact plan of splitopt/data/default_scenario.yaml under SFL-V1, as the demo runs it."""
    from splitopt.formulations.sfl import SFL

    from splitopt.execute.job import Job, RunConfig
    from splitopt.scenario import Scenario, default_scenario_path

    sc = Scenario.load(default_scenario_path())
    plan = SFL().solve(sc)  # the demo's exact plan (splitopt.demo.solve_plans' first)
    return Job(plan, sc, "digits_cnn", RunConfig(mode="sflv1", rounds=rounds, seed=0))


def predicted_vs_measured(model: str, rounds: int, links: str = "auto") -> list[dict[str, Any]]:
    """Per device and phase: predicted vs measured seconds per round, multi-process runner.

    Transfers go over emulated links (``htb`` where the kernel can shape them, else ``paced``);
    the prediction is calibrated here first (per-node times and the executor's part times), and
    ``per_node_predicted`` gives the planner's per-node compute model beside it. Links are
    predicted with the per-message overhead a calibration exchange on the same kind of links
    measured (``predicted``) and by ``8 * bytes / rate`` alone (``reference_predicted``).
    """
    from splitopt.execute.launch import launch
    from splitopt.execute.linkcal import calibrated, exchange

    job = EMULATED[model](rounds)
    cal = calibrate(job, gap_s=TRANSFER_GAP_S)
    reference, latency = predict(job, cal, server_work=True)
    per_node, _ = predict(job, cal.scenario, server_work=True)
    res = launch(job, links=links, timeout_s=600)
    aggregate = job.training_mode().has_global
    fits = exchange(job, res.links, reference, aggregate=aggregate)
    pred = calibrated(reference, fits, job.iters(), aggregate=aggregate)
    cmp = compare(res.history, pred, latency, reference=reference)
    rows = [{"section": "predicted_vs_measured", "model": model, "mode": job.config.mode,
             "links": res.links, "device": d, "phase": k, **v,
             "per_node_predicted": getattr(per_node[d], CPU_COMPARED.get(k, k))}
            for d, phases in cmp["per_device"].items() for k, v in phases.items()]
    rows.append({"section": "predicted_vs_measured", "model": model, "mode": job.config.mode,
                 "links": res.links, "device": "all", "phase": "round_s",
                 **cmp["phases"]["round_s"]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`predicted_vs_measured` rows."""
    out = ["| model | links | device | phase | predicted s | measured s | rel. error | "
           "measured min..max | reference s | ref. error | per-node model s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:+.1f}%"

    def spread(r: dict[str, Any]) -> str:  # the measured range over rounds, as errors
        if "measured_min" not in r or not r["predicted"]:
            return ""
        return f"{pct(rel_error(r['measured_min'], r['predicted']))}.." \
               f"{pct(rel_error(r['measured_max'], r['predicted']))}"

    for r in rows:
        node = r.get("per_node_predicted")
        out.append(f"| {r['model']} ({r['mode']}) | {r['links']} | {r['device']} | {r['phase']} "
                   f"| {r['predicted']:.4f} | {r['measured']:.4f} | {pct(r['rel_error'])} | "
                   f"{spread(r)} | {r.get('reference_predicted', r['predicted']):.4f} | "
                   f"{pct(r.get('reference_rel_error', r['rel_error']))} | "
                   f"{'' if node is None else f'{node:.4f}'} |")
    return "\n".join(out)


def run(quick: bool = False, sections: tuple[str, ...] = ("overhead", "accuracy",
                                                             "links")) -> list[dict[str, Any]]:
    """The chosen sections; returns the rows (also printed)."""
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    if "overhead" in sections:
        rows += [overhead(b, steps=10, reps=9 if quick else 31)
                 for b in ((32,) if quick else (32, 128))]
        rows.append(overhead_resnet18(16, steps=3, reps=5 if quick else 11))
    if "accuracy" in sections:
        rounds = 8 if quick else 30
        rows += [time_to_accuracy(m, rounds, target=0.8) for m in MODES]
    links = []
    if "links" in sections:
        for model in EMULATED:
            links += predicted_vs_measured(model, 3 if quick else 6)
    for r in rows + links:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    if links:
        print(table(links))
    return rows + links


if __name__ == "__main__":
    only = [a.removeprefix("--only=") for a in sys.argv[1:] if a.startswith("--only=")]
    run(quick="--quick" in sys.argv,
        sections=tuple(only[0].split(",")) if only else ("overhead", "accuracy", "links"))
