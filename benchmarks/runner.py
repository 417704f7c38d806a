"""Run benchmark families and write machine-readable results.

Results go to ``OUT/results.jsonl`` (one JSON row per instance x method, appended as each finishes,
so an interrupted run resumes where it stopped) and ``OUT/machine.json`` (machine and library
versions). Cases run serially, on local processes (joblib/loky), or on a Dask or Ray cluster.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, get

from splitopt.errors import InputError
from splitopt.io import atomic_write

ROW_FIELDS = ("family", "instance", "method", "size", "objective", "bound", "gap", "status",
              "build_s", "solve_s", "wall_s", "peak_mb", "error")
LIBRARIES = ("splitopt", "numpy", "scipy", "highspy", "ortools", "cvxpy", "pyomo", "torch",
             "networkx", "pyscipopt", "joblib")


def machine_info() -> dict[str, Any]:
    """Machine, Python and library versions, for the report's header."""
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "libraries": versions}


def run_case(family: str, case: Case) -> dict[str, Any]:
    """Run one case, timing it and recording the peak resident memory of the process.

    ``peak_mb`` is the process's peak RSS after the case (``getrusage``): an upper bound on the
    case's own peak, since the process may have run earlier cases. tracemalloc would be exact for
    Python allocations but slows numpy-heavy code 2-10x, so it is not used.
    """
    row: dict[str, Any] = {"family": family, "instance": case.instance, "method": case.method,
                           "size": case.size}
    t0 = time.perf_counter()
    try:
        row.update(case.run())
    except Exception as err:  # a failing method is a result to report, not a crash of the suite
        row.update(status="error", error=f"{type(err).__name__}: {err}"[:500])
    row["wall_s"] = time.perf_counter() - t0
    row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _done_keys(path: Path) -> set[tuple[str, str]]:
    """Keys of the rows already written; a row cut off by an interruption is dropped (re-run).

    The file is rewritten (atomically) with the good rows only, so that appended rows never join
    a cut-off line; dropped lines are reported by number on standard error.
    """
    if not path.exists():
        return set()
    skipped: list[str] = []
    rows = _read_rows(path, skipped)
    warn_skipped(skipped)
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
    return {(r["family"], f"{r['instance']}/{r['method']}") for r in rows}


def _executor(workers: int, dask: str | None, ray: str | None):
    """A function over (family, case) pairs that yields rows as they finish."""
    if ray:
        import ray as ray_mod

        if not ray_mod.is_initialized():  # "local": start a Ray on this machine with `workers` CPUs
            ray_mod.init(**({"num_cpus": workers, "include_dashboard": False} if ray == "local"
                            else {"address": ray}))
        remote = ray_mod.remote(run_case)

        def run_ray(items):
            refs = [remote.remote(f, c) for f, c in items]
            while refs:
                done, refs = ray_mod.wait(refs)
                yield from ray_mod.get(done)
        return run_ray
    if dask:
        from dask.distributed import Client, as_completed

        client = Client(dask)

        def run_dask(items):
            futs = [client.submit(run_case, f, c, pure=False) for f, c in items]
            for fut in as_completed(futs):
                yield fut.result()
        return run_dask
    if workers > 1:
        from joblib import Parallel, delayed

        def run_joblib(items):
            par = Parallel(n_jobs=workers, return_as="generator_unordered")
            yield from par(delayed(run_case)(f, c) for f, c in items)
        return run_joblib
    return lambda items: (run_case(f, c) for f, c in items)


def run(families: Iterable[str] | None, out: str | Path, *, quick: bool = False, workers: int = 1,
        dask: str | None = None, ray: str | None = None, progress: bool = True) -> Path:
    """Run the named families (all by default) into ``out``; return the results file.

    Rows already in ``out/results.jsonl`` are kept and their cases skipped (resume). ``dask`` or
    ``ray`` is the address of a running cluster of that engine (``ray="local"`` starts a local
    Ray with ``workers`` CPUs); otherwise ``workers`` local processes (joblib) run the cases.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError("--workers", workers, "an integer >= 1")
    specs: list[BenchSpec] = get(list(families or []))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out", str(out), "a results folder (this is a file)",
                         "Name a folder; it is created if absent.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError("--out", str(out), "a folder that can be created", str(err)) from None
    results = out / "results.jsonl"
    if results.exists() and not results.is_file():
        raise InputError("--out", str(results), "results.jsonl as a file (it is a folder)")
    try:  # an unwritable folder is found here, before any case runs
        atomic_write(out / "machine.json", json.dumps({**machine_info(), "quick": quick},
                                                      indent=1))
        atomic_write(out / "families.json", json.dumps(
            {s.name: {"description": s.description, "baseline": s.baseline,
                      "lower_is_better": s.lower_is_better, **s.extra} for s in specs}, indent=1))
        done = _done_keys(results)
    except OSError as err:
        raise InputError("--out", str(out), "a results folder splitopt can write into",
                         f"{type(err).__name__}: {err}") from None
    todo = [(s.name, c) for s in specs for c in s.cases(quick) if (s.name, c.key) not in done]
    mapper = _executor(workers, dask, ray)
    from rich.progress import Progress

    with Progress(disable=not progress) as bar, results.open("a") as fh:
        task = bar.add_task("benchmarks", total=len(todo))
        for row in mapper(todo):
            # one appended line per row, flushed to disk: a crash loses at most the line being
            # written, which the next run drops (_done_keys) and re-runs
            fh.write(json.dumps(row, default=float) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(task, advance=1, description=f"{row['family']}: {row['instance']}")
    return results


def load_rows(out: str | Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """All good rows of a results directory; each bad line is described in ``skipped``."""
    path = Path(out) / "results.jsonl"
    if not path.is_file():
        raise InputError("RESULTS_DIR", str(out), "a directory with results.jsonl from "
                         "`splitopt bench --out DIR`")
    return _read_rows(path, skipped)


_TEXT_FIELDS = ("family", "instance", "method")
_NUMBER_FIELDS = ("size", "objective", "bound", "gap", "build_s", "solve_s", "wall_s", "peak_mb",
                  "objective_error")


def row_problem(row: Any) -> str | None:
    """Why ``row`` is not a results row the report can use, or None if it is one."""
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    for key in _TEXT_FIELDS:
        if not isinstance(row.get(key), str):
            return f"{key!r} is {row.get(key)!r}, not a string"
    for key in _NUMBER_FIELDS:
        v = row.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{key!r} is {v!r}, not a number or null"
    for key in ("status", "error"):
        if row.get(key) is not None and not isinstance(row[key], str):
            return f"{key!r} is {row[key]!r}, not a string or null"
    trace = row.get("trace")
    if trace is not None and not (isinstance(trace, list) and all(
            isinstance(p, list) and len(p) >= 3 and all(_is_number(x) for x in p[:3])
            for p in trace)):
        return "'trace' is not a list of [seconds, incumbent, bound] triples"
    phases = row.get("phases")
    if phases is not None and not (isinstance(phases, list) and all(
            isinstance(p, dict) and isinstance(p.get("phase"), str) for p in phases)):
        return "'phases' is not a list of objects with a 'phase' name"
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _read_rows(path: Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The good rows of ``path``; a line cut off by an interruption or not a row is skipped."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError("results file", str(path), "a readable file", str(err)) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            why: str | None = "not valid JSON (cut off by an interruption?)"
        else:
            why = row_problem(row)
        if why is None:
            rows.append(row)
        elif skipped is not None:
            skipped.append(f"{path.name} line {number}: skipped, {why}")
    return rows


def warn_skipped(lines: list[str]) -> None:
    import sys

    for line in lines[:20]:
        print(line, file=sys.stderr)
    if len(lines) > 20:
        print(f"... and {len(lines) - 20} more skipped lines", file=sys.stderr)
