"""Property suite (issue 11 §2): every exact builder path against an independent exact solve.

The oracle is SCIP (pyscipopt) on the exact mixed-integer program written here from the Problem's
expressions, independently of splitopt's compile steps: one-hot binaries, the shares, the user
columns, and every ``q z / share`` term as a variable ``v`` with ``v * share >= z`` (a true
non-linear constraint that SCIP handles by spatial branch and bound; no tangents). Where the problem
is a plain min-max or sum over options and shares, a brute force over every option assignment with
the closed-form share allocations is a second oracle.

CI runs a derandomised slice (``FAST`` seeds, a few seconds); ``-m slow`` runs the rest
(``SLOW`` seeds): >= 500 instances in total, zero mismatches.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from splitopt import InfeasibleError, Problem
from splitopt.errors import InputError
from splitopt.model.expr import total
from splitopt.solving import choose_path
from splitopt.solving.structure import analyse
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario

scip = pytest.importorskip("pyscipopt", reason="pyscipopt (the bench extra) is the oracle")

RTOL = 2e-6  # our paths' default gap is 1e-6; SCIP's is set to 1e-9 below

FEATURES = ("server_share", "batches", "modes", "selection", "memory", "energy", "deadline",
            "coupling", "product", "pin", "maximise", "tie", "sequential", "energy_objective",
            "weighted", "share_bound")


# ------------------------------------------------------------------ random problems
#: families aimed at each exact path (the structure decides; the suite checks which ran),
#: with the features each may draw; "generic" draws from all of them
FAMILIES = {
    "bisection": ("batches", "modes", "selection", "memory", "energy", "deadline", "pin", "tie"),
    "server-share": ("server_share", "batches", "modes", "selection", "memory", "pin"),
    "coupled": ("coupling", "batches", "modes", "selection", "memory", "energy", "deadline",
                "pin", "product"),
    "separable": ("energy_objective", "sequential", "batches", "modes", "memory", "pin"),
    "generic": FEATURES,
}


def random_problem(seed: int, family: str | None = None,
                   prob: float = 0.35) -> tuple[Problem, set[str]]:
    """A small random Problem drawing every kind of thing the builder accepts.

    The family (seed mod 5 unless given) aims at one exact path; each of its features is drawn
    with probability ``prob``.
    """
    rng = np.random.default_rng(seed)
    family = family or list(FAMILIES)[seed % len(FAMILIES)]
    feats = {f for f in FAMILIES[family] if rng.random() < prob}
    if family == "server-share":
        feats.add("server_share")
    elif family == "coupled":
        feats.add("coupling")
        feats.discard("product")
    elif family == "separable":
        feats.add(str(rng.choice(["energy_objective", "sequential"])))
        feats.discard("modes")  # a sequential round with FL devices is a max of sums: generic
    if "maximise" in feats:
        feats -= {"energy_objective", "weighted"}
    n_dev = int(rng.integers(2, 4))
    g = random_dag(rng, int(rng.integers(1, 4)), chain=True)
    tr = Training(batch_size=int(rng.integers(1, 33)), aggregate=bool(rng.random() < 0.5),
                  schedule="sequential" if "sequential" in feats else "parallel",
                  local_iters=int(rng.integers(1, 3)))
    sc = random_scenario(rng, g, n_dev, training=tr)
    batch = sorted({int(b) for b in rng.integers(1, 40, size=2)}) if "batches" in feats else None
    p = Problem(sc, batch=batch, modes="modes" in feats, selection="selection" in feats,
                server_share="server_share" in feats)
    if "pin" in feats and len(g) > 3:
        try:
            p.pin("n0", "device", [0])
        except InputError:
            pass
    if "tie" in feats:
        p.tie_cuts()
    o = p.options
    ref = _reference_levels(p)
    for k in range(n_dev):
        if "memory" in feats:
            mem = np.where(p.allowed[k], o.mem[k], np.inf)
            p.add(p.memory(k) <= float(np.quantile(mem[np.isfinite(mem)], rng.uniform(0.3, 1))),
                  name=f"memory:{k}")
        if "energy" in feats and rng.random() < 0.7:
            p.add(p.energy(k) <= ref["energy"][k] * rng.uniform(0.8, 3), name=f"energy:{k}")
        if "deadline" in feats and rng.random() < 0.7:
            p.add(p.round_time(k) <= ref["time"][k] * rng.uniform(0.8, 3), name=f"deadline:{k}")
    if "coupling" in feats:
        kind = rng.integers(0, 2 if family == "coupled" else 3)
        if kind == 0:
            lim = float(sum(p.batches[-1] for _ in range(n_dev)) * rng.uniform(0.3, 1))
            p.add(total(p.batch[k] for k in range(n_dev)) >= lim, name="samples")
        elif kind == 1 and "selection" in feats:
            p.add(total(p.selected[k] for k in range(n_dev)) >= 2, name="at-least-two")
        else:
            p.add(p.total_energy() <= float(sum(ref["energy"])) * rng.uniform(0.7, 2),
                  name="fleet-energy")
    if "share_bound" in feats:
        p.bandwidth.bound(int(rng.integers(0, n_dev)), float(rng.uniform(0.05, 0.3)), 1.0)
    if "product" in feats:
        v = p.add_variable("v", lb=0.0, ub=float(rng.uniform(1, 5)))
        w = p.product(p.cut.is_(0, int(np.flatnonzero(p.allowed[0])[0] % len(p.table))), v[0])
        p.add(v[0] >= 0.5, name="v-floor")
        extra = w * float(rng.uniform(0.01, 0.1))
    else:
        extra = 0.0
    if "maximise" in feats:
        p.add(p.round_latency() <= float(max(ref["time"])) * rng.uniform(1, 3), name="deadline")
        p.maximize(total(p.batch[k] for k in range(n_dev)) - extra)
    elif "energy_objective" in feats:
        p.minimize(p.total_energy() + extra)
    elif "weighted" in feats:
        p.minimize(p.round_latency() + 0.1 * p.total_energy() + extra)
    else:
        p.minimize(p.round_latency() + extra)
    return p, feats


def _reference_levels(p: Problem) -> dict[str, list[float]]:
    """Each device's time and energy at its fastest option and an equal share (for limits)."""
    o, n = p.options, p.n_devices
    srv = o.a_srv * (n if p.server_share is not None else 1)
    T = np.where(p.allowed, o.a_dev + srv + o.d * n, np.inf)
    best = np.argmin(T, axis=1)
    r = np.arange(n)
    return {"time": list(T[r, best]), "energy": list((o.e_comp + o.e_tx * n)[r, best])}


# ------------------------------------------------------------------ the SCIP oracle
def scip_solve(p: Problem) -> tuple[str, float | None, float | None]:
    """(status, objective, dual bound) of the Problem in the user's sense, by SCIP."""
    m = scip.Model()
    m.hideOutput()
    m.setParam("limits/gap", 1e-10)
    m.setParam("limits/absgap", 0.0)
    m.setParam("numerics/feastol", 1e-9)
    m.setParam("limits/time", 30)
    n, no = p.n_devices, p.n_options
    x: dict[int, object] = {}
    for k in range(n):
        for j in range(no):
            if p.allowed[k, j]:
                x[k * no + j] = m.addVar(vtype="B", name=f"z{k}_{j}")
        m.addCons(scip.quicksum(x[k * no + j] for j in range(no) if p.allowed[k, j]) == 1)
    share_vars = {}
    for res, var in ((0, p.bandwidth), (1, p.server_share)):
        if var is None:
            continue
        cols = [var.offset + k for k in range(n)]
        vs = [m.addVar(lb=float(p.col_lb[c]), ub=float(p.col_ub[c]), name=f"s{res}_{k}")
              for k, c in enumerate(cols)]
        for c, v in zip(cols, vs):
            x[c] = v
        m.addCons(scip.quicksum(vs) <= 1)
        share_vars[res] = vs
    for var in p.extras:
        for i in range(var.size):
            c = var.offset + i
            lb, ub = p.col_lb[c], p.col_ub[c]
            x[c] = m.addVar(vtype="I" if var.integer else "C",
                            lb=None if lb == -math.inf else float(lb),
                            ub=None if ub == math.inf else float(ub))
    inv: dict[tuple[int, int], object] = {}

    def recip(zc: int, res: int):
        """v >= z / share for binary z: v * share >= z, a non-linear constraint."""
        if (zc, res) not in inv:
            v = m.addVar(lb=0.0, name=f"inv{zc}_{res}")
            m.addCons(v * share_vars[res][zc // no] >= x[zc])
            inv[zc, res] = v
        return inv[zc, res]

    def affine(e):
        out = e.const + scip.quicksum(float(c) * x[int(i)] for i, c in zip(e.lin_idx, e.lin_coef)
                                      if int(i) in x)
        for zc, res, c in zip(e.q_z, e.q_res, e.q_coef):
            if int(zc) in x and c != 0:
                out = out + float(c) * recip(int(zc), int(res))
        return out

    def expr(e):
        """An upper-bounding linear expression with epigraph variables for the maxes."""
        out = affine(e)
        for w, ts in e.maxes:
            t = m.addVar(lb=None, name="t")
            for term in ts:
                m.addCons(expr(term) <= t)
            out = out + w * t
        return out

    for c in p.constraints:
        body = expr(c.body)
        if c.ub < math.inf:
            m.addCons(body <= c.ub)
        if c.lb > -math.inf:
            m.addCons(body >= c.lb)
    obj = m.addVar(lb=None, name="obj")
    m.addCons(expr(p.objective) <= obj)
    m.setObjective(obj, "minimize")
    try:
        m.optimize()
    except Exception as err:  # SCIP's "unresolved numerical troubles": the oracle failed
        return f"error: {err}", None, None
    st = m.getStatus()
    sign = -1.0 if p.sense == "max" else 1.0
    if st == "infeasible":
        return "infeasible", None, None
    if m.getNSols() == 0:
        return st, None, sign * m.getDualbound()
    return st, sign * m.getObjVal(), sign * m.getDualbound()


# ------------------------------------------------------------------ brute force
BRUTE_FEATURES = {"server_share", "batches", "modes", "selection", "memory", "pin",
                  "energy_objective"}


def brute_force(p: Problem, feats: set[str]) -> float | None:
    """min over every option assignment of the closed-form optimum over the shares, or None when
    the problem is not of that form (or too large). Independent of splitopt.solving.

    Min-max: the least T with sum_k D_k / (T - A_k) <= 1, or with a server share the least T with
    c + s^2 / (1 - a) <= 1 (docs/formulations.md); total energy: sum E_comp + (sum sqrt E_tx)^2.
    """
    if not feats <= BRUTE_FEATURES or p.scenario.training.schedule != "parallel":
        return None
    o, n = p.options, p.n_devices
    ok = p.allowed.copy()
    for c in p.constraints:  # memory rows only (BRUTE_FEATURES): per device, linear in z
        ok &= _per_device(p, c) + c.body.const <= c.ub + 1e-9
    choices = [np.flatnonzero(ok[k]) for k in range(n)]
    if any(len(ch) == 0 for ch in choices) or np.prod([len(ch) for ch in choices]) > 5000:
        return None
    r = np.arange(n)
    best = math.inf
    for combo in itertools.product(*choices):
        opt = np.array(combo)
        if "energy_objective" in feats:
            val = float(o.e_comp[r, opt].sum() + np.sqrt(o.e_tx[r, opt]).sum() ** 2)
        else:
            A, D = o.a_dev[r, opt], o.d[r, opt]
            S = o.a_srv[r, opt] if p.server_share is not None else np.zeros(n)
            if p.server_share is None:
                A = A + o.a_srv[r, opt]
            val = _least_T(A, D, S)
        best = min(best, val)
    return best


def _per_device(p: Problem, c) -> np.ndarray:
    out = np.zeros((p.n_devices, p.n_options))
    np.add.at(out.ravel(), c.body.lin_idx, c.body.lin_coef)
    return out


def _fits(A: np.ndarray, D: np.ndarray, S: np.ndarray, T: float) -> bool:
    R = T - A
    need = (D > 0) | (S > 0)
    if np.any(R < 0) or np.any((R <= 0) & need):
        return False
    Rn = np.where(R > 0, R, 1.0)
    a, s, c = (D / Rn).sum(), (np.sqrt(S * D) / Rn).sum(), (S / Rn).sum()
    if s == 0:
        return a <= 1 and c <= 1
    return a < 1 and c + s * s / (1 - a) <= 1


def _least_T(A: np.ndarray, D: np.ndarray, S: np.ndarray) -> float:
    lo, hi = float(A.max()), float(A.max() + D.sum() + S.sum()) * 2 + 1e-300
    if _fits(A, D, S, lo):
        return lo
    while not _fits(A, D, S, hi):
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if hi - lo <= 1e-14 * hi:
            break
        lo, hi = (lo, mid) if _fits(A, D, S, mid) else (mid, hi)
    return hi


# ------------------------------------------------------------------ comparison
def paths_for(p: Problem) -> list[str]:
    """Every exact path that accepts the problem: the one ``auto`` picks and the generic one."""
    auto = choose_path(analyse(p))
    return [auto] if auto == "generic" else [auto, "generic"]


def compare(seed: int, **kwargs) -> list[str]:
    """Mismatches between our exact paths and the oracles on ``random_problem(seed, ...)``."""
    p, feats = random_problem(seed, **kwargs)
    status, want, want_bound = scip_solve(p)
    bad = []
    tag = f"seed {seed} {sorted(feats)}"
    brute = brute_force(p, feats)
    if brute is not None:
        if status == "infeasible" and math.isfinite(brute):
            bad.append(f"{tag}: brute force {brute} but SCIP says infeasible")
        elif want is not None and abs(brute - want) > RTOL * max(1.0, abs(want)):
            bad.append(f"{tag}: brute force {brute!r} vs SCIP {want!r}")
        if math.isfinite(brute):
            status, want = "optimal", brute
    for path in paths_for(p):
        try:
            r = p.solve(path=path)
        except InfeasibleError:
            if status != "infeasible":
                bad.append(f"{tag} {path}: infeasible, SCIP {status} {want}")
            continue
        if status == "infeasible":
            bad.append(f"{tag} {path}: {r.objective} but SCIP proves infeasible")
            continue
        if r.termination != "optimal" or r.verification is None or not r.verification.passed:
            why = "no plan" if r.verification is None else r.verification.summary()
            bad.append(f"{tag} {path}: {r.termination} {why}")
            continue
        if want is None or status != "optimal":
            bad.append(f"{tag}: SCIP {status}")
            continue
        better = (lambda a, b: a <= b) if p.sense == "min" else (lambda a, b: a >= b)
        tol = RTOL * max(1.0, abs(want))
        shift = tol if p.sense == "min" else -tol
        if not better(r.objective, want + shift):
            bad.append(f"{tag} {path}: objective {r.objective!r} worse than SCIP {want!r}")
        if not better(want, r.objective + shift):
            bad.append(f"{tag} {path}: objective {r.objective!r} better than SCIP's {want!r}")
        if r.bound is not None and not better(r.bound, want + shift):
            bad.append(f"{tag} {path}: bound {r.bound!r} above SCIP's optimum {want!r}")
    return bad


# ------------------------------------------------------------------ the tests
FAST = range(0, 20)          # CI: every family four times, a few seconds
SLOW = range(20, 620)        # -m slow: 600 more (620 instances in all)


def test_fast_slice_agrees_with_scip_and_brute_force():
    bad = [b for seed in FAST for b in compare(seed)]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_slow_run_agrees_with_scip_and_brute_force():
    bad = [b for seed in SLOW for b in compare(seed)]
    assert not bad, "\n".join(bad)


def test_every_family_reaches_its_path():
    """The families do exercise every exact path (else the suite would test less than it says)."""
    seen = {f: set() for f in FAMILIES}
    for seed in range(40):
        p, _ = random_problem(seed)
        seen[list(FAMILIES)[seed % len(FAMILIES)]].add(choose_path(analyse(p)))
    for path in ("bisection", "server-share", "coupled", "separable"):
        assert path in seen[path], seen
    assert "generic" in seen["generic"]


def test_issue11_generic_cases_pinned():
    """The three generic-path failures the suite found (seeds 3, 32, 68 before the fixes):
    a HiGHS restart that returned a bound above a feasible plan, tangents capped above a 4e-6
    share (no convergence in 500 rounds), and a row tolerance the guard and the path disagreed on.
    """
    for seed in (3, 32, 68):  # the suite's first generator: generic mix, each feature at 0.3
        assert not compare(seed, family="generic", prob=0.3), seed


def test_a_zero_server_share_is_never_free():
    """Seed 339 (slow run): a MILP iterate with server share -0.0 priced at 1 / -0.0 = -inf,
    which hid the device from the max and from its deadline row (plan re-priced at 3.7e8 s,
    caught by the guard as unverified). Shares are +0.0 now and priced by their magnitude."""
    from splitopt.model.expr import BETA, PHI

    p, _ = random_problem(339)
    x = np.zeros(p.n_cols)
    x[[j * p.n_options for j in range(p.n_devices)]] = 1.0
    shares = np.ones((2, p.n_devices))
    shares[PHI if p.server_share is not None else BETA, 1] = -0.0
    assert p.objective.value(x, shares, p.n_options) == np.inf
    assert not compare(339)

