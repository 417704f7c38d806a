"""DVFS frequency levels: each device's compute clock as one more dimension of its options.

``Problem(scenario, dvfs=(0.5, 0.75, 1.0))`` gives every device the options (cut, batch, level l):
the device computes at ``l`` times its rated speed (``device.flops``), so with dynamic power
~ l^3 (CMOS: P ~ f V^2, V ~ f) one round's device compute takes ``a_dev / l`` seconds and costs
``P_comp a_dev l^2`` joules; everything else (server compute, transfers, memory, bytes) is as at
the full clock. This is energy-delay's pricing (arXiv:2209.02428 as reconstructed in
formulations/energy_delay.py, ``instance``). The options stay one-hot, so every cost is still
linear in z[k, o]: the structured exact paths and ``pareto_front`` take DVFS problems unchanged.

A plan records each selected device's level in ``plan.meta["dvfs"]`` ({device: level}). The
reference ``evaluate()`` prices the full clock; the guard re-prices a DVFS plan from that record
(:meth:`Dvfs.reprice`: evaluate()'s device compute seconds / l, its compute energy x l^2, the round
latency combined again), not from the solver's columns. The executors run at the machine's own
clock: the measured times of a DVFS plan are those of its cut and batch at that clock.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.errors import InputError

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


def check_levels(dvfs: Any, extended: bool = False) -> tuple[float, ...]:
    """The sorted distinct levels of ``dvfs=`` (None: the full clock only).

    ``extended``: the Problem has recomputation or relays, whose extra seconds are priced at the
    full clock; levels are refused with them.
    """
    if dvfs is None:
        return (1.0,)
    if extended:
        raise InputError("dvfs", dvfs, "no DVFS levels with recompute=True or relays=",
                         "Their extra seconds are priced at the full clock; drop one of the two.")
    if isinstance(dvfs, (str, bytes, Mapping)) or not isinstance(dvfs, Iterable):
        raise InputError("dvfs", dvfs, "frequency factors in (0, 1], e.g. (0.5, 0.75, 1.0)")
    vals = list(dvfs)
    if not vals or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                       or not 0 < float(v) <= 1 for v in vals):
        raise InputError("dvfs", vals, "a non-empty list of frequency factors in (0, 1]",
                         "Give each level as a fraction of the device's rated clock.")
    return tuple(sorted({float(v) for v in vals}))


def at_levels(arrays: dict[str, np.ndarray], cut: np.ndarray, batch: np.ndarray,
              levels: Sequence[float]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray,
                                                np.ndarray]:
    """The (cut, batch) option arrays repeated once per level (level outermost).

    Device compute seconds ``a_dev / l``, compute energy ``e_comp l^2``; the rest as given.
    """
    lv = np.asarray(levels, dtype=float)
    out = {k: np.hstack([v / x if k == "a_dev" else v * x * x if k == "e_comp" else v
                         for x in lv]) for k, v in arrays.items()}
    return (out, np.tile(cut, len(lv)), np.tile(batch, len(lv)),
            np.repeat(lv, len(cut)))


class Dvfs:
    """The DVFS record of a Problem's plans: annotate, read back and re-price levels."""

    def __init__(self, p: Problem):
        self.p = p

    def annotate(self, plan: Any, option: np.ndarray) -> Any:
        """The plan with each selected device's level in ``meta["dvfs"]``."""
        o = self.p.options
        rec = {self.p.device_name(k): float(o.level[j]) for k, j in enumerate(option)
               if not o.is_off[j]}
        return replace(plan, meta={**plan.meta, "dvfs": rec})

    def plan_levels(self, plan: Any, names: Sequence[str]) -> list[float | None]:
        """The level each device in ``names`` runs at by the plan's record (None: not recorded)."""
        rec = plan.meta.get("dvfs", {})
        rec = rec if isinstance(rec, Mapping) else {}
        out: list[float | None] = []
        for n in names:
            v = rec.get(n)
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < float(v) <= 1
            out.append(float(v) if ok else None)  # type: ignore[arg-type]
        return out

    def reprice(self, plan: Any, costs: Any) -> Any:
        """``evaluate()``'s full-clock costs of ``plan`` at the levels it records (a PlanCosts).

        Per device at level l: device compute ``t / l``, the round and iteration shortened
        or lengthened by the difference, compute energy ``P_comp t l^2`` instead of ``P_comp t``;
        the round latency combined again under the scenario's schedule and serving.
        """
        from splitopt.costs import round_latency
        from splitopt.plan import PlanCosts

        sc = self.p.pricing_scenario()
        names = list(costs.per_device)
        levels = self.plan_levels(plan, names)
        it = float(sc.training.local_iters)
        phases = {}
        for n, lv in zip(names, levels):
            ph = costs.per_device[n]
            if lv is None:
                raise InputError(f"plan.meta['dvfs'][{n!r}]", plan.meta.get("dvfs", {}).get(n),
                                 "the device's DVFS level in (0, 1]",
                                 "A DVFS problem's plans record every selected device's level.")
            t = ph.device_compute_s
            dt, power = t / lv - t, sc.device(n).power_compute_w
            phases[n] = replace(ph, device_compute_s=t / lv, iteration_s=ph.iteration_s + dt / it,
                                round_s=ph.round_s + dt,
                                energy_j=ph.energy_j + power * t * (lv * lv - 1.0))
        modes = [d.mode for d in plan.devices if d.selected and d.device in phases]
        latency = round_latency([phases[d.device].round_s for d in plan.devices
                                 if d.selected and d.device in phases], modes,
                                sc.training.schedule, getattr(sc.server, "serving", "dedicated"))
        total = latency * costs.rounds if np.isfinite(costs.rounds) else np.inf
        return PlanCosts(phases, latency, costs.rounds, float(total))
