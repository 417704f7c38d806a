"""Solving one MILP split across workers by partitioning its search space.

After "Distributed solving through model splitting" (arXiv:1008.4328, constraint programming):
add constraints that partition the search space (here: column bounds, e.g. "device 0's cut lies in
cuts 0..4" or "x_17 = 0"), solve the sub-problems independently, and combine them. Because the
sub-problems' feasible sets cover the original one and are disjoint,

    optimum = min_i optimum_i,        proven bound = min_i bound_i   (an infeasible part: +inf)

so the combined answer is exact when every part is solved to optimality, and a valid bound when
some part stops early. Sub-problems run on local processes (loky, joblib's reusable executor) by
default, on a Dask cluster (``engine="dask"``, ``address`` of its scheduler; a LocalCluster when
none is given) or on Ray (``engine="ray"``, ``pip install ray``). Each worker's HiGHS uses one
thread, so ``workers`` counts cores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from splitopt.backends.results import Result
from splitopt.errors import InputError
from splitopt.parallel.milp import solve_program

ENGINES = ("processes", "dask", "ray")


@dataclass(frozen=True)
class Subproblem:
    """One part of the search space: the program with some column bounds tightened."""

    name: str
    bounds: tuple[tuple[int, float, float], ...]  # (column, lb, ub)

    def apply(self, prog):  # Program -> Program
        """A copy of ``prog`` restricted to this part (``prog`` itself is not modified)."""
        lb, ub = prog.col_lb.copy(), prog.col_ub.copy()
        for j, lo, hi in self.bounds:
            lb[j], ub[j] = max(lb[j], lo), min(ub[j], hi)
        return replace(prog, col_lb=lb, col_ub=ub)


def split_by_choice(options: Sequence[Sequence[int]], parts: int,
                    none_col: int | None = None) -> list[Subproblem]:
    """Partition by which option of a one-hot choice is taken (ranges of options per part).

    ``options[i]`` lists the columns that are 1 when option i is chosen (one option at most is
    chosen: a cut, a mode). With ``none_col`` (a binary that is 0 when no option is chosen, e.g.
    "device selected") one more part holds the plans that choose none.
    """
    if parts < 1 or not options:
        raise InputError("parts", parts, "an integer >= 1 and at least one option")
    chunks = [c for c in np.array_split(np.arange(len(options)), min(parts, len(options)))
              if len(c)]
    subs = []
    for chunk in chunks:
        inside = set(int(x) for x in chunk)
        fix = [(j, 0.0, 0.0) for o, cols in enumerate(options) if o not in inside for j in cols]
        if none_col is not None:
            fix.append((none_col, 1.0, 1.0))
        subs.append(Subproblem(f"options {chunk[0]}..{chunk[-1]}", tuple(fix)))
    if none_col is not None:
        fix = [(j, 0.0, 0.0) for cols in options for j in cols] + [(none_col, 0.0, 0.0)]
        subs.append(Subproblem("none", tuple(fix)))
    return subs


def split_by_binaries(cols: Sequence[int]) -> list[Subproblem]:
    """All 2^len(cols) fixings of the given binary columns."""
    subs = []
    for bits in range(2 ** len(cols)):
        vals = [(bits >> i) & 1 for i in range(len(cols))]
        fix = tuple((int(j), float(v), float(v)) for j, v in zip(cols, vals, strict=True))
        subs.append(Subproblem("".join(map(str, vals)), fix))
    return subs


def auto_split(prog, parts: int) -> list[Subproblem]:
    """Branch on the binaries most fractional in the LP relaxation (2^ceil(log2 parts) parts)."""
    depth = max(1, math.ceil(math.log2(max(parts, 2))))
    relaxed = replace(prog, integrality=np.zeros_like(prog.integrality))
    x = solve_program(relaxed).x
    binary = np.flatnonzero(prog.integrality & (prog.col_lb == 0) & (prog.col_ub == 1))
    if x is None or len(binary) == 0:
        return [Subproblem("all", ())]
    frac = np.abs(x[binary] - 0.5)
    return split_by_binaries(binary[np.argsort(frac, kind="stable")[:depth]].tolist())


def _solve_part(prog, sub: Subproblem, deadline: float | None,
                start: np.ndarray | None = None) -> Result:
    """Worker entry point (module level: picklable)."""
    left = None if deadline is None else max(deadline - time.time(), 1e-3)
    return solve_program(sub.apply(prog), time_limit=left, start=start)


def combine(parts: Sequence[Result], wall_s: float = 0.0) -> Result:
    """Best solution over the parts, and the least bound (infeasible parts count as +inf).

    The combined Result keeps the parts (``parts``) and the wall clock (``wall_s``;
    ``per_second`` is parts solved per second).
    """
    found = [(p.objective, i) for i, p in enumerate(parts)
             if p.x is not None and p.objective is not None]
    best = parts[min(found)[1]] if found else None
    bounds = [math.inf if p.status == "infeasible" else
              (p.bound if p.bound is not None else -math.inf) for p in parts]
    bound = min(bounds) if bounds else None
    if bound is not None and best is not None and best.objective is not None:
        bound = min(bound, best.objective)
    statuses = {p.status for p in parts}
    if statuses <= {"optimal", "infeasible"}:
        status = "optimal" if best is not None else "infeasible"
    else:
        status = "time_limit" if "time_limit" in statuses else "error"
    if bound is not None and not math.isfinite(bound):
        bound = None
    return Result(status, path="split", backend="highs",
                  objective=None if best is None else best.objective, bound=bound,
                  solve_s=sum(p.solve_s for p in parts), x=None if best is None else best.x,
                  parts=tuple(parts), wall_s=wall_s)


def solve_split(prog, subproblems: Sequence[Subproblem] | None = None, *, workers: int = 1,
                engine: str = "processes", address: str | None = None,
                time_limit: float | None = None, progress: bool = True,
                start: np.ndarray | None = None) -> Result:
    """Solve ``prog`` exactly as sub-problems on ``workers`` workers and combine them.

    ``subproblems`` must partition the search space (use :func:`split_by_choice`,
    :func:`split_by_binaries` or :func:`auto_split`); without them and with one worker the program
    is solved whole, with several workers it is split by :func:`auto_split` into about 2 x workers
    parts. ``time_limit`` is one wall-clock limit for all of it; ``start`` is a known point (MIP
    start) offered to every part (a part it does not fit ignores it).
    """
    if not isinstance(workers, int) or workers < 1:
        raise InputError("workers", workers, "an integer >= 1")
    if engine not in ENGINES:
        raise InputError("engine", engine, f"one of {ENGINES}")
    t0 = time.perf_counter()
    if subproblems is None:
        subproblems = auto_split(prog, 2 * workers) if workers > 1 else [Subproblem("all", ())]
    subs = list(subproblems)
    deadline = None if time_limit is None else time.time() + time_limit
    if workers == 1 and engine == "processes":
        results = _track((_solve_part(prog, s, deadline, start) for s in subs), len(subs),
                         progress)
    else:
        results = _track(_run_engine(engine, address, workers, prog, subs, deadline, start),
                         len(subs), progress)
    return guarded(prog, combine(results, time.perf_counter() - t0))


def guarded(prog, res: Result) -> Result:
    """The combined result through the verified-answer guard (:mod:`splitopt.solving.verify`).

    Its point is re-priced and checked against every row of ``prog``; a failed check turns
    ``optimal`` into ``unverified`` (plan and bound kept).
    """
    from splitopt.solving.verify import MILP_GAP, guard_result, verify_program

    if res.x is None:
        return res
    check = verify_program(prog, res.x, objective=res.objective, bound=res.bound,
                           gap=MILP_GAP if res.status == "optimal" else None)
    return guard_result(res, check)


def _track(items: Iterator[Result], total: int, progress: bool) -> list[Result]:
    """Collect results, with a rich progress bar (solved parts, best objective so far)."""
    from rich.progress import Progress

    out: list[Result] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("sub-problems", total=total)
        for r in items:
            out.append(r)
            best = min((p.objective for p in out if p.objective is not None), default=None)
            bar.update(task, advance=1, description=f"sub-problems (best {best})")
    return out


def _run_engine(engine: str, address: str | None, workers: int, prog, subs: list[Subproblem],
                deadline: float | None, start: np.ndarray | None) -> Iterator[Result]:
    if engine == "processes":
        # joblib's own reusable pool: a bare loky pool would be reused by a later joblib.Parallel
        # in the same process, which then fails (it lacks joblib's temp-folder manager)
        from joblib.executor import get_memmapping_executor

        ex = get_memmapping_executor(workers)
        futs = [ex.submit(_solve_part, prog, s, deadline, start) for s in subs]
        from concurrent.futures import as_completed

        return (f.result() for f in as_completed(futs))
    if engine == "dask":
        return _run_dask(address, workers, prog, subs, deadline, start)
    return _run_ray(address, workers, prog, subs, deadline, start)


def _run_dask(address, workers, prog, subs, deadline, start) -> Iterator[Result]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None if address else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                processes=True, dashboard_address=None)
    client = Client(address or cluster)
    try:
        shared = client.scatter(prog, broadcast=True)
        futs = [client.submit(_solve_part, shared, s, deadline, start, pure=False) for s in subs]
        for fut in as_completed(futs):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_ray(address, workers, prog, subs, deadline, start) -> Iterator[Result]:
    try:
        import ray
    except ImportError:
        raise InputError("engine", "ray", "an installed engine",
                         "pip install ray (or use engine='processes' or 'dask').") from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers)
    remote = ray.remote(num_cpus=1)(_solve_part)
    shared = ray.put(prog)
    refs = [remote.remote(shared, s, deadline, start) for s in subs]
    while refs:
        done, refs = ray.wait(refs)
        yield from ray.get(done)
