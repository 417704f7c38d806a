"""The backend interface: capabilities as class data, availability without heavy imports."""

from __future__ import annotations

import importlib.util
from typing import ClassVar

import numpy as np

from splitopt.backends.results import Result
from splitopt.compile.program import Program

#: termination conditions (why the solver stopped), kept apart from what it found
OPTIMAL, TIME_LIMIT, INFEASIBLE, UNBOUNDED, ERROR = (
    "optimal", "time_limit", "infeasible", "unbounded", "error")


def answer(termination: str, x: np.ndarray | None, objective: float | None, bound: float | None,
           solve_s: float, log: str = "", message: str = "", backend: str = "") -> Result:
    """A backend's Result on one Program: why it stopped, the column values, objective, bound."""
    return Result(termination, backend=backend, objective=objective, bound=bound,
                  solve_s=solve_s, log=log, message=message, x=x)


class Backend:
    """A solver backend: subclasses set the class data and implement :meth:`solve_program`.

    Capabilities: ``lp``, ``mip``, ``socp`` (continuous rotated cones), ``misocp`` (cones with
    integers), ``time_limit``, ``warm_start``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset()
    purpose: ClassVar[str] = ""

    @classmethod
    def available(cls) -> bool:
        """True when every required module can be imported (checked without importing it)."""
        return all(importlib.util.find_spec(m) is not None for m in cls.requires)

    def supports(self, prog: Program) -> bool:
        """True when this backend can take the program as it is (cones included)."""
        caps = self.capabilities
        if not prog.is_linear:
            return ("misocp" if prog.is_mip else "socp") in caps
        return ("mip" if prog.is_mip else "lp") in caps

    def solve_program(self, prog: Program, *, time_limit: float | None = None,
                      warm_start: np.ndarray | None = None, log: bool = False,
                      mip_gap: float = 1e-9) -> Result:  # pragma: no cover - interface
        """Solve one program (wall-clock limited when ``time_limit`` is given).

        The Result carries ``termination``, the column values ``x`` (None when nothing was
        found), ``objective``, ``bound``, ``solve_s``, ``log`` and ``message``.
        """
        raise NotImplementedError
