"""Segment-to-slot assignment on the builder: cut layer chains into segments, place each on a slot.

A model with L layers (topological order 0..L-1) is cut into contiguous segments [i, j); each
segment runs on one slot (an accelerator, a device). One binary column y[m, i, j, a] per model m,
segment [i, j) and slot a, with the rows

    start:  sum_{j, a} y[m, 0, j, a] = 1                                        (one first segment)
    flow:   sum_{i, a} y[m, i, p, a] = sum_{j, a} y[m, p, j, a]        0 < p < L_m  (chained)
    once:   sum_{i, j} y[m, i, j, a] <= 1                            (a model visits a slot once)

so the chosen arcs are exactly the segmentations of every model with an order of distinct slots.
Every per-arc cost (a segment's compute and send seconds on a slot, its memory) is then linear in
y: :meth:`SegmentAssignment.linear`, :meth:`per_slot` (a slot's load or memory: pipeline
bottlenecks with :func:`splitopt.model.maximum`, memory rows with ``<=``) and :meth:`per_model`
(each model's latency). Synergy (``formulations/synergy.py``) is stated with it.

>>> seg = SegmentAssignment(p, lengths=[4], n_slots=3)
>>> load = seg.per_slot(seconds)            # seconds[k]: arc k's compute + send seconds
>>> p.minimize(maximum(load))               # the pipeline's bottleneck
>>> seg.chosen(p.solve().values[seg.name])  # ((i, j, slot), ...) per model
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from splitopt.errors import InputError
from splitopt.model.expr import Expr

if TYPE_CHECKING:
    from splitopt.model.problem import Problem

Segments = tuple[tuple[tuple[int, int, int], ...], ...]  # per model: (start, end, slot) segments


class SegmentAssignment:
    """Binary arcs y[m, i, j, a] (model m's segment [i, j) on slot a) and their rows."""

    def __init__(self, problem: Problem, lengths: Sequence[int], n_slots: int, *,
                 name: str = "segment", once_per_slot: bool = True):
        if (isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence) or not lengths
                or any(not isinstance(n, (int, np.integer)) or n < 1 for n in lengths)):
            raise InputError("lengths", lengths, "a non-empty list of layer counts >= 1")
        if not isinstance(n_slots, (int, np.integer)) or n_slots < 1:
            raise InputError("n_slots", n_slots, "an integer >= 1")
        self.problem, self.name = problem, name
        self.lengths, self.n_slots = tuple(int(n) for n in lengths), int(n_slots)
        parts = []
        for m, n in enumerate(self.lengths):
            i, j = np.triu_indices(n + 1, 1)  # every segment [i, j), 0 <= i < j <= n
            a = np.arange(self.n_slots)
            parts.append(np.stack([np.full(len(i) * len(a), m), np.repeat(i, len(a)),
                                   np.repeat(j, len(a)), np.tile(a, len(i))]))
        #: (K,) model, start, end and slot of every arc (column y[k])
        self.model, self.start, self.end, self.slot = np.concatenate(parts, axis=1)
        self.y = problem.add_variable(name, len(self.model), ub=1.0, integer=True)
        self._rows(once_per_slot)

    @property
    def n_arcs(self) -> int:
        """Number of arcs (binary columns)."""
        return len(self.model)

    def linear(self, coef: np.ndarray | Sequence[float]) -> Expr:
        """sum_k coef[k] y[k]: a cost of the chosen segments (one number per arc)."""
        c = np.asarray(coef, dtype=float)
        if c.shape != (self.n_arcs,) or not np.all(np.isfinite(c)):
            raise InputError("arc coefficients", c.shape, f"{self.n_arcs} finite numbers")
        nz = np.flatnonzero(c)
        return Expr(self.y.offset + nz.astype(np.int64), c[nz])

    def per_slot(self, coef: np.ndarray | Sequence[float]) -> list[Expr]:
        """One expression per slot: sum of coef over the arcs placed on it (load, memory)."""
        c = np.asarray(coef, dtype=float)
        return [self.linear(np.where(self.slot == a, c, 0.0)) for a in range(self.n_slots)]

    def per_model(self, coef: np.ndarray | Sequence[float]) -> list[Expr]:
        """One expression per model: sum of coef over its chosen segments (its latency)."""
        c = np.asarray(coef, dtype=float)
        return [self.linear(np.where(self.model == m, c, 0.0)) for m in range(len(self.lengths))]

    def chosen(self, values: np.ndarray) -> Segments:
        """The segments a solution picks, per model in order: ((start, end, slot), ...)."""
        on = np.flatnonzero(np.asarray(values, dtype=float) > 0.5)
        out = []
        for m in range(len(self.lengths)):
            k = on[self.model[on] == m]
            k = k[np.argsort(self.start[k], kind="stable")]
            out.append(tuple((int(self.start[i]), int(self.end[i]), int(self.slot[i])) for i in k))
        return tuple(out)

    def _rows(self, once_per_slot: bool) -> None:
        p, ones = self.problem, np.ones(self.n_arcs)
        for m, n in enumerate(self.lengths):
            mine = self.model == m
            p.add(self.linear(np.where(mine & (self.start == 0), ones, 0.0)) == 1,
                  name=f"{self.name}:start:{m}")
            for q in range(1, n):
                flow = np.where(mine & (self.end == q), 1.0, 0.0) - np.where(
                    mine & (self.start == q), 1.0, 0.0)
                p.add(self.linear(flow) == 0, name=f"{self.name}:flow:{m}:{q}")
            if once_per_slot:
                for a in range(self.n_slots):
                    p.add(self.linear(np.where(mine & (self.slot == a), ones, 0.0)) <= 1,
                          name=f"{self.name}:once:{m}:{a}")
