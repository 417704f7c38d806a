"""Brute-force oracles for the joint formulations (tests and benchmarks; small instances only).

Enumerate every discrete choice (cuts x modes x batches), allocate the shares exactly for each
(a 1-D root for min-max, the square-root rule for sums), keep the best. ``grid_minmax`` checks the
exact inner step itself against a plain grid over the bandwidth simplex.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from splitopt.errors import InputError
from splitopt.graph import LayerGraph
from splitopt.solving.shares import fixed_minmax, server_fixed_minmax

MAX_FREE_NODES = 16
MAX_COMBOS = 2_000_000


def closed_sets(graph: LayerGraph, *, labels: str = "server") -> list[frozenset[str]]:
    """Every predecessor-closed set holding the inputs (all candidate device-side sets).

    The output node is left out when labels are on the server.
    """
    names = graph.names
    free = [v for v in names if v not in graph.inputs and (labels == "device" or v != graph.output)]
    if len(free) > MAX_FREE_NODES:
        raise InputError("graph", f"{len(free)} free nodes",
                         f"at most {MAX_FREE_NODES} for brute force")
    preds: dict[str, set[str]] = {v: set() for v in names}
    for u, w in graph.edges:
        preds[w].add(u)
    out = []
    for bits in range(1 << len(free)):
        s = set(graph.inputs) | {free[i] for i in range(len(free)) if bits >> i & 1}
        if all(preds[w] <= s for w in s):
            out.append(frozenset(s))
    return out


def _products(n: int, m: int) -> Iterator[tuple[int, ...]]:
    if m**n > MAX_COMBOS:
        raise InputError("brute force", f"{m}^{n} combinations", f"at most {MAX_COMBOS}")
    return itertools.product(range(m), repeat=n)


def brute_minmax(a_dev: np.ndarray, a_srv: np.ndarray, d: np.ndarray, feasible: np.ndarray, *,
                 server_share: bool = False) -> tuple[float, tuple[int, ...]]:
    """Min over every choice of the exact min-max round time (with or without server shares)."""
    n, m = a_dev.shape
    rows = np.arange(n)
    best, arg = np.inf, ()
    for ch in _products(n, m):
        c = np.array(ch)
        if not feasible[rows, c].all():
            continue
        if server_share:
            v = server_fixed_minmax(a_dev[rows, c], a_srv[rows, c], d[rows, c])[0]
        else:
            v = fixed_minmax(a_dev[rows, c] + a_srv[rows, c], d[rows, c])[0]
        if v < best:
            best, arg = v, ch
    return best, arg


def grid_minmax(a: np.ndarray, d: np.ndarray, steps: int = 400) -> float:
    """Min over a grid of the bandwidth simplex of max_k a_k + d_k / beta_k (2 or 3 devices)."""
    n = len(a)
    g = (np.arange(1, steps) / steps)
    if n == 1:
        return float(a[0] + d[0])
    if n == 2:
        return float(np.min(np.maximum(a[0] + d[0] / g, a[1] + d[1] / (1 - g))))
    if n == 3:
        b1, b2 = np.meshgrid(g, g)
        b3 = 1 - b1 - b2
        ok = b3 > 0
        t = np.maximum.reduce([a[0] + d[0] / b1[ok], a[1] + d[1] / b2[ok], a[2] + d[2] / b3[ok]])
        return float(t.min())
    raise InputError("grid_minmax devices", n, "1, 2 or 3 devices")


def brute_choices(n: int, options: Sequence[Sequence[int]] | int) -> Iterator[tuple[int, ...]]:
    """Every per-device choice (one list of allowed option indices per device, or m for all)."""
    if isinstance(options, int):
        return _products(n, options)
    total = int(np.prod([len(o) for o in options], dtype=float))
    if total > MAX_COMBOS:
        raise InputError("brute force", f"{total} combinations", f"at most {MAX_COMBOS}")
    return itertools.product(*options)


def argmin_over(choices: Iterator[tuple[int, ...]],
                value: Callable[[tuple[int, ...]], float]) -> tuple[float, tuple[int, ...]]:
    """The smallest ``value(choice)`` and its choice."""
    best, arg = np.inf, ()
    for ch in choices:
        v = value(ch)
        if v < best:
            best, arg = v, ch
    return best, arg
