"""``splitopt demo``: the main job on the built-in default scenario."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(out: Path = typer.Option(Path("out/demo"), "--out", help="where to write the report"),
         rounds: int = typer.Option(5, "--rounds", min=1, help="training rounds of the plan"),
         ) -> None:
    """Profile a zoo model, solve the exact plan and baselines, train it briefly, write a report."""
    from splitopt.demo import run_demo

    run_demo(out, rounds=rounds, echo=typer.echo)


def register(app: typer.Typer) -> None:
    """Add the command of this module to the app."""
    app.command("demo")(demo)
