"""``splitopt profile MODEL``: a zoo model or ``package.module:factory`` -> its layer graph."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from splitopt import limits
from splitopt.cli._common import check_out_path, emit_json, table


def summary(graph: Any, seconds: float, out: Path | None) -> dict[str, Any]:
    """The numbers ``splitopt profile`` reports about a profiled graph."""
    timed = {c: sum(1 for n in graph.nodes if c in n.times) for c in sorted(graph.device_classes())}
    return {
        "model": graph.name, "nodes": len(graph), "edges": len(graph.edges),
        "inputs": list(graph.inputs), "capture": graph.meta.get("capture"),
        "capture_reason": graph.meta.get("capture_reason") or "",
        "leaves_forced": graph.meta.get("leaves_forced", []),
        "fwd_gflops_per_sample": float(graph.fwd_flops.sum()) / 1e9,
        "train_gflops_per_sample": float(graph.train_flops.sum()) / 1e9,
        "param_bytes": float(graph.param_bytes.sum()),
        "input_bytes_per_sample": float(sum(graph.node(i).out_bytes for i in graph.inputs)),
        "blocks": len(graph.blocks()), "timed_nodes": timed,
        "unmatched_times": graph.meta.get("unmatched_times", {}),
        "seconds": seconds, "out": str(out) if out else None,
    }


def profile_cmd(
    model: str = typer.Argument(..., help="zoo name (splitopt.zoo.names()) or "
                                          "package.module:factory"),
    out: Path | None = typer.Option(None, "--out", help="write the graph JSON here"),
    times: str | None = typer.Option(None, "--times", help="attach measured per-layer times of "
                                                            "this device class (h100)"),
    measure: bool = typer.Option(False, "--measure", help="time every node on this machine"),
    capture: str = typer.Option("auto", "--capture", help="auto, export or fx"),
    batch_size: int = typer.Option(1, "--batch-size", help="batch of the example inputs"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
    force: bool = typer.Option(False, "--force", help="overwrite --out"),
) -> None:
    """Profile a model into a layer graph: per-sample FLOPs, bytes, parameters, optional times."""
    from splitopt.profiler import profile_model

    check_out_path(out, force)
    limits.check("--batch-size", batch_size, limits.BATCH)
    t0 = time.perf_counter()
    graph = profile_model(model, measure=measure, capture=capture, times=times,
                          batch_size=batch_size)
    if out is not None:
        graph.save(out)
    doc = summary(graph, time.perf_counter() - t0, out)
    if json_out:
        emit_json(doc)
        return
    rows = [(k, v) for k, v in doc.items() if v not in ("", [], {}, None)]
    table(f"profile of {model}", ["field", "value"], rows)


def register(app: typer.Typer) -> None:
    """Add ``profile`` to the app."""
    app.command("profile")(profile_cmd)
