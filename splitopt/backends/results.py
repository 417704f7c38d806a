"""The one result of everything that solves: why it stopped, kept apart from what it found.

A backend's answer on one Program, a split solve's combined answer, an exact path of
:mod:`splitopt.solving` (options and shares, objective in the path's own units, before
:func:`splitopt.solving.solve` decodes it into a plan), :func:`splitopt.solving.solve` and the
planner all return a :class:`Result`; what only some of them fill (the program's column values
``x``, the options and shares, a plan, the parts of a split solve) are fields that stay at their
defaults otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import numpy as np

from splitopt.plan import Plan


@dataclass(frozen=True)
class Result:
    """What a solve returns (a backend on one Program, a split solve, ``solve()``, the planner).

    Attributes
    ----------
    termination
        Why the solve stopped: ``optimal`` (proven within ``gap``), ``time_limit`` (best plan and
        bound so far), ``infeasible``, ``unbounded``, ``unverified`` (the solver said optimal but
        the plan failed the guard: see ``verification``), ``error``.
    path
        The method: ``bisection``, ``server-share``, ``separable``, ``coupled``,
        ``delay-to-target``, or the generic path's route: ``lagrangian`` (the share-budget dual
        with branch and bound, on sums of device terms), ``outer-approximation``, ``conic`` (a
        conic backend on the cones).
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
    x
        The values of the solved Program's columns (a backend's or a split solve's answer), or
        None when nothing was found or the answer is a plan. A partitioning method's answer is
        the device-side membership of every node (``solve_network``'s: of every network node).
    options, beta, phi
        Per device: the option index (a column of the Problem's option table), the bandwidth
        share and the server share (None without server shares) that an exact path found; the
        plan holds the same choice decoded.
    parts, wall_s
        A split solve's parts (each a Result) and its wall-clock seconds.
    extras
        What only one formulation finds, by name (SmartSplit's per-device choices and selected
        data, Synergy's segment mapping, energy-delay's options and delay/energy, multi-tier's
        tier of every node): fields of this one type, not classes of their own.

    """

    termination: str
    path: str = ""
    backend: str = ""
    objective: float | None = None
    bound: float | None = None
    plan: Plan | None = None
    build_s: float = 0.0
    solve_s: float = 0.0
    iterations: int = 0
    log: str = ""
    message: str = ""
    values: Mapping[str, np.ndarray] = field(default_factory=dict)
    options: np.ndarray | None = None
    price_s: float = 0.0
    verification: Any = None
    x: np.ndarray | None = None
    parts: tuple[Result, ...] = ()
    wall_s: float = 0.0
    extras: Mapping[str, Any] = field(default_factory=dict)
    beta: np.ndarray | None = None
    phi: np.ndarray | None = None

    def __post_init__(self) -> None:
        # an extra named like a field would be unreachable as an attribute (res.beta reads the
        # field): refuse it where it is made, not where a reader gets None
        shadowed = sorted(set(self.extras) & _FIELDS)
        if shadowed:
            raise ValueError(f"Result extras {shadowed} shadow Result fields of the same name; "
                             "pass them as those fields or rename the extras")

    def __getattr__(self, name: str) -> Any:
        """A formulation's extra by attribute (``res.choices`` is ``res.extras["choices"]``)."""
        extras = self.__dict__.get("extras") or {}
        if name in extras:
            return extras[name]
        raise AttributeError(f"Result has no field or extra {name!r} "
                             f"(extras: {sorted(extras) or 'none'})")

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

    @property
    def per_second(self) -> float:
        """Parts of a split solve solved per second of wall clock."""
        return len(self.parts) / self.wall_s if self.wall_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the plan document included)."""
        return {"termination": self.termination, "path": self.path, "backend": self.backend,
                "objective": self.objective, "bound": self.bound, "gap": self.gap,
                "build_s": self.build_s, "solve_s": self.solve_s, "price_s": self.price_s,
                "iterations": self.iterations,
                "message": self.message,
                "values": {k: np.asarray(v).tolist() for k, v in self.values.items()},
                "verification": None if self.verification is None
                else self.verification.to_dict(),
                **({"wall_s": self.wall_s, "parts": [p.to_dict() for p in self.parts]}
                   if self.parts else {}),
                **({"extras": {k: _jsonable(v) for k, v in self.extras.items()}}
                   if self.extras else {})}


_FIELDS = frozenset(Result.__dataclass_fields__) | {"status", "gap", "per_second"}


def _jsonable(v: Any) -> Any:
    """A formulation's extra as JSON types (dataclasses as dicts, arrays and tuples as lists)."""
    if is_dataclass(v) and not isinstance(v, type):
        return {k: _jsonable(x) for k, x in asdict(v).items()}
    if isinstance(v, np.ndarray | np.generic):
        return v.tolist()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v
