"""The result of a solve: why it stopped, kept apart from what it found."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitopt.plan import Plan


@dataclass(frozen=True)
class Result:
    """What :func:`splitopt.solving.solve` returns.

    Attributes
    ----------
    termination
        Why the solve stopped: ``optimal`` (proven within ``gap``), ``time_limit`` (best plan and
        bound so far), ``unverified`` (the solver said optimal but the plan failed the guard:
        see ``verification``), ``error``.
    path
        The method: ``bisection``, ``server-share``, ``separable``, ``coupled`` or
        ``outer-approximation`` (the generic route) / ``conic`` (a conic backend on the cones).
    backend
        The backend that solved the MILP/convex steps (``none`` for the pure numpy bisection).
    objective, bound
        The plan's exact objective under the reference model and the proven bound on the optimum.
    plan
        The frozen Plan (predicted costs filled in), or None when nothing was found.
    build_s, solve_s, price_s
        Seconds spent analysing/compiling, solving, and pricing the plan (plan.evaluate).
    values
        Values of the user's extra variables, by name.
    verification
        The guard's outcome (:class:`splitopt.solving.verify.Verification`): every check run on
        the plan before it was labelled; a failed check turns ``optimal`` into ``unverified``.

    """

    termination: str
    path: str
    backend: str
    objective: float | None
    bound: float | None
    plan: Plan | None
    build_s: float
    solve_s: float
    iterations: int = 0
    log: str = ""
    message: str = ""
    values: Mapping[str, np.ndarray] = field(default_factory=dict)
    options: np.ndarray | None = None
    price_s: float = 0.0
    verification: Any = None

    @property
    def status(self) -> str:
        """Alias of ``termination``."""
        return self.termination

    @property
    def gap(self) -> float | None:
        """Relative gap |objective - bound| / |objective|."""
        if self.objective is None or self.bound is None:
            return None
        return abs(self.objective - self.bound) / max(abs(self.objective), 1e-300)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the plan document included)."""
        return {"termination": self.termination, "path": self.path, "backend": self.backend,
                "objective": self.objective, "bound": self.bound, "gap": self.gap,
                "build_s": self.build_s, "solve_s": self.solve_s, "price_s": self.price_s,
                "iterations": self.iterations,
                "message": self.message,
                "values": {k: np.asarray(v).tolist() for k, v in self.values.items()},
                "verification": None if self.verification is None
                else self.verification.to_dict()}
