"""``splitopt bench`` and ``splitopt report``: run the benchmark suite, build the report."""

from __future__ import annotations

from pathlib import Path

import typer


def bench(families: list[str] = typer.Argument(None, help="families to run (default: all)"),
          quick: bool = typer.Option(False, "--quick", help="the small sweep (minutes)"),
          out: Path = typer.Option(Path("results"), "--out", help="results directory"),
          workers: int = typer.Option(1, "--workers", help="local worker processes"),
          dask: str = typer.Option(None, "--dask", help="address of a running Dask scheduler"),
          ray: str = typer.Option(None, "--ray", help="address of a running Ray cluster, "
                                 "or 'local' to start one with --workers CPUs"),
          report: bool = typer.Option(True, "--report/--no-report", help="build the report"),
          ) -> None:
    """Run benchmark families; rows already in OUT are kept (an interrupted run resumes)."""
    from splitopt.benchmarks.runner import run

    path = run(families, out, quick=quick, workers=workers, dask=dask, ray=ray)
    typer.echo(f"results: {path}")
    if report:
        from splitopt.benchmarks.report import build_report

        typer.echo(f"report: {build_report(out)}")


def report(results_dir: Path = typer.Argument(..., help="directory written by splitopt bench"),
           ) -> None:
    """Build RESULTS_DIR/report.md (+ PNG plots and report.html) from benchmark results."""
    from splitopt.benchmarks.report import build_report

    typer.echo(f"report: {build_report(results_dir)}")


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the app."""
    app.command("bench")(bench)
    app.command("report")(report)
