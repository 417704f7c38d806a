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
            tol = feas_rtol * np.maximum(1.0, np.abs(np.where(np.isfinite(lim), lim, 0)))
            bad = np.flatnonzero(cmp(v, lim - tol) if label == "floor" else cmp(v, lim + tol))
            checks.append(Check(f"{res} shares {label}", bad.size == 0, "" if bad.size == 0 else
                                f"device {int(bad[0])}: {v[bad[0]]:.12g} vs {label} "
                                f"{lim[bad[0]]:.12g}"))
    return Verification(tuple(checks), None if repriced is None else float(repriced))


def checked_status(termination: str, verification: Verification | None) -> str:
    """``termination``, or :data:`UNVERIFIED` when it claims ``optimal`` and the guard failed."""
    if termination == "optimal" and (verification is None or not verification.passed):
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


# ---------------------------------------------------------------------------- builder Problems
def plan_options(problem: Any, plan: Any) -> tuple[np.ndarray, list[Check]]:
    """Each device's option index in ``problem`` for the decisions in ``plan``.

    Also returns the checks that the plan covers the problem's devices with allowed options.
    """
    o = problem.options
    sets = problem.table.sets()
    index: dict[tuple, list[int]] = {}
    for j in range(o.n_options):
        c = int(o.cut[j])
        key = ("off",) if c < 0 else (sets[c], int(o.batch[j]), bool(o.is_fl[j]))
        index.setdefault(key, []).append(j)
    chosen = np.full(problem.n_devices, -1, dtype=np.int64)
    checks: list[Check] = []
    by_name = {d.device: d for d in plan.devices}
    missing = [problem.device_name(k) for k in range(problem.n_devices)
               if problem.device_name(k) not in by_name]
    checks.append(Check("plan covers every device", not missing and
                        len(plan.devices) == problem.n_devices,
                        "" if not missing else f"missing {missing[:5]}"))
    bad: list[str] = []
    for k in range(problem.n_devices):
        d = by_name.get(problem.device_name(k))
        if d is None:
            continue
        batch = d.batch_size if d.batch_size is not None else problem.scenario.training.batch_size
        key = ("off",) if not d.selected else (d.device_side, int(batch), d.mode == "fl")
        cands = index.get(key, [])
        ok = [j for j in cands if problem.allowed[k, j]]
        if d.mode == "fl" and not ok:  # FL's side is the whole graph, whatever its position
            ok = [j for j in range(o.n_options) if o.is_fl[j] and problem.allowed[k, j]
                  and int(o.batch[j]) == key[1]]
        if ok:
            chosen[k] = ok[0]
        else:
            bad.append(d.device)
    checks.append(Check("plan uses allowed options", not bad,
                        "" if not bad else f"devices {bad[:5]} use an option the problem excludes"))
    return chosen, checks


def row_scale(c: Any) -> float:
    """The size a builder constraint's slack is relative to: its limit folded into the body."""
    ends = [abs(v) for v in (c.lb, c.ub) if math.isfinite(v)]
    return max([1.0, abs(c.body.const), *ends])


def verify_problem(problem: Any, plan: Any, *, objective: float | None, bound: float | None,
                   values: Mapping[str, Any] | None = None, options: np.ndarray | None = None,
                   gap: float | None = None) -> Verification:
    """The guard for a builder :class:`~splitopt.model.problem.Problem` and a decoded Plan.

    Re-prices the plan with ``evaluate()`` (``plan.predicted``, recomputed here) and checks that
    the builder's option costs at the plan's shares match it device by device (round time, memory,
    energy, bytes); evaluates the objective and every constraint of the Problem on the plan; checks
    shares against their bounds and sums; and ``bound`` against ``objective`` (user sense), within
    ``gap`` when given (pass it for answers that claim optimality).
    """
    from splitopt.plan import evaluate

    n, o = problem.n_devices, problem.options
    opt, checks = plan_options(problem, plan)
    if options is not None and np.any(opt >= 0):
        same = np.asarray(options)[opt >= 0] == opt[opt >= 0]
        costs_same = np.all(same | np.isclose(o.a_dev[np.arange(n), np.asarray(options)],
                                              o.a_dev[np.arange(n), opt]))
        checks.append(Check("plan matches the solver's options", bool(costs_same),
                            "" if costs_same else "the decoded plan differs from the solution"))
    if np.any(opt < 0):
        return Verification(tuple(checks), None)
    by_name = {d.device: d for d in plan.devices}
    devs = [by_name[problem.device_name(k)] for k in range(n)]
    beta = np.array([d.bandwidth_share for d in devs], dtype=float)
    phi = np.array([1.0 if d.server_share is None else d.server_share for d in devs], dtype=float)
    x = np.zeros(problem.n_cols)
    x[np.arange(n) * problem.n_options + opt] = 1.0
    x[problem.bandwidth.offset:problem.bandwidth.offset + n] = beta
    if problem.server_share is not None:
        x[problem.server_share.offset:problem.server_share.offset + n] = phi
    for v in problem.extras:
        got = None if values is None else values.get(v.name)
        if got is None or np.size(got) != v.size:
            checks.append(Check(f"values of {v.name}", False, "the solver returned no values"))
            return Verification(tuple(checks), None)
        x[v.offset:v.offset + v.size] = np.asarray(got, dtype=float)
    shares = np.vstack([beta, phi if problem.server_share is not None else np.ones(n)])
    sign = -1.0 if problem.sense == "max" else 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        repriced = sign * problem.objective.value(x, shares, problem.n_options)
        rows = [Row(c.name or f"constraint {i}", c.body.value(x, shares, problem.n_options),
                    c.lb, c.ub, row_scale(c)) for i, c in enumerate(problem.constraints)]
    extra_cols = np.arange(problem.extra_offset, problem.n_cols)
    xe, lo, hi = x[extra_cols], problem.col_lb[extra_cols], problem.col_ub[extra_cols]
    rows += [Row(f"bounds of column {int(c)}", float(v), float(a), float(b))
             for c, v, a, b in zip(extra_cols, xe, lo, hi) if not a <= v <= b]
    for var in problem.extras:
        if var.integer:
            vals = x[var.offset:var.offset + var.size]
            ok = bool(np.all(np.abs(vals - np.round(vals)) <= 1e-6))
            checks.append(Check(f"{var.name} integer", ok, "" if ok else f"values {vals[:4]}"))
    sel = ~o.is_off[opt]
    share_map = {"bandwidth": beta[sel]}
    floors = {"bandwidth": problem.col_lb[problem.bandwidth.offset:][:n][sel]}
    ceils = {"bandwidth": problem.col_ub[problem.bandwidth.offset:][:n][sel]}
    if problem.server_share is not None:
        off = problem.server_share.offset
        share_map["server"] = phi[sel]
        floors["server"], ceils["server"] = problem.col_lb[off:off + n][sel], \
            problem.col_ub[off:off + n][sel]
    checks += _evaluate_checks(problem, plan, opt, beta, phi, sel, evaluate)
    return verify(objective=objective, repriced=repriced, bound=bound, sense=problem.sense,
                  rows=rows, shares=share_map, floors=floors, ceilings=ceils, extra=checks,
                  gap=gap)


def _evaluate_checks(problem: Any, plan: Any, opt: np.ndarray, beta: np.ndarray, phi: np.ndarray,
                     sel: np.ndarray, evaluate: Any) -> list[Check]:
    """evaluate() on the plan against the builder's option costs at the plan's shares."""
    try:
        costs = evaluate(problem.pricing_scenario(), plan)
    except Exception as err:  # noqa: BLE001 - any refusal of the reference model is a failed check
        return [Check("evaluate()", False, f"{type(err).__name__}: {err}")]
    o, r = problem.options, np.arange(problem.n_devices)
    f = phi if problem.server_share is not None else np.ones_like(phi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ours = {"round_s": o.a_dev[r, opt] + o.d[r, opt] / beta + o.a_srv[r, opt] / f,
                "memory_bytes": o.mem[r, opt], "comm_bytes": o.comm[r, opt],
                "energy_j": o.e_comp[r, opt] + o.e_tx[r, opt] / beta}
    bad: list[str] = []
    for k in np.flatnonzero(sel):
        ph = costs.per_device.get(problem.device_name(int(k)))
        if ph is None:
            bad.append(f"{problem.device_name(int(k))}: not priced")
            continue
        for key, arr in ours.items():
            if not _close(float(arr[k]), float(getattr(ph, key)), OBJECTIVE_RTOL) and not (
                    arr[k] == 0 and getattr(ph, key) == 0):
                bad.append(f"{problem.device_name(int(k))}.{key}: evaluate() "
                           f"{getattr(ph, key):.12g}, option table {arr[k]:.12g}")
    if plan.predicted is not None and not _close(plan.predicted.round_latency_s,
                                                  costs.round_latency_s, OBJECTIVE_RTOL) and not (
            costs.round_latency_s == plan.predicted.round_latency_s):
        bad.append(f"plan.predicted {plan.predicted.round_latency_s:.12g} is stale")
    return [Check("evaluate() agrees with the problem's costs", not bad, "; ".join(bad[:3]))]


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
