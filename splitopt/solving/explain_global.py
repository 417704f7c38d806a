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
        if lo > c.ub + 1e-9:
            msgs.append(f"constraint {c.name or '(unnamed)'}: the least possible value over all "
                        f"devices' options is {lo - c.body.const:.4g}, above the limit "
                        f"{c.ub - c.body.const:.4g}")
        if hi < c.lb - 1e-9:
            msgs.append(f"constraint {c.name or '(unnamed)'}: the largest possible value is "
                        f"{hi - c.body.const:.4g}, below the limit {c.lb - c.body.const:.4g}")
    if not msgs:
        names = [c.name or "(unnamed)" for c in p.constraints if not c.name.startswith("tie:")]
        msgs.append("each device alone has feasible options, but the constraints "
                    f"{names[:6]} cannot all hold together")
    return "no plan exists: " + "; ".join(msgs)
