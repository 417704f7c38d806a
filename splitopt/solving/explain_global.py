"""Say why a problem has no plan when every device alone still has options."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from splitopt.solving.structure import Structure, _split_by_device, per_option

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


def explain_infeasible(p: Problem, st: Structure) -> str:
    """A message naming the constraint (and devices) that cannot be met."""
    msgs = []
    if st.beta_min.size and st.allowed.size:
        need = np.where(st.allowed, st.beta_min, np.inf).min(axis=1)
        if need.sum() > 1 + 1e-12:
            top = np.argsort(-need)[:3]
            who = ", ".join(f"{p.device_name(k)} {need[k]:.3g}" for k in top)
            msgs.append(f"the devices need bandwidth shares summing to {need.sum():.4g} > 1 to "
                        "meet "
                        f"their per-device constraints even with unlimited time (largest: {who})")
    for c in st.coupling:
        parts = _split_by_device(p, c.body - c.body.const)
        if parts is None:
            continue
        lo = hi = c.body.const
        for k, e in parts.items():
            lin, _, _ = per_option(p, e, k)
            vals = lin[st.allowed[k]] if st.allowed.size else lin
            lo, hi = lo + vals.min(), hi + vals.max()
        const = c.body.const
        if lo > c.ub + 1e-9 and c.flipped:  # written e >= v, stored v - e <= 0: show it so
            msgs.append(f"{c.label}: the largest possible value over all devices' options is "
                        f"{const - lo:.4g}, below the limit {const - c.ub:.4g}")
        elif lo > c.ub + 1e-9:
            msgs.append(f"{c.label}: the least possible value over all devices' options is "
                        f"{lo - const:.4g}, above the limit {c.ub - const:.4g}")
        if hi < c.lb - 1e-9:
            msgs.append(f"{c.label}: the largest possible value over all devices' options is "
                        f"{hi - const:.4g}, below the limit {c.lb - const:.4g}")
    msgs += _share_bounds(p)
    if not msgs:
        msgs += _devices_alone(p)
    if not msgs:
        names = [c.name or "(unnamed)" for c in p.constraints if not c.name.startswith("tie:")]
        held = f"the constraints {names[:6]}" if names else "the options left to each device"
        msgs.append(f"each device alone has feasible options, but {held} and the share budgets "
                    "(bandwidth and server shares summing to at most 1) cannot all hold together")
    return "no plan exists: " + "; ".join(msgs)


def _share_bounds(p: Problem) -> list[str]:
    """Share lower bounds (``p.bandwidth.bound`` / ``fix``) that sum above the budget of 1."""
    out = []
    n = p.n_devices
    for var in (p.bandwidth, p.server_share):
        if var is None:
            continue
        lo = p.col_lb[var.offset:var.offset + n]
        if lo.sum() > 1 + 1e-12:
            top = np.argsort(-lo)[:3]
            who = ", ".join(f"{p.device_name(int(k))} {lo[k]:.3g}" for k in top)
            what = "bandwidth" if var is p.bandwidth else "server"
            out.append(f"the least {what} shares set by bound/fix sum to {lo.sum():.4g} > 1 "
                       f"(largest: {who})")
    return out


def _devices_alone(p: Problem) -> list[str]:
    """Per-device rows no option meets even with the whole band and the whole server.

    These are rows the fast presolve did not take (e.g. a deadline with a server-share term).
    """
    from splitopt.solving.explain import explain_device
    from splitopt.solving.structure import device_of

    out = []
    for c in p.constraints:
        k = device_of(p, c.body)
        if k is None or k < 0:
            continue
        lin, qb, qp = per_option(p, c.body, k)
        full = lin + qb + qp  # every share at 1: the least each option can give
        cand = p.allowed[k]
        if cand.any() and np.all((full[cand] > c.ub + 1e-9) | (full[cand] < c.lb - 1e-9)):
            out.append(explain_device(p, k, c, lin + qp, qb, cand))
    return out
