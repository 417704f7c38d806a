"""``splitopt info`` and ``splitopt cost``: look at a graph, price a plan."""

from __future__ import annotations

from pathlib import Path

import typer

from splitopt.cli._common import emit_json, table
from splitopt.graph import LayerGraph
from splitopt.plan import Plan, evaluate
from splitopt.scenario import Scenario

EXIT_INFEASIBLE = 3
"""Exit status of ``splitopt cost`` for a plan that breaks a device's memory (2 is bad input)."""


def info(graph: Path = typer.Argument(..., help="graph JSON file"),
         json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Summarise a layer graph: size, FLOPs, bytes, blocks, measured device classes."""
    g = LayerGraph.load(graph)
    doc = {"name": g.name, "nodes": len(g), "edges": len(g.edges), "inputs": list(g.inputs),
           "output": g.output, "is_chain": g.is_chain,
           "fwd_flops_per_sample": float(g.fwd_flops.sum()),
           "train_flops_per_sample": float(g.train_flops.sum()),
           "param_bytes": float(g.param_bytes.sum()), "blocks": len(g.blocks()),
           "measured_classes": sorted(g.device_classes()), "meta": g.meta}
    if json_out:
        emit_json(doc)
        return
    table(f"graph {g.name or graph}", ["field", "value"],
          [(k, v) for k, v in doc.items() if k != "meta"])


def cost(scenario: Path = typer.Argument(..., help="scenario YAML/JSON"),
         plan: Path = typer.Argument(..., help="plan JSON"),
         json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Price a plan under the reference cost model, per device and per phase.

    Exits with status 3 (and says which devices) when the plan needs more memory than a device
    has: the costs are still printed, flagged.
    """
    sc = Scenario.load(scenario)
    costs = evaluate(sc, Plan.load(plan))
    over = {k: (p.memory_bytes, sc.device(k).memory_bytes) for k, p in costs.per_device.items()
            if p.memory_bytes > sc.device(k).memory_bytes}
    if json_out:
        emit_json({**costs.to_dict(), "feasible": not over,
                   "over_memory": {k: {"needs_bytes": n, "has_bytes": m}
                                   for k, (n, m) in over.items()}})
    else:
        cols = ["device", "device_s", "server_s", "up_s", "down_s", "agg_s", "round_s",
                "mem_MB", "energy_J", "fits"]
        rows = [(k, p.device_compute_s, p.server_compute_s, p.uplink_s, p.downlink_s,
                 p.aggregation_s, p.round_s, p.memory_bytes / 1e6, p.energy_j,
                 "OVER MEMORY" if k in over else "yes") for k, p in costs.per_device.items()]
        table("predicted costs per round", cols, rows)
        print(f"round latency {costs.round_latency_s:.6g} s x {costs.rounds:g} rounds = "
              f"{costs.total_delay_s:.6g} s")
    if over:  # an infeasible plan is priced, but never passed off as a usable one
        shown = ", ".join(f"{k} needs {n:.6g} B, has {m:.6g} B" for k, (n, m) in list(
            over.items())[:5]) + (f" (and {len(over) - 5} more)" if len(over) > 5 else "")
        typer.secho(f"infeasible: the plan exceeds the memory of {len(over)} device(s): {shown}",
                    err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_INFEASIBLE)


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the app."""
    app.command("info")(info)
    app.command("cost")(cost)
