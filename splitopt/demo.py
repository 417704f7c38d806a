"""The main job (``splitopt demo``): from a torch model to an exact plan, trained for real.

Steps, each printed as it runs and written to ``OUT/report.md``:

1. profile a zoo model into a LayerGraph (the built-in default scenario names it);
2. the fleet: heterogeneous catalog devices on one shared wireless band and one shared server
   (``serving: shared``: the server's compute is divided in shares, as the executor runs it);
3. solve the exact plan (cuts, bandwidth and server shares, min-max round latency) and the
   baselines: the alternating optimisation the SFL paper's abstract names, and naive plans;
4. print the comparison table (round latency, total delay, % reduction by the exact plan);
5. train the exact plan for a few rounds with the executor on scikit-learn's digits, and put the
   measured phase times beside the predicted ones;
6. links that change mid-training: a fleet whose links drop 10x and recover, trained with the
   plan re-solved between rounds (``splitopt.Planner``) against the static plan, on emulated links
   (kernel-shaped ``htb`` where the machine allows, else paced; ``adaptive="priced"``: in process);
7. write the plan (plan.json), a plan picture (plan.png) and the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitopt.baselines import NAIVE
from splitopt.errors import InputError
from splitopt.io import atomic_write
from splitopt.plan import Plan
from splitopt.scenario import Scenario, default_scenario_path

PHASES = ("device_compute_s", "uplink_s", "downlink_s", "server_compute_s", "aggregation_s")
EXACT = "exact (cuts + shares)"
ALTERNATING = "alternating (SFL abstract's method, our reading)"


@dataclass
class DemoResult:
    """What the demo produced (paths and the numbers it printed)."""

    out: Path
    scenario: Scenario
    plans: dict[str, Plan] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    scenario_big: Scenario | None = None
    plans_big: dict[str, Plan] = field(default_factory=dict)
    adaptive: list[dict[str, Any]] = field(default_factory=list)


ADAPTIVE = ("emulated", "priced", "off")
LINKS = ("emulated", "priced")


def adaptive_rows(how: str, rounds: int = 12) -> list[dict[str, Any]]:
    """Adaptive vs static on a changing link trace (benchmarks/adaptive.py): one row each.

    ``emulated``: the multi-process runner on emulated links; ``priced``: the in-process runner.
    """
    from splitopt.benchmarks.adaptive import run_pair

    return run_pair("multi-process" if how == "emulated" else "in-process", rounds, 1.0, 6.0, 0.9)


def solve_plans(scenario: Scenario) -> dict[str, Plan]:
    """Solve the exact plan, the alternating baseline and the naive plans of one scenario.

    All are priced by the reference model on the same scenario (split-federated rounds: the SFL
    formulation, arXiv 2310.15584, with the scenario's server serving); the exact plan comes
    first. The alternating baseline is the method the SFL paper's abstract names, as we read it.
    """
    from splitopt.formulations.sfl import SFL

    sfl = SFL()
    plans = {EXACT: sfl.solve(scenario), ALTERNATING: sfl.baseline(scenario)}
    for name, fn in NAIVE.items():
        plans[name] = fn(scenario, None)
    return plans


def comparison_rows(plans: dict[str, Plan]) -> list[tuple[str, float, float, str]]:
    """(method, round latency, total delay, % above the exact plan) for each plan."""
    best = next(iter(plans.values())).predicted
    assert best is not None
    rows = []
    for name, plan in plans.items():
        pred = plan.predicted
        assert pred is not None
        worse = 100.0 * (pred.round_latency_s / best.round_latency_s - 1.0)
        shown = f"{worse if abs(worse) > 0.05 else 0.0:+.1f}%"  # no "-0.0%" for float noise
        rows.append((name, pred.round_latency_s, pred.total_delay_s,
                     "-" if plan is next(iter(plans.values())) else shown))
    return rows


def plan_picture(scenario: Scenario, plan: Plan, path: Path) -> None:
    """Per device: predicted round time by phase, and the cut as a fraction of the model's FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = plan.predicted
    assert pred is not None
    names = [d.device for d in plan.devices]
    phases = PHASES
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 2))
    left = [0.0] * len(names)
    for ph in phases:
        vals = [getattr(pred.per_device[n], ph) for n in names]
        ax1.barh(names, vals, left=left, label=ph.removesuffix("_s").replace("_", " "))
        left = [a + b for a, b in zip(left, vals)]
    ax1.set_xlabel("predicted seconds per round")
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    ax1.set_title("round time by phase")
    g = scenario.graph
    total = float(g.train_flops.sum())
    on_dev = [float(g.train_flops[g.mask(d.device_side)].sum()) / total for d in plan.devices]
    shares = [d.bandwidth_share for d in plan.devices]
    rows = range(len(names))
    ax2.barh([r + 0.2 for r in rows], on_dev, height=0.4, color="tab:blue",
             label="share of training FLOPs on the device (the cut)")
    ax2.barh([r - 0.2 for r in rows], shares, height=0.4, color="tab:orange",
             label="bandwidth share")
    ax2.set_yticks(list(rows), names)
    ax2.set_xlim(0, 1)
    ax2.set_title("cut and bandwidth per device")
    ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(scenario: Scenario, plan: Plan, rounds: int, links: str = "emulated") -> dict[str, Any]:
    """Train the plan on digits (SFL-V1: parallel devices, models averaged).

    ``links="emulated"``: the multi-process runner on kernel-shaped links where the machine
    allows, else paced (``launch(job, links="auto")``), with a calibrated prediction beside the
    plan's: compute by the executor's part times measured here, links by a calibration exchange
    on the same kind of links (:mod:`splitopt.execute.linkcal`);
    ``"priced"``: the in-process runner, transfers priced by the cost model.
    """
    from splitopt.execute.job import Job, RunConfig

    if links not in LINKS:
        raise InputError("links", links, f"one of {list(LINKS)}")
    job = Job(plan, scenario, "digits_cnn", RunConfig(mode="sflv1", rounds=rounds, seed=0))
    pred = plan.predicted
    assert pred is not None
    reference = dict(pred.per_device)
    calibrated = reference
    if links == "priced":
        from splitopt.execute.runner import train as run_training

        result = run_training(job)
    else:
        import torch

        from splitopt.execute.launch import launch
        from splitopt.execute.linkcal import calibrated as calibrate_links
        from splitopt.execute.linkcal import exchange
        from splitopt.execute.timing import TRANSFER_GAP_S, calibrate, predict

        result = launch(job, links="auto")
        # compute: the executor's part times measured here, on one thread as in the run's
        # processes; links: a calibration exchange
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            here, _ = predict(job, calibrate(job, gap_s=TRANSFER_GAP_S), server_work=True)
        finally:
            torch.set_num_threads(threads)
        fits = exchange(job, result.links, here, aggregate=True)
        calibrated = calibrate_links(here, fits, job.iters(), aggregate=True)
    last = result.history[-1]
    kept = result.history[1:] or result.history  # round 0 is a warm-up when there are others
    measured = {p: sum(getattr(r.devices[d], p) for r in kept for d in r.devices) / len(kept)
                for p in PHASES}

    def summed(phases: dict[str, Any]) -> dict[str, float]:
        return {p: sum(getattr(ph, p) for ph in phases.values()) for p in PHASES}

    ref_sum, cal_sum = summed(reference), summed(calibrated)
    return {"rounds": rounds, "links": result.links,
            "initial_test_accuracy": result.initial_test[1],
            "final_test_accuracy": last.test_accuracy, "final_train_loss": last.train_loss,
            "per_round": [(r.round, r.train_loss, r.test_accuracy) for r in result.history],
            "phases_per_round": {p: (ref_sum[p], measured[p]) for p in PHASES},
            "calibrated_per_round": cal_sum}


def plan_bigger_model(scenario: Scenario, model: str) -> tuple[Scenario, dict[str, Plan]]:
    """The same fleet and channel with a zoo model whose best cuts lie inside the network."""
    from splitopt.profiler import profile_model

    big = scenario.replace(graph=profile_model(model))
    return big, solve_plans(big)


def run_demo(out: str | Path = "out/demo", *, rounds: int = 15, echo: Any = print,
             quiet: bool = False, adaptive: str = "emulated",
             links: str = "emulated") -> DemoResult:
    """Run every step; return what was produced (``quiet``: print no tables).

    ``adaptive`` runs the changing-links section on ``emulated`` links (about a minute), in
    process with ``priced`` links (about 15 s), or not at all (``off``). ``links``: the exact
    plan's training on ``emulated`` links (multi-process) or ``priced`` (in process).
    """
    from splitopt.console import table as print_table

    # both choices are checked before minutes of profiling, solving and training
    if adaptive not in ADAPTIVE:
        raise InputError("adaptive", adaptive, f"one of {list(ADAPTIVE)}")
    if links not in LINKS:
        raise InputError("links", links, f"one of {list(LINKS)}")

    def table(*args: Any) -> None:
        if not quiet:
            print_table(*args)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sc_path = default_scenario_path()
    scenario = Scenario.load(sc_path)
    res = DemoResult(out, scenario)
    res.seconds["profile"] = time.perf_counter() - t0
    g = scenario.graph
    echo(f"model {g.name or 'digits_cnn'}: {len(g)} nodes, {g.train_flops.sum():.3g} training "
         f"FLOP/sample, {g.param_bytes.sum() / 1e3:.1f} kB parameters "
         f"(profiled in {res.seconds['profile']:.1f} s)")
    table("fleet", ["device", "GFLOP/s", "uplink bit/s/Hz", "memory GB"],
          [(d.name, d.flops / 1e9, d.spectral_eff_up, d.memory_bytes / 1e9)
           for d in scenario.devices])
    echo(f"server {scenario.server.name}: {scenario.server.flops / 1e9:.3g} GFLOP/s, "
         f"serving: {scenario.server.serving} (its compute divided between the devices)")
    t1 = time.perf_counter()
    res.plans = solve_plans(scenario)
    res.seconds["solve"] = time.perf_counter() - t1
    rows = comparison_rows(res.plans)
    table("plans (reference cost model)", ["method", "round latency s", "total delay s",
                                           "vs exact"], rows)
    echo(f"exact vs alternating: the alternating plan is {rows[1][3]} slower per round")
    exact = next(iter(res.plans.values()))
    plan_path = out / "plan.json"
    exact.save(plan_path, scenario)
    plan_picture(scenario, exact, out / "plan.png")
    t2 = time.perf_counter()
    res.training = train(scenario, exact, rounds, links)
    res.seconds["train"] = time.perf_counter() - t2
    tr = res.training
    echo(f"trained the exact plan {rounds} rounds on digits (SFL-V1, {tr['links']} links): test "
         f"accuracy {tr['initial_test_accuracy']:.3f} -> {tr['final_test_accuracy']:.3f}")
    table("phase seconds per round, summed over devices", ["phase", "predicted (reference)",
                                                           "predicted (calibrated)", "measured"],
          [(p.removesuffix("_s"), a, tr["calibrated_per_round"][p], b)
           for p, (a, b) in tr["phases_per_round"].items()])
    t3 = time.perf_counter()
    big, big_plans = plan_bigger_model(scenario, "resnet18")
    res.seconds["resnet18"] = time.perf_counter() - t3
    big_rows = comparison_rows(big_plans)
    table("the same fleet planning resnet18 (planning only)", ["method", "round latency s",
                                                               "total delay s", "vs exact"],
          big_rows)
    cuts = {d.device: big.graph.boundary(d.device_side)
            for d in next(iter(big_plans.values())).devices}
    echo("exact resnet18 cuts (tensors sent up): "
         + "; ".join(f"{k}: {v}" for k, v in cuts.items()))
    res.scenario_big, res.plans_big = big, big_plans
    plan_picture(big, next(iter(big_plans.values())), out / "plan_resnet18.png")
    if adaptive != "off":
        t4 = time.perf_counter()
        res.adaptive = adaptive_rows(adaptive)
        res.seconds["adaptive"] = time.perf_counter() - t4
        static, adapt = res.adaptive
        table(f"links that change: 2 of 4 devices drop 10x at 1 s, back at 6 s ({adapt['links']} "
              "links)", ["plan", "s / round", "s / round, links down", "s to 90%", "re-plans"],
              [(r["plan"], r["s_per_round"], r["s_per_round_dropped"], r["s_to_target"],
                r["replans"]) for r in res.adaptive])
        echo(f"adaptive / static: {adapt['ratio_s_per_round']:.3f} per round, "
             f"{_ratio(adapt['ratio_s_per_round_dropped'])} while links are down, "
             f"{_ratio(adapt['ratio_s_to_target'])} to 90% test accuracy")
    _write_report(res, rows, big_rows)
    echo(f"wrote {out / 'report.md'}, {plan_path}, {out / 'plan.png'}")
    return res


def _write_report(res: DemoResult, rows: list[tuple[str, float, float, str]],
                  big_rows: list[tuple[str, float, float, str]]) -> None:
    lines = ["# splitopt demo", "", "Default scenario: "
             f"{res.scenario.n_devices} devices, model with {len(res.scenario.graph)} nodes.", "",
             "| method | round latency s | total delay s | vs exact |", "|---|---|---|---|"]
    lines += [f"| {m} | {a:.4g} | {b:.4g} | {c} |" for m, a, b, c in rows]
    lines += ["", "![plan](plan.png)", "",
              f"The server ({res.scenario.server.flops / 1e9:.3g} GFLOP/s) is shared "
              f"(serving: {res.scenario.server.serving}): its compute is divided between the "
              "devices in shares, so alternating between cuts and shares can stop short of the "
              "optimum, which the exact solve reaches (docs/formulations.md). On resnet18 (same "
              "fleet, planning only):", "",
              "| method | round latency s | total delay s | vs exact |", "|---|---|---|---|"]
    lines += [f"| {m} | {a:.4g} | {b:.4g} | {c} |" for m, a, b, c in big_rows]
    lines += ["", "![resnet18 plan](plan_resnet18.png)", ""]
    if res.training:
        tr = res.training
        where = ("in process, transfers priced at the plan's rates" if tr["links"] == "priced"
                 else f"multi-process, transfers measured on {tr['links']} links")
        lines += [f"## Training the exact plan (SFL-V1, digits, {where})", "",
                  f"Test accuracy {tr['initial_test_accuracy']:.3f} before, "
                  f"{tr['final_test_accuracy']:.3f} after {tr['rounds']} rounds.", "",
                  "| round | train loss | test accuracy |", "|---|---|---|"]
        lines += [f"| {r} | {loss:.4f} | {acc:.3f} |" for r, loss, acc in tr["per_round"]]
        lines += ["", "Phase seconds per round summed over devices. Reference: the plan's cost "
                  "model with catalog speeds; calibrated: compute by the executor's part times "
                  "measured here, links by alpha + 8 bytes / rate with alpha from a calibration "
                  "exchange (docs/executors.md); measured: compute timed on this machine, "
                  f"{where.split(', ')[1]}.", "",
                  "| phase | reference | calibrated | measured |", "|---|---|---|---|"]
        lines += [f"| {p} | {a:.4g} | {tr['calibrated_per_round'][p]:.4g} | {b:.4g} |"
                  for p, (a, b) in tr["phases_per_round"].items()]
        lines.append("")
    if res.adaptive:
        from splitopt.benchmarks.adaptive import table as adaptive_table

        lines += ["## Links that change mid-training", "",
                  "Four digits devices (SFL-V1); two of them drop from 160 to 16 Mbit/s at 1 s "
                  "and recover at 6 s. The adaptive run re-solves the exact plan between rounds "
                  "(splitopt.Planner) and moves layers with their optimiser state; the static run "
                  f"keeps its plan. Links: {res.adaptive[0]['links']} (measured seconds on "
                  "kernel-shaped links where the machine allows; see docs/executors.md).", "",
                  adaptive_table(res.adaptive), ""]
    lines += [f"Times: {', '.join(f'{k} {v:.1f} s' for k, v in res.seconds.items())}.", ""]
    atomic_write(res.out / "report.md", "\n".join(lines))


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
