"""The verified-answer guard: nothing is called ``optimal`` before its plan is checked.

Every route that returns a result (each builder path, the formulations, split solving,
``partition()``) ends here before it labels an answer ``optimal``:

1. the plan is re-priced independently (``evaluate()`` for plans over a Scenario, the route's own
   reference evaluation otherwise) and the re-priced objective must equal the reported one
   (relative ``1e-9``);
2. every constraint of the problem holds on the plan (memory, energy, deadlines, coupling and user
   rows, shares summing to at most 1, no share below its floor), within a feasibility tolerance;
3. the bound is on the right side of the objective (``bound <= objective`` when minimising,
   ``>=`` when maximising).

If any check fails, an ``optimal`` termination becomes :data:`UNVERIFIED` and the
:class:`Verification` names the failed checks; plan and bound are kept for inspection, nothing is
replaced by a made-up value.

Public API for routes outside the builder (formulations, partitioning)::

    from splitopt.solving.verify import verify, checked_status, Row

    v = verify(objective=obj, repriced=evaluate(scenario, plan).round_latency_s, bound=bnd,
               rows=[Row("memory:d0", used, hi=limit)], shares={"bandwidth": betas})
    status = checked_status(status, v)        # "optimal" -> "unverified" when a check failed
    result_dict["verification"] = v.to_dict()
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: the termination of an answer that a solver called optimal but that failed the guard
UNVERIFIED = "unverified"
#: relative tolerance of "re-priced objective == reported objective" and of the bound test
OBJECTIVE_RTOL = 1e-9
#: the relative gap an "optimal" MILP answer must have closed (the MILPs are solved to 1e-9)
MILP_GAP = 1e-6
#: relative feasibility tolerance of constraint rows (the MILP solvers' own is 1e-7 absolute)
FEASIBILITY_RTOL = 1e-7


@dataclass(frozen=True)
class Check:
    """One check of the guard: its name, whether it passed, and what was found when it did not."""

    name: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Row:
    """A constraint evaluated on the plan: ``lo <= value <= hi`` (either side may be open).

    It holds within ``FEASIBILITY_RTOL * scale``; ``scale`` defaults to max(1, |lo|, |hi|) (a
    row written as ``body - limit <= 0`` passes its limit's size as the scale).
    """

    name: str
    value: float
    lo: float = -math.inf
    hi: float = math.inf
    scale: float | None = None

    @property
    def tolerance(self) -> float:
        """The absolute slack this row is allowed."""
        if self.scale is not None:
            return FEASIBILITY_RTOL * max(1.0, abs(self.scale))
        ends = [abs(v) for v in (self.lo, self.hi) if math.isfinite(v)]
        return FEASIBILITY_RTOL * max([1.0, *ends])


@dataclass(frozen=True)
class Verification:
    """The outcome of the guard: every check run, and the independently re-priced objective."""

    checks: tuple[Check, ...] = ()
    repriced: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: ``verified (12 checks)`` or the failed checks with what was found."""
        if self.passed:
            return f"verified ({len(self.checks)} checks)"
        return "unverified: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failed[:5])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready block (``Result.to_dict()['verification']``, ``splitopt solve --json``)."""
        return {"passed": self.passed, "repriced_objective": self.repriced,
                "n_checks": len(self.checks), "failed": [c.to_dict() for c in self.failed],
                "checks": [c.name for c in self.checks]}


def _close(a: float, b: float, rtol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)


def verify(*, objective: float | None, repriced: float | None, bound: float | None = None,
           sense: str = "min", rows: Iterable[Row] = (),
           shares: Mapping[str, Sequence[float] | np.ndarray] | None = None,
           floors: Mapping[str, Sequence[float] | np.ndarray] | None = None,
           ceilings: Mapping[str, Sequence[float] | np.ndarray] | None = None,
           extra: Iterable[Check] = (), gap: float | None = None, rtol: float = OBJECTIVE_RTOL,
           feas_rtol: float = FEASIBILITY_RTOL) -> Verification:
    """Run the guard's checks on one answer (the shared function every route calls).

    Parameters
    ----------
    objective
        The objective the route reports for its plan (None when it found no plan).
    repriced
        The same plan's objective computed independently (``evaluate()`` or the route's reference
        evaluation); must equal ``objective`` within ``rtol``.
    bound
        The proven bound; must satisfy ``bound <= objective`` (``>=`` when ``sense == "max"``).
    rows
        Every constraint of the problem evaluated on the plan; each must hold within
        ``feas_rtol * max(1, |limit|)``.
    shares
        Resource shares of the selected devices by resource (``"bandwidth"``, ``"server"``): each
        in (0, 1] and their sum <= 1.
    floors, ceilings
        Per-device least / largest share by resource (bounded or fixed shares, minimum shares);
        a share below its floor fails.
    extra
        Checks the route ran itself (e.g. "the plan is one of the problem's options").
    gap
        When the route claims optimality within a relative gap, the gap it promised: the bound
        must then be that close to the objective (a bound far below is not a proof).
    sense
        ``"min"`` or ``"max"`` (the side the bound must be on).
    rtol, feas_rtol
        Relative tolerances of the objective/bound tests and of the rows.

    """
    checks: list[Check] = list(extra)
    if objective is None:
        checks.append(Check("objective", False, "no objective reported"))
    elif repriced is None or not math.isfinite(repriced):
        checks.append(Check("repriced objective", False, f"re-pricing gave {repriced}"))
    else:
        ok = _close(float(objective), float(repriced), rtol)
        checks.append(Check("repriced objective", ok,
                            "" if ok else f"reported {objective:.12g}, re-priced {repriced:.12g}"))
    if bound is not None and objective is not None:
        if sense not in ("min", "max"):
            raise ValueError(f"sense must be 'min' or 'max', not {sense!r}")
        slack = rtol * max(abs(objective), abs(bound), 1e-12)
        ok = bound <= objective + slack if sense == "min" else bound >= objective - slack
        side = "<=" if sense == "min" else ">="
        checks.append(Check("bound", bool(ok), "" if ok else
                            f"bound {bound:.12g} not {side} objective {objective:.12g}"))
        if gap is not None:
            rel = abs(objective - bound) / max(abs(objective), 1e-300)
            ok = rel <= max(gap, rtol) * (1 + 1e-6)
            checks.append(Check("gap", bool(ok), "" if ok else
                                f"relative gap {rel:.3g} above the promised {gap:.3g}"))
    for r in rows:
        tol = r.tolerance * feas_rtol / FEASIBILITY_RTOL
        ok = math.isfinite(r.value) and r.lo - tol <= r.value <= r.hi + tol
        checks.append(Check(f"row {r.name}", bool(ok), "" if ok else
                            f"value {r.value:.12g} outside [{r.lo:.12g}, {r.hi:.12g}]"))
    for res, vals in (shares or {}).items():
        v = np.asarray(vals, dtype=float)
        ok = bool(v.size == 0 or (np.all(v > 0) and np.all(v <= 1 + 1e-12)))
        checks.append(Check(f"{res} shares in (0, 1]", ok, "" if ok else
                            f"least {v.min():.3g}, largest {v.max():.3g}"))
        total = float(v.sum())
        ok = total <= 1 + feas_rtol
        checks.append(Check(f"{res} shares sum <= 1", ok, "" if ok else f"sum {total:.12g}"))
        for label, lim, cmp in (("floor", (floors or {}).get(res), np.less),
                                ("ceiling", (ceilings or {}).get(res), np.greater)):
            if lim is None:
                continue
            lim = np.asarray(lim, dtype=float)
            if ((v >= lim) if label == "floor" else (v <= lim)).all():  # inside: no tolerance
                bad = np.zeros(0, dtype=np.int64)
            else:
                tol = feas_rtol * np.maximum(1.0, np.abs(np.where(np.isfinite(lim), lim, 0)))
                bad = np.flatnonzero(cmp(v, lim - tol) if label == "floor" else
                                     cmp(v, lim + tol))
            checks.append(Check(f"{res} shares {label}", bad.size == 0, "" if bad.size == 0 else
                                f"device {int(bad[0])}: {v[bad[0]]:.12g} vs {label} "
                                f"{lim[bad[0]]:.12g}"))
    return Verification(tuple(checks), None if repriced is None else float(repriced))


def solver_agrees(solver_value: float | None, plan_value: float,
                  rtol: float = FEASIBILITY_RTOL) -> Check:
    """The solver's own objective for its point agrees with the plan's re-priced value.

    A MILP meets its rows to its feasibility tolerance (1e-9 absolute here), so its T column may
    sit that far below the max it stands for: this check allows ``FEASIBILITY_RTOL``; the value
    reported to the user is the plan's re-priced one.
    """
    if solver_value is None:
        return Check("solver objective", True, "no solver objective (priced by the route)")
    ok = abs(solver_value - plan_value) <= rtol * max(abs(plan_value), abs(solver_value), 1.0)
    return Check("solver objective", bool(ok), "" if ok else
                 f"solver {solver_value:.12g}, plan re-priced {plan_value:.12g}")


def checked_status(termination: str, verification: Verification | None) -> str:
    """``termination``, or :data:`UNVERIFIED` when it claims ``optimal``/``feasible`` wrongly.

    Other terminations (``time_limit``, ``error``) are kept as they are.
    """
    if termination in ("optimal", "feasible") and (verification is None
                                                    or not verification.passed):
        return UNVERIFIED
    return termination


def guard_result(result: Any, verification: Verification) -> Any:
    """A copy of a dataclass result with ``verification`` set and its termination checked.

    Works on :class:`splitopt.backends.results.Result` (field ``termination``) and on the
    formulations' results with a ``status`` field; a ``plan`` field's status follows.
    """
    key = "termination" if hasattr(result, "termination") else "status"
    status = checked_status(getattr(result, key), verification)
    changes: dict[str, Any] = {key: status}
    if hasattr(result, "verification"):
        changes["verification"] = verification
    plan = getattr(result, "plan", None)
    if plan is not None and getattr(plan, "status", None) == "optimal" and status != "optimal":
        changes["plan"] = replace(plan, status=status)
    return replace(result, **changes)


def row_scale(c: Any) -> float:
    """The size a builder constraint's slack is relative to: its limit folded into the body."""
    ends = [abs(v) for v in (c.lb, c.ub) if math.isfinite(v)]
    return max([1.0, abs(c.body.const), *ends])


# ---------------------------------------------------------------------------- programs (MILPs)
def verify_program(prog: Any, x: np.ndarray | None, *, objective: float | None,
                   bound: float | None, gap: float | None = None,
                   sense: str = "min") -> Verification:
    """The guard for a point of a compiled :class:`~splitopt.compile.program.Program`.

    For split solving and the formulations that build Programs directly. Re-prices
    ``c @ x + offset``; checks every row, column bound, integrality and cone at ``x`` (relative
    tolerance, as for Problems) and the bound (within ``gap`` when given).
    """
    if x is None:
        return verify(objective=objective, repriced=None, bound=bound, sense=sense, gap=gap)
    x = np.asarray(x, dtype=float)
    sign = -1.0 if sense == "max" else 1.0
    repriced = sign * prog.objective(x)
    ax = prog.A @ x
    rows = []
    scale = np.maximum(1.0, np.maximum(np.abs(np.where(np.isfinite(prog.row_lb), prog.row_lb, 0)),
                                       np.abs(np.where(np.isfinite(prog.row_ub), prog.row_ub, 0))))
    over = np.maximum(prog.row_lb - ax, ax - prog.row_ub) / scale
    worst = int(np.argmax(over)) if len(over) else -1
    if worst >= 0 and over[worst] > FEASIBILITY_RTOL:
        name = prog.row_names[worst] if worst < len(prog.row_names) else f"row {worst}"
        rows.append(Row(name, float(ax[worst]), float(prog.row_lb[worst]),
                        float(prog.row_ub[worst])))
    checks = [Check("rows hold", not rows, "" if not rows else
                    f"{int((over > FEASIBILITY_RTOL).sum())} rows broken")]
    cb = np.maximum(prog.col_lb - x, x - prog.col_ub)
    ok = bool(np.all(cb <= FEASIBILITY_RTOL * np.maximum(1.0, np.abs(x))))
    checks.append(Check("column bounds", ok, "" if ok else f"largest excess {cb.max():.3g}"))
    xi = x[np.asarray(prog.integrality, dtype=bool)]
    ok = bool(np.all(np.abs(xi - np.round(xi)) <= 1e-6))
    checks.append(Check("integrality", ok, "" if ok else
                        f"largest {np.abs(xi - np.round(xi)).max():.3g}"))
    if len(getattr(prog, "cones", ())):
        u = x[prog.cones[:, 0]]
        viol = prog.max_violation(x)
        ok = viol <= FEASIBILITY_RTOL * max(1.0, float(np.abs(u).max()))
        checks.append(Check("cones", bool(ok), "" if ok else f"violation {viol:.3g}"))
    return verify(objective=objective, repriced=repriced, bound=bound, sense=sense, rows=rows,
                  extra=checks, gap=gap)


# the builder's guard lives in its own module; re-exported here (one public place)
from splitopt.solving.verify_builder import plan_options, verify_problem  # noqa: E402, F401
