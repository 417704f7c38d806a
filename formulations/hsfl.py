"""HSFL: hybrid split and federated learning -- modes, integer batch sizes, bandwidth, SL cut.

Paper: "Accelerating Wireless Distributed Learning via Hybrid Split and Federated Learning
Optimization", arXiv:2511.19851 (https://arxiv.org/abs/2511.19851).

Each device k trains in FL mode (whole model local, in parallel with the others) or SL mode (split
at the common cut S, the SL devices in turn through the server), with an integer batch b_k and a
bandwidth share beta_k (sum <= 1). Under the reference cost model (docs/cost_model.md):

    FL:  T_k = I * b_k * dev_k(V)                 + 8 * W(V) * p_k / beta_k
    SL:  T_k = I * b_k * (dev_k(S) + srv(S))  + (I * b_k * 8 * bnd(S) [+ 8 W(S)]) * p_k / beta_k
    round latency   L = max( max_{k in FL} T_k,  sum_{k in SL} T_k )       (costs.combine_rounds)
    rounds-to-target  R = h(P),   P = sum_k pen_k(mode_k, b_k)
    minimise  R * L   over modes, batches (memory-feasible), the SL cut and beta.

The framework's default convergence surrogate (:class:`Surrogate`) is

    R = A / (eps - G * sum_{k in FL} rho_k - sigma^2 * sum_k rho_k^2 / b_k),

rho_k the device's data share, G the non-IID drift FL-mode devices add, sigma^2 the gradient
variance; :func:`estimate_surrogate` fits A, G, sigma^2 from pilot-run losses. Any surrogate of the
form R = h(sum_k pen_k(mode, b)) with h nondecreasing can replace it (subclass and override
``penalty`` and ``rounds``): the exact method relies only on that form.

Exact solve (:mod:`splitopt.formulations._hsfl_exact`): for fixed discrete choices, the least L is
the root of sum_{FL} d_k / (L - a_k) + (sum_{SL} sqrt d_k)^2 / (L - sum_{SL} a_k) = 1 (SL shares
proportional to sqrt d_k). For a fixed latency L the least penalty P*(L) is a MILP over one-hot
(mode, batch) choices whose only nonlinear row is one rotated cone, handled by exact outer
approximation; P* is a nonincreasing step function, and a branch and bound over intervals
[L1, L2] of L with bound L1 * h(P*(L2)) closes the gap to ``tol``.

Baseline: the paper's block coordinate descent on the relaxed problem (continuous batches; blocks:
bandwidth, batches, modes, cut) followed by rounding the batch sizes (:meth:`HSFL.baseline`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from splitopt.formulations._minmax import minmax_fixed

from splitopt.costs import CutTable, round_terms
from splitopt.errors import InfeasibleError, InputError
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario


@dataclass(frozen=True)
class Surrogate:
    """R = A / (eps - G * sum_{FL} rho_k - sigma2 * sum_k rho_k^2 / b_k) rounds to the target.

    ``eps`` is the target optimality gap (target loss minus the loss floor). Subclass and override
    :meth:`penalty` (per device, additive) and :meth:`rounds` (nondecreasing in the total) to use
    another surrogate with the exact solver.
    """

    A: float = 100.0
    G: float = 0.5
    sigma2: float = 4.0
    eps: float = 1.0

    def __post_init__(self) -> None:
        for name in ("A", "eps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"surrogate.{name}", v, "a finite number > 0")
        for name in ("G", "sigma2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InputError(f"surrogate.{name}", v, "a finite number >= 0")

    def penalty(self, rho: np.ndarray, fl: np.ndarray | bool, b: np.ndarray) -> np.ndarray:
        """Each device's share of the denominator: G * rho * [FL] + sigma2 * rho^2 / b."""
        return self.G * rho * np.asarray(fl, dtype=float) + self.sigma2 * rho**2 / b

    def rounds(self, total_penalty: float) -> float:
        """Rounds to the target for a total penalty (inf when the target is out of reach)."""
        slack = self.eps - total_penalty
        return self.A / slack if slack > 0 else math.inf


def estimate_surrogate(runs: Sequence[dict[str, Any]], target: float) -> tuple[Surrogate, float]:
    """Fit A, G, sigma2 (and the loss floor f*) from short pilot runs.

    Each run is ``{"losses": [per-round loss ...], "fl_share": sum_{FL} rho_k,
    "var_term": sum_k rho_k^2 / b_k}`` (use 1 - accuracy for accuracies). The model is the bound
    behind the surrogate, loss_r = f* + A / r + G * fl_share + sigma2 * var_term, fitted by
    bounded least squares (A, G, sigma2 >= 0). Runs must differ in fl_share and in var_term for
    G and sigma2 to be identified. Returns the surrogate with eps = target - f*, and f*.
    """
    from scipy.optimize import lsq_linear

    if not isinstance(runs, Sequence) or not runs:
        raise InputError("runs", runs, "a non-empty list of pilot runs")
    rows, ys = [], []
    for i, run in enumerate(runs):
        losses = np.asarray(run.get("losses", []) if isinstance(run, dict) else [], dtype=float)
        if losses.ndim != 1 or len(losses) < 2 or not np.all(np.isfinite(losses)):
            raise InputError(f"runs[{i}].losses", run, "a list of at least 2 finite losses")
        r = np.arange(1, len(losses) + 1, dtype=float)
        rows.append(np.column_stack([np.ones_like(r), 1 / r, np.full_like(r, run["fl_share"]),
                                     np.full_like(r, run["var_term"])]))
        ys.append(losses)
    fit = lsq_linear(np.vstack(rows), np.concatenate(ys),
                     bounds=([-np.inf, 0, 0, 0], [np.inf, np.inf, np.inf, np.inf]))
    f_star, a, g, s2 = (float(v) for v in fit.x)
    if not target > f_star:
        raise InputError("target", target, f"a loss above the fitted floor {f_star:.4g}")
    return Surrogate(A=max(a, 1e-12), G=g, sigma2=s2, eps=target - f_star), f_star


@dataclass(frozen=True)
class HSFLData:
    """Per-device, per-batch (and per-cut for SL) coefficients: T = a + d / beta, penalties."""

    sets: list[frozenset[str]]
    batches: np.ndarray  # (B,)
    a_fl: np.ndarray  # (N, B)
    d_fl: np.ndarray
    ok_fl: np.ndarray
    a_sl: np.ndarray  # (C, N, B)
    d_sl: np.ndarray
    ok_sl: np.ndarray
    p_fl: np.ndarray  # (N, B)
    p_sl: np.ndarray
    rho: np.ndarray  # (N,)


@dataclass(frozen=True)
class Config:
    """One HSFL decision: SL cut index, FL flags and batch indices per device."""

    cut: int
    fl: np.ndarray
    batch: np.ndarray


@dataclass(frozen=True)
class HSFL:
    """HSFL (arXiv:2511.19851): exact delay-to-target and the paper's BCD + rounding baseline.

    Parameters
    ----------
    surrogate
        Rounds-to-target model (default :class:`Surrogate`).
    data_share
        Each device's data share rho_k (default equal); normalised to sum 1.
    batches
        Allowed integer batch sizes (default 1 .. the scenario's batch size).
    candidates
        SL cut candidates: ``"chain"`` (topological prefixes) or a list of device-side sets.
    tol
        Relative optimality tolerance of the exact branch and bound.

    """

    surrogate: Surrogate = field(default_factory=Surrogate)
    data_share: Sequence[float] | None = None
    batches: Sequence[int] | None = None
    candidates: Any = "chain"
    tol: float = 1e-4
    memory: bool = True

    name = "hsfl"
    paper = "arXiv:2511.19851"

    def scenario_for(self, scenario: Scenario) -> Scenario:
        """The scenario with sequential SL rounds (FL devices always run in parallel)."""
        if not isinstance(scenario, Scenario):
            raise InputError("scenario", type(scenario).__name__, "a splitopt Scenario")
        tr = scenario.training.model_copy(update={"schedule": "sequential"})
        return scenario if tr == scenario.training else scenario.replace(training=tr)

    def rho(self, scenario: Scenario) -> np.ndarray:
        """Data shares, summing to 1."""
        n = scenario.n_devices
        if self.data_share is None:
            return np.full(n, 1.0 / n)
        r = np.asarray(self.data_share, dtype=float)
        if r.shape != (n,) or not np.all(np.isfinite(r)) or np.any(r < 0) or r.sum() <= 0:
            raise InputError("data_share", self.data_share, f"{n} numbers >= 0, not all 0")
        return r / r.sum()

    def data(self, scenario: Scenario) -> HSFLData:
        """Price every (mode, batch) and (SL cut, batch) option for every device."""
        scen = self.scenario_for(scenario)
        g = scen.graph
        if isinstance(self.candidates, str):
            if self.candidates != "chain":
                raise InputError("candidates", self.candidates, "'chain' or a list of sets")
            sl = g.chain_prefixes()
        else:
            sl = [g.check_split(s) for s in self.candidates]
        table = CutTable.from_sets(g, [*sl, frozenset(g.names)])
        bs = self._batches(scen)
        cap = np.array([d.memory_bytes if self.memory else np.inf for d in scen.devices])
        a, d, ok = [], [], []
        for b in bs:
            rt = round_terms(scen.devices, scen.server, scen.channel, scen.training, table,
                             batch=int(b))
            a.append(rt.a_dev + rt.a_srv)
            d.append(rt.d)
            ok.append(rt.mem <= cap[:, None])
        a_, d_, ok_ = (np.stack(x, axis=-1) for x in (a, d, ok))  # (N, C+1, B)
        rho = self.rho(scen)[:, None]
        sur = self.surrogate
        return HSFLData(sl, bs, a_[:, -1], d_[:, -1], ok_[:, -1],
                        np.moveaxis(a_[:, :-1], 1, 0), np.moveaxis(d_[:, :-1], 1, 0),
                        np.moveaxis(ok_[:, :-1], 1, 0),
                        sur.penalty(rho, True, bs[None, :]), sur.penalty(rho, False, bs[None, :]),
                        rho[:, 0])

    def _batches(self, scen: Scenario) -> np.ndarray:
        vals = (range(1, scen.training.batch_size + 1) if self.batches is None
                else list(self.batches))
        if not vals or any(not isinstance(b, (int, np.integer)) or b < 1 for b in vals):
            raise InputError("batches", self.batches, "a non-empty list of integers >= 1")
        return np.array(sorted({int(b) for b in vals}), dtype=float)

    # ------------------------------------------------------------------ pricing a configuration
    def latency(self, data: HSFLData, cfg: Config) -> tuple[float, np.ndarray]:
        """Least round latency of a configuration and its bandwidth shares (exact)."""
        return config_latency(data, cfg)

    def objective(self, data: HSFLData, cfg: Config) -> float:
        """Delay to target h(P) * L of a configuration."""
        pen = penalty_of(data, cfg)
        r = self.surrogate.rounds(pen)
        return r * config_latency(data, cfg)[0] if math.isfinite(r) else math.inf

    # ------------------------------------------------------------------ solving
    def solve(self, scenario: Scenario, *, time_limit: float | None = None) -> Plan:
        """The exact optimum (branch and bound over latency intervals; gap <= tol or timed out)."""
        from splitopt.formulations._hsfl_exact import branch_and_bound

        t0 = time.perf_counter()
        data = self.data(scenario)
        base = self.baseline(scenario, data=data)
        start = base.meta["config"]
        out = branch_and_bound(data, self.surrogate, start, tol=self.tol, time_limit=time_limit)
        meta = {"formulation": self.name, "paper": self.paper, "milps": out.milps,
                "nodes": out.nodes, "solve_s": time.perf_counter() - t0}
        status = "optimal" if out.bound >= out.value * (1 - self.tol) else "time_limit"
        return self.plan(scenario, data, out.config, method="hsfl-exact", status=status,
                         bound=out.bound, meta=meta)

    def baseline(self, scenario: Scenario, *, data: HSFLData | None = None,
                 max_iter: int = 30) -> Plan:
        """The paper's method: block coordinate descent on the relaxed problem, then rounding."""
        from splitopt.formulations._hsfl_bcd import bcd_round

        t0 = time.perf_counter()
        data = data if data is not None else self.data(scenario)
        cfg = bcd_round(self, data, max_iter=max_iter)
        meta = {"formulation": self.name, "solve_s": time.perf_counter() - t0}
        return self.plan(scenario, data, cfg, method="hsfl-bcd-rounding", meta=meta)

    def plan(self, scenario: Scenario, data: HSFLData, cfg: Config, *, method: str,
             status: str = "feasible", bound: float | None = None,
             meta: dict[str, Any] | None = None) -> Plan:
        """A priced Plan of a configuration (rounds = the surrogate's rounds-to-target)."""
        scen = self.scenario_for(scenario)
        lat, beta = config_latency(data, cfg)
        rounds = self.surrogate.rounds(penalty_of(data, cfg))
        if not math.isfinite(rounds):
            raise InfeasibleError(f"{self.name}: the target is out of reach for every choice "
                                  "(surrogate denominator <= 0); raise eps or the batch sizes")
        full = frozenset(scen.graph.names)
        devs = tuple(DevicePlan(dv.name, full if cfg.fl[k] else data.sets[cfg.cut],
                                float(min(beta[k], 1.0)), 1.0,
                                int(data.batches[cfg.batch[k]]), "fl" if cfg.fl[k] else "split")
                     for k, dv in enumerate(scen.devices))
        cfg_doc = {"cut": int(cfg.cut), "fl": cfg.fl.tolist(), "batch": cfg.batch.tolist()}
        plan = Plan(devs, rounds=rounds, status=status, method=method,
                    meta={**(meta or {}), "config": cfg, "config_doc": cfg_doc,
                          "round_latency_s": lat}).priced(scen)
        assert plan.predicted is not None
        return replace(plan, objective=plan.predicted.total_delay_s, bound=bound)


def penalty_of(data: HSFLData, cfg: Config) -> float:
    """Total surrogate penalty P of a configuration."""
    rows = np.arange(len(cfg.fl))
    return float(np.where(cfg.fl, data.p_fl[rows, cfg.batch], data.p_sl[rows, cfg.batch]).sum())


def config_latency(data: HSFLData, cfg: Config) -> tuple[float, np.ndarray]:
    """Exact least latency: FL devices plus one virtual SL device (sum a, (sum sqrt d)^2)."""
    rows = np.arange(len(cfg.fl))
    fl, sl = cfg.fl, ~cfg.fl
    a_f, d_f = data.a_fl[rows, cfg.batch][fl], data.d_fl[rows, cfg.batch][fl]
    a_s = data.a_sl[cfg.cut, rows, cfg.batch][sl]
    r_s = np.sqrt(data.d_sl[cfg.cut, rows, cfg.batch][sl])
    beta = np.zeros(len(fl))
    if not sl.any():
        lat, _, b = minmax_fixed(a_f, d_f)
        beta[fl] = b
        return lat, beta
    a_all = np.append(a_f, a_s.sum())
    d_all = np.append(d_f, r_s.sum() ** 2)
    lat, _, b = minmax_fixed(a_all, d_all)
    beta[fl] = b[:-1]
    u = r_s.sum()
    beta[sl] = b[-1] * (r_s / u if u > 0 else 1.0 / sl.sum())
    beta = np.maximum(beta, 1e-12)
    return lat, beta / max(1.0, beta.sum())


def fixed_problem(scenario: Scenario, form: HSFL | None = None) -> Any:
    """A builder Problem with HSFL's exact discrete choices fixed (for ``splitopt solve``).

    The modes, batches and SL cut come from :meth:`HSFL.solve`; the Problem leaves the bandwidth
    to the builder and minimises ceil(R) x round latency, with ceil(R) the integer rounds-to-target
    (the scenario's ``training.rounds`` is set to it, so the plan prices to the objective).
    """
    from splitopt.model import Problem

    form = form or HSFL()
    plan = form.solve(scenario)
    cfg, data = plan.meta["config"], form.data(scenario)
    rounds = int(math.ceil(plan.rounds))
    scen = form.scenario_for(scenario)
    scen = scen.replace(training=scen.training.model_copy(update={"rounds": rounds}))
    p = Problem(scen, cuts=[data.sets[cfg.cut]], batch=[int(b) for b in data.batches], modes=True)
    for k, dev in enumerate(scen.devices):
        p.mode.fix(dev.name, "fl" if cfg.fl[k] else "split")
        p.batch.fix(dev.name, int(data.batches[cfg.batch[k]]))
    p.minimize(p.round_latency() * float(rounds))
    return p


def _register() -> None:
    """``splitopt solve --problem hsfl`` (the default surrogate)."""
    from splitopt.model.problems import register

    register("hsfl", lambda scenario: fixed_problem(scenario))


_register()
