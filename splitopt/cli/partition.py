"""``splitopt partition``: the optimal split of one model for one device, with its baselines."""

from __future__ import annotations

from pathlib import Path

import typer

from splitopt import limits
from splitopt.cli._common import emit_json, table
from splitopt.scenario import Scenario, resolve_model

_LIST_LIMIT = 40  # longer device sides are summarised by a count


def partition_cmd(
        model: str = typer.Argument(..., help="graph JSON, zoo name or package.module:factory"),
        scenario: Path = typer.Option(..., "--scenario", "-s", help="scenario YAML/JSON"),
        device: str = typer.Option(None, "--device", "-d", help="device name (default: the first)"),
        method: str = typer.Option("maxflow", "--method", "-m",
                                   help="maxflow, blockwise, chain, milp or brute"),
        batch: int = typer.Option(None, "--batch", "-b", help="samples per iteration "
                                  "(default: the scenario's batch size)"),
        share: float = typer.Option(None, "--share", help="bandwidth share of the device "
                                    "(default: an equal share of the fleet)"),
        json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Split MODEL optimally for one device of a scenario; compare with the baselines."""
    from splitopt.partitioning import partition
    from splitopt.partitioning.baselines import baselines
    from splitopt.partitioning.problem import iteration_problem
    from splitopt.system import link_of

    if share is not None:  # checked before the model is profiled (minutes for a big one)
        limits.check("--share", share, limits.SHARE)
    if batch is not None:
        limits.check("--batch", batch, limits.BATCH)
    graph = resolve_model(model)
    sc = Scenario.load(scenario, graph=graph)
    dev = sc.device(device) if device else sc.devices[0]
    beta = 1.0 / sc.n_devices if share is None else share
    link = link_of(dev, sc.channel, beta)
    b = sc.training.batch_size if batch is None else batch
    plan = partition(graph, dev, sc.server, link, method=method, batch=b, labels=sc.training.labels)
    prob = iteration_problem(graph, dev, sc.server, link, batch=b, labels=sc.training.labels)
    rows = [(x.name, x.cost, x.reduction(plan.objective)) for x in baselines(prob)]
    if json_out:
        doc = plan.to_dict()
        doc["devices"][0]["bandwidth_share"] = beta
        doc["baselines"] = [{"name": n, "iteration_s": c, "reduction_pct": r} for n, c, r in rows]
        emit_json(doc)
        return
    _print(plan, graph, dev.name, beta, rows)


def _print(plan, graph, device: str, beta: float, rows) -> None:  # type: ignore[no-untyped-def]
    side = plan.devices[0].device_side
    names = [n for n in graph.names if n in side]
    print(f"{graph.name or 'model'} on {device} (bandwidth share {beta:.4g}), "
          f"method {plan.method}: {plan.status}")
    if len(names) <= _LIST_LIMIT:
        print(f"device side ({len(names)} of {len(graph)} nodes): {', '.join(names)}")
    else:
        print(f"device side: {len(names)} of {len(graph)} nodes")
    print(f"boundary tensors ({len(plan.meta['boundary'])}): {', '.join(plan.meta['boundary'])}")
    ph = plan.meta["phases"]
    table("predicted iteration", ["phase", "seconds"],
          [(k, ph[k]) for k in ("device_compute_s", "uplink_s", "server_compute_s",
                                "downlink_s", "iteration_s")])
    table("baselines", ["split", "iteration_s", "reduction_%"],
          [("optimal", plan.objective, 0.0), *rows])


def register(app: typer.Typer) -> None:
    """Add ``partition`` to the app."""
    app.command("partition")(partition_cmd)
