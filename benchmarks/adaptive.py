"""Benchmark (issue 14 §2): an adaptive run against the static plan on links that change.

A fleet of 4 digits_cnn devices (SFL-V1, IID shards, batch 64, 20 local iterations, lr 0.01,
10 GFLOP/s devices, a dedicated 100 GFLOP/s server, a 20 MHz band) whose links follow a steps
trace: every device starts at 160 Mbit/s (at the whole band); ``dev1`` and ``dev2`` drop 10x to
16 Mbit/s at ``t_drop`` and recover at ``t_back`` (seconds of the run's own clock). Both runs
start from the exact plan at t = 0 (SFL through
``splitopt.Planner``); the **static** run keeps its cuts and bandwidth shares while the links
change, the **adaptive** run re-plans between rounds (``TraceReplanner``) and re-splits the
devices whose cut moved, with their optimiser state (``splitopt.execute.adaptive``).

Both runs compute the same weights round by round (same data order; a re-split changes where a
layer runs, not what is computed), so their accuracy per round is the same and the difference is
time: seconds per round, and seconds until the test accuracy first reaches the target.

Runners: the multi-process runner on emulated links (kernel-shaped ``htb`` where the machine
allows, else ``paced``; measured wall seconds, the round's re-plan and re-split included), and
the in-process runner (``priced``: measured compute, transfers priced on a simulated clock).

    python benchmarks/adaptive.py              # both runners, 20 rounds
    python benchmarks/adaptive.py --quick      # in-process only, 12 rounds
    splitopt bench adaptive

From the demo (one line): ``from splitopt.benchmarks.adaptive import demo_adaptive;
demo_adaptive()`` (multi-process on emulated links, 12 rounds, ~1 minute; ``emulated=False``:
in-process, ~15 s) prints the table and returns its rows.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, register

FAST_BPS, SLOW_BPS = 160e6, 16e6  #: every link at the whole band; dev1 and dev2 drop 10x
DROPPED = ("dev1", "dev2")


def fleet_job(rounds: int, *, optimizer: str = "sgd") -> Any:
    """The digits job, planned exactly at t = 0 for the trace's first rates."""
    from splitopt.formulations.sfl import SFL

    from splitopt.execute.examples import digits_graph
    from splitopt.execute.job import Job, RunConfig
    from splitopt.planner import Planner
    from splitopt.scenario import Scenario
    from splitopt.system import Channel, Device, Server, Training

    band = 20e6
    devs = tuple(Device(name=f"dev{i}", flops=1e10, spectral_eff_up=FAST_BPS / band,
                        spectral_eff_dn=FAST_BPS / band) for i in range(4))
    sc = Scenario(digits_graph(), devs, Server(flops=1e11, serving="dedicated"),
                  Channel(bandwidth_up_hz=band, bandwidth_dn_hz=band),
                  Training(batch_size=64, local_iters=20))
    plan = Planner.for_formulation(SFL(), sc).solve().plan
    assert plan is not None  # the fleet always has a feasible plan
    return Job(plan, sc, "digits_cnn", RunConfig(mode="sflv1", rounds=rounds, lr=0.01,
                                                 optimizer=optimizer))


def fleet_trace(t_drop: float, t_back: float) -> Any:
    """dev1 and dev2 drop from 160 to 16 Mbit/s at ``t_drop`` and recover at ``t_back``."""
    from splitopt.traces import FleetTrace, steps

    return FleetTrace.of([steps(d, [0.0, t_drop, t_back], [FAST_BPS, SLOW_BPS, FAST_BPS])
                          for d in DROPPED])


def run_pair(runner: str, rounds: int, t_drop: float, t_back: float,
             target: float) -> list[dict[str, Any]]:
    """The static and the adaptive run on one runner: one row each."""
    import torch

    from splitopt.execute.launch import launch
    from splitopt.execute.runner import train

    torch.set_num_threads(1)
    job, trace = fleet_job(rounds), fleet_trace(t_drop, t_back)
    rows = []
    for adaptive in (False, True):
        if runner == "in-process":
            res = train(job, trace=trace, adaptive=adaptive)
        else:
            res = launch(job, trace=trace, adaptive=adaptive, links="auto")
        lat = [r.latency_s for r in res.history]
        acc = [r.test_accuracy for r in res.history]
        starts = [sum(lat[:i]) for i in range(len(lat))]
        low = [x for x, t in zip(lat, starts) if t_drop <= t < t_back]  # rounds on dropped links
        hit = next((i for i, a in enumerate(acc) if a >= target), None)
        rows.append({"runner": runner, "links": res.links,
                     "plan": "adaptive" if adaptive else "static",
                     "s_per_round": sum(lat) / len(lat), "total_s": sum(lat),
                     "s_per_round_dropped": sum(low) / len(low) if low else None,
                     "rounds_to_target": None if hit is None else hit + 1,
                     "s_to_target": None if hit is None else sum(lat[:hit + 1]),
                     "final_accuracy": acc[-1], "replans": len(res.replans),
                     "moved_cuts": sum(r["old_cut"] != r["new_cut"] for r in res.replans),
                     "replan_ms_max": max((r["replan_ms"] for r in res.replans), default=0.0),
                     "target": target})
    static, adapt = rows
    for k in ("s_per_round", "s_per_round_dropped", "s_to_target"):
        ok = static[k] and adapt[k] is not None
        adapt[f"ratio_{k}"] = adapt[k] / static[k] if ok else None
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table (ratio adaptive / static on the adaptive rows)."""
    def f(v: Any, fmt: str = "{:.3f}") -> str:
        return "-" if v is None else fmt.format(v)

    out = ["| runner | links | plan | s / round | s / round, links dropped | s to target | "
           "rounds to target | final acc. | re-plans (cuts moved) | ratio s / round | "
           "ratio dropped | ratio s to target |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['runner']} | {r['links']} | {r['plan']} | {f(r['s_per_round'])} | "
                   f"{f(r['s_per_round_dropped'])} | {f(r['s_to_target'])} | "
                   f"{f(r['rounds_to_target'], '{}')} | {f(r['final_accuracy'])} | "
                   f"{r['replans']} ({r['moved_cuts']}) | {f(r.get('ratio_s_per_round'))} | "
                   f"{f(r.get('ratio_s_per_round_dropped'))} | "
                   f"{f(r.get('ratio_s_to_target'))} |")
    return "\n".join(out)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Both runners (quick: in-process only, fewer rounds); prints and returns the rows."""
    rounds, target = (12, 0.85) if quick else (20, 0.9)
    rows = run_pair("in-process", rounds, 1.0, 6.0, target)
    if not quick:
        rows += run_pair("multi-process", rounds, 1.0, 6.0, target)
    print(table(rows))
    return rows


def demo_adaptive(emulated: bool = True, rounds: int = 12,
                  target: float = 0.9) -> list[dict[str, Any]]:
    """For the demo: adaptive vs static, printed as a table; returns the rows.

    ``emulated``: the multi-process runner on kernel-shaped links (``htb``; ``paced`` where the
    machine cannot shape, recorded in the ``links`` column), else the in-process runner.
    """
    rows = run_pair("multi-process" if emulated else "in-process", rounds, 1.0, 6.0, target)
    print(table(rows))
    return rows


def _case(runner: str, rounds: int, target: float) -> dict[str, Any]:
    rows = run_pair(runner, rounds, 1.0, 6.0, target)
    adapt = rows[1]
    return {"status": "ok", "objective": adapt["ratio_s_per_round"], "rows": rows,
            "links": adapt["links"]}


def _cases(quick: bool) -> list[Case]:
    cases = [Case("digits-4dev-steps", "in-process", partial(_case, "in-process", 12, 0.85))]
    if not quick:
        cases.append(Case("digits-4dev-steps", "multi-process",
                          partial(_case, "multi-process", 20, 0.9)))
    return cases


SPEC = register(BenchSpec(
    "adaptive", "adaptive re-planning vs the static plan on a changing link trace (digits, "
    "4 devices, 2 drop 10x): objective = seconds per round, adaptive / static",
    _cases, extra={"columns": ["links"]}))


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
