"""The exact paths as one table: ``PATHS = {name: Path}``, tried in order by ``solve(path="auto")``.

Each path is one module (here, or anywhere importable) with two functions:

``accepts(st: Structure) -> bool``
    Whether the path solves a problem of this structure exactly (cheap: no solver, no import of
    anything heavy). ``solve(path="auto")`` takes the first path in table order that accepts;
    ``solve(path=NAME)`` refuses a path that does not.
``run(p, st, be, deadline, gap, log, warm, progress) -> Result``
    Solve: the Problem, its :class:`~splitopt.solving.structure.Structure`, the backend (None
    for a path with ``solver=False`` unless the caller named one), the perf_counter deadline (or
    None), the relative gap, the solver-log flag, a previous Result to warm-start from (or None),
    the progress display. Returns a :class:`~splitopt.backends.results.Result` with the
    termination, per-device ``options``, ``beta`` and ``phi`` shares, ``objective``, ``bound``,
    ``iterations`` (and ``x``: the Problem's columns, when user variables have values);
    :func:`splitopt.solving.solve` decodes it into the priced, guarded plan.

Adding a path: write its module, add one entry to :data:`PATHS` before ``generic`` (the
catch-all, always last). Modules are imported on first use, so a problem that the bisection
takes imports no MILP code.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from splitopt.errors import InputError

if TYPE_CHECKING:
    from splitopt.backends.base import Backend
    from splitopt.backends.results import Result
    from splitopt.model.problem import Problem
    from splitopt.solving.structure import Structure


@dataclass(frozen=True)
class Path:
    """One exact path: where its ``accepts``/``run`` live and how ``solve()`` treats its answer.

    ``module``: a module name under ``splitopt.solving.paths`` or a full dotted name.
    ``solver``: False when the path runs no solver (no default backend is looked up; the
    Result's backend reads ``none``). ``structural``: True when ``run`` answers in the
    structure's units (the objective before the Problem's weight and constant, see
    :class:`~splitopt.solving.structure.Structure`); False when it prices the whole objective.
    """

    module: str
    solver: bool = True
    structural: bool = True

    def _code(self) -> ModuleType:
        name = self.module if "." in self.module else f"{__name__}.{self.module}"
        return sys.modules.get(name) or importlib.import_module(name)  # (imported: no import)

    def accepts(self, st: Structure) -> bool:
        """Whether this path solves a problem of structure ``st`` exactly."""
        return bool(self._code().accepts(st))

    def run(self, p: Problem, st: Structure, be: Backend | None, deadline: float | None,
            gap: float, log: bool, warm: Result | None, progress: Any) -> Result:
        """Solve ``p`` (see the module docstring for the arguments)."""
        return self._code().run(p, st, be, deadline, gap, log, warm, progress)  # type: ignore[no-any-return]


#: every exact path, in the order ``path="auto"`` tries them (``generic`` last: it takes anything)
PATHS: dict[str, Path] = {
    "bisection": Path("bisection", solver=False),  # min-max, per-device rows: numpy only
    "server-share": Path("server_share"),  # min-max with server shares: closed form + MILP
    "separable": Path("separable"),  # sums (sequential rounds, total energy): MILP + 2 squares
    "coupled": Path("coupled"),  # min-max with rows coupling devices: bisection + MILP
    # HSFL's rounds-to-target x latency (model/delay.py): branch and bound over latency
    "delay-to-target": Path("splitopt.solving.hsfl_path", structural=False),
    "generic": Path("generic", structural=False),  # outer approximation / a conic backend
}


def choose_path(st: Structure) -> str:
    """The first path of :data:`PATHS` that accepts the structure (``generic`` takes anything)."""
    return next(name for name, path in PATHS.items() if path.accepts(st))


def check_path(st: Structure, name: str) -> Path:
    """The path ``name`` if it accepts ``st``, else an InputError naming the one that does."""
    path = PATHS[name]
    if not path.accepts(st):
        raise InputError("path", name, f"'{choose_path(st)}' or 'generic' for this problem",
                         st.reason or "This problem's structure does not fit that path.")
    return path
