"""``splitopt demo``: the main job on the built-in default scenario."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(out: Path = typer.Option(Path("out/demo"), "--out", help="where to write the report"),
         rounds: int = typer.Option(15, "--rounds", min=1, help="training rounds of the plan"),
         json_out: bool = typer.Option(False, "--json", help="print a JSON summary only"),
         adaptive: str = typer.Option("emulated", "--adaptive",
                                      help="the changing-links section: emulated (multi-process "
                                      "on shaped links, ~1 min), priced (in process, ~15 s) "
                                      "or off"),
         links: str = typer.Option("emulated", "--links",
                                   help="the exact plan's training: emulated (multi-process on "
                                   "shaped links where possible, else paced) or priced (in "
                                   "process)"),
         ) -> None:
    """Profile a zoo model, solve the exact plan and baselines, train it briefly, write a report."""
    from splitopt.cli._common import emit_json
    from splitopt.demo import run_demo

    res = run_demo(out, rounds=rounds, echo=(lambda *_: None) if json_out else typer.echo,
                   quiet=json_out, adaptive=adaptive, links=links)
    if json_out:
        emit_json({"out": str(res.out), "seconds": res.seconds, "training": res.training,
                   "plans": {k: p.predicted.to_dict() | {"status": p.status}
                             for k, p in res.plans.items() if p.predicted},
                   "resnet18_plans": {k: p.predicted.round_latency_s
                                      for k, p in res.plans_big.items() if p.predicted},
                   "adaptive": res.adaptive})


def register(app: typer.Typer) -> None:
    """Add the command of this module to the app."""
    app.command("demo")(demo)
