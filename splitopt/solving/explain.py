"""Infeasibility explained: which device, which constraint, and how far off the best option is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from splitopt.model.expr import Constraint

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


def _what(p: Problem, k: int, lin: np.ndarray) -> tuple[str, float, str]:
    """(what the constraint measures, scale, unit) by matching the coefficients to a known cost."""
    o = p.options
    known = (("memory", o.mem, 1e6, "MB"), ("bytes sent", o.comm, 1e6, "MB"),
             ("energy", o.e_comp, 1.0, "J"), ("round time", o.a_dev, 1.0, "s"))
    for name, arr, scale, unit in known:
        if np.allclose(lin - lin[0] + arr[k][0], arr[k], rtol=1e-9, atol=0) and np.any(arr[k]):
            return name, scale, unit
    return "value", 1.0, ""


def option_label(p: Problem, o: int) -> str:
    """'cut <boundary> at batch b' for option o."""
    c, b = int(p.options.cut[o]), int(p.options.batch[o])
    if c < 0:
        return "not selected"
    side = p.table.sets()[c]
    if len(side) == len(p.table.graph):
        where = "FL mode (whole model)"
    else:
        bnd = p.table.graph.boundary(side)
        where = f"cut {','.join(bnd[:3]) or '(inputs only)'}"
    return where + (f" at batch {b}" if len(p.batches) > 1 else "")


def explain_device(p: Problem, k: int, c: Constraint, lin: np.ndarray, qb: np.ndarray,
                   allowed: np.ndarray) -> str:
    """Say why device k has no option left under constraint c."""
    name = p.device_name(k)
    cname = f" ({c.name})" if c.name else ""
    what, scale, unit = _what(p, k, lin - c.body.const)
    cand = np.flatnonzero(allowed)
    vals = lin[cand] - c.body.const
    best = cand[np.argmin(vals)]
    batch = f" at batch {p.batches[0]}" if len(p.batches) == 1 else ""
    if np.any(qb[cand] > 0):
        limit = (c.ub - c.body.const) / scale
        return (f"device {name}{cname}: no option meets {what} <= {limit:.4g}"
                f" {unit} even with the whole band; the best, {option_label(p, best)}, needs "
                f"{(lin[best] - c.body.const + qb[best]) / scale:.4g} {unit}").strip()
    bound = c.ub - c.body.const if c.ub < np.inf else c.lb - c.body.const
    rel = "fits" if c.ub < np.inf else "reaches"
    if c.ub == np.inf:
        best = cand[np.argmax(vals)]
    return (f"device {name}{cname}: no cut {rel} {bound / scale:.4g} {unit}{batch}; "
            f"the {'smallest' if c.ub < np.inf else 'largest'} needs "
            f"{(lin[best] - c.body.const) / scale:.4g} {unit} at {option_label(p, best)}")
