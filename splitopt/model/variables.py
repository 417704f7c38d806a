"""Decision-variable views of a Problem.

Cut, bandwidth, server share, batch, DVFS level, mode, selection and extras.

Categorical choices (cut, batch, DVFS level, mode, selection) are all views over one set of
one-hot binaries z[k, o] over the device's options (a cut x batch [x level], or "not selected");
fixing or bounding them removes options. Shares are continuous columns with bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.errors import InputError
from splitopt.model.expr import Constraint, Expr, total

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


class _DeviceView:
    """Indexable by device (index or name); each item is an Expr."""

    def __init__(self, problem: Problem):
        self.p = problem

    def __len__(self) -> int:
        return self.p.n_devices

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self[k] for k in range(len(self)))

    def _check(self, k: int | str, keep: np.ndarray, what: str) -> None:
        i = self.p.device_index(k)
        if not np.any(self.p.allowed[i] & keep):
            raise InputError(what, f"device {self.p.device_name(i)!r}",
                             "a restriction that leaves at least one option",
                             "Check the values against the candidate cuts and batches.")

    def _restrict(self, k: int | str | None, keep: np.ndarray, what: str) -> None:
        ks = range(self.p.n_devices) if k is None else [self.p.device_index(k)]
        for i in ks:  # check every device before changing any
            self._check(i, keep, what)
        for i in ks:
            self.p.allowed[i] &= keep


class CutVar(_DeviceView):
    """The cut of each device: categorical over the candidate device-side sets."""

    def __getitem__(self, k: int | str) -> Expr:
        """The index of device k's chosen cut (an affine expression; 'off' counts as -1)."""
        return self.p.option_expr(k, self.p.options.cut.astype(float))

    def index_of(self, cut: int | Iterable[str]) -> int:
        """Index of a candidate cut given as an index or a device-side set of node names."""
        if isinstance(cut, (int, np.integer)):
            if not 0 <= cut < len(self.p.table):
                raise InputError("cut", cut, f"an index in [0, {len(self.p.table)})")
            return int(cut)
        want = frozenset(cut)
        for i, s in enumerate(self.p.table.sets()):
            if s == want:
                return i
        raise InputError("cut", sorted(want)[:6], "one of the candidate device-side sets")

    def fix(self, k: int | str | None, cut: int | Iterable[str]) -> None:
        """Fix device k's cut (all devices when k is None)."""
        c = self.index_of(cut)
        self._restrict(k, (self.p.options.cut == c) | self.p.options.is_off, "cut.fix")

    def is_(self, k: int | str, cut: int | Iterable[str]) -> Expr:
        """1 if device k uses the given cut, else 0 (affine)."""
        c = self.index_of(cut)
        return self.p.option_expr(k, (self.p.options.cut == c).astype(float))


class BatchVar(_DeviceView):
    """The integer batch size of each device, from a range or a set given to the Problem."""

    def __getitem__(self, k: int | str) -> Expr:
        return self.p.option_expr(k, self.p.options.batch.astype(float)
                                  * ~self.p.options.is_off)

    def fix(self, k: int | str | None, value: int) -> None:
        """Fix device k's batch size (all devices when k is None)."""
        self.bound(k, value, value)

    def bound(self, k: int | str | None, lb: float = 1, ub: float = math.inf) -> None:
        """Keep batch sizes in [lb, ub]."""
        b = self.p.options.batch
        self._restrict(k, ((b >= lb) & (b <= ub)) | self.p.options.is_off, "batch.bound")


class LevelVar(_DeviceView):
    """The DVFS level of each device (a fraction of its rated clock); needs ``dvfs=``."""

    def __getitem__(self, k: int | str) -> Expr:
        """Device k's level (an affine expression; 0 for "not selected")."""
        o = self.p.options
        return self.p.option_expr(k, o.level * ~o.is_off)

    def fix(self, k: int | str | None, level: float) -> None:
        """Fix device k's level (all devices when k is None) to one of the Problem's levels."""
        if not any(abs(level - x) <= 1e-12 for x in self.p.levels):
            raise InputError("level.fix", level, f"one of the Problem's levels {self.p.levels}",
                             "Add the level to dvfs= when building the Problem.")
        self.bound(k, level, level)

    def bound(self, k: int | str | None, lb: float = 0.0, ub: float = 1.0) -> None:
        """Keep device k's level in [lb, ub] (all devices when k is None)."""
        lv = self.p.options.level
        keep = (lv >= lb - 1e-12) & (lv <= ub + 1e-12)
        self._restrict(k, keep | self.p.options.is_off, "level.bound")


class ModeVar(_DeviceView):
    """1 when the device trains in FL mode (whole model local), else 0; needs ``modes=True``."""

    def __getitem__(self, k: int | str) -> Expr:
        return self.p.option_expr(k, self.p.options.is_fl.astype(float))

    def fix(self, k: int | str | None, mode: str) -> None:
        """Fix device k's mode to ``"fl"`` or ``"split"``."""
        if mode not in ("fl", "split"):
            raise InputError("mode", mode, "'fl' or 'split'")
        fl = self.p.options.is_fl
        self._restrict(k, (fl if mode == "fl" else ~fl) | self.p.options.is_off, "mode.fix")


class SelectVar(_DeviceView):
    """1 when the device takes part in the round; needs ``selection=True``."""

    def __getitem__(self, k: int | str) -> Expr:
        return self.p.option_expr(k, (~self.p.options.is_off).astype(float))

    def fix(self, k: int | str | None, on: bool) -> None:
        """Force device k in (True) or out (False)."""
        off = self.p.options.is_off
        self._restrict(k, ~off if on else off, "selected.fix")

    def total(self, weights: Iterable[float] | None = None) -> Expr:
        """sum_k w_k selected[k] (affine; default w_k = 1: the number of devices selected)."""
        w = self._weights(weights, "selected.total weights")
        return total(float(w[k]) * self[k] for k in range(len(self)) if w[k])

    def covers(self, data: Any, fraction: float) -> list[Constraint]:
        """Coverage rows: sum_k data[k,j] selected[k] >= fraction sum_k data[k,j] for each j.

        ``data`` is (devices,) or (devices, classes) of samples held (counts >= 0): the selected
        devices hold at least ``fraction`` of every class's samples (SmartSplit's coverage).
        """
        arr = np.asarray(data, dtype=float) if not isinstance(data, (str, bytes)) else None
        n = len(self)
        if arr is None or arr.ndim not in (1, 2) or arr.shape[0] != n or not np.all(
                np.isfinite(arr)) or np.any(arr < 0):
            raise InputError("coverage data", data, f"counts >= 0, one row per device ({n})")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 <= fraction <= 1:
            raise InputError("coverage fraction", fraction, "a fraction in [0, 1]")
        arr = arr.reshape(n, -1)
        need = fraction * arr.sum(axis=0)
        return [self.total(arr[:, j]) >= float(need[j]) for j in range(arr.shape[1])
                if need[j] > 0]

    def _weights(self, weights: Iterable[float] | None, field: str) -> np.ndarray:
        n = len(self)
        if weights is None:
            return np.ones(n)
        w = np.asarray(list(weights), dtype=float) if not isinstance(weights, (str, bytes)) \
            else None
        if w is None or w.shape != (n,) or not np.all(np.isfinite(w)):
            raise InputError(field, weights, f"{n} finite numbers (one per device)")
        return w


class ShareVar(_DeviceView):
    """A continuous share per device (bandwidth beta or server share phi), sum over devices <= 1."""

    def __init__(self, problem: Problem, res: int, offset: int, label: str):
        super().__init__(problem)
        self.res, self.offset, self.label = res, offset, label

    def __getitem__(self, k: int | str) -> Expr:
        col = self.offset + self.p.device_index(k)
        return Expr(np.array([col], dtype=np.int64), np.ones(1))

    def fix(self, k: int | str | None, value: float | Iterable[float]) -> None:
        """Fix the share of device k (or of every device: a number or one value per device)."""
        if k is None:
            vals = np.broadcast_to(np.asarray(value, dtype=float), (self.p.n_devices,))
            for i, v in enumerate(vals):
                self.bound(i, float(v), float(v))
        else:
            self.bound(k, float(value), float(value))  # type: ignore[arg-type]

    def bound(self, k: int | str, lb: float = 0.0, ub: float = 1.0) -> None:
        """Keep device k's share in [lb, ub] (within (0, 1])."""
        if not (0 <= lb <= ub <= 1) or (lb == ub == 0):
            raise InputError(f"{self.label}.bound", (lb, ub), "0 <= lb <= ub <= 1 and ub > 0")
        i = self.p.device_index(k)
        self.p.col_lb[self.offset + i] = lb
        self.p.col_ub[self.offset + i] = ub

    def fixed_values(self) -> np.ndarray | None:
        """The per-device values when every share is fixed, else None."""
        lb = self.p.col_lb[self.offset:self.offset + self.p.n_devices]
        ub = self.p.col_ub[self.offset:self.offset + self.p.n_devices]
        return lb.copy() if np.all(lb == ub) else None


@dataclass(frozen=True)
class Var:
    """A user variable block; index it (or use ``.expr``) to get affine expressions."""

    name: str
    offset: int
    size: int
    integer: bool

    def __getitem__(self, i: Any) -> Expr:
        idx = np.arange(self.size)[i]
        if np.ndim(idx) != 0:
            raise InputError(f"variable {self.name!r} index", i, "a single index")
        return Expr(np.array([self.offset + int(idx)], dtype=np.int64), np.ones(1))

    @property
    def expr(self) -> Expr:
        """The variable itself (scalar variables)."""
        if self.size != 1:
            raise InputError(f"variable {self.name!r}", f"size {self.size}", "index it: v[i]")
        return self[0]
