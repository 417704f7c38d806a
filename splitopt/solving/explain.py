"""Infeasibility explained: which device, which constraint, and how far off the best option is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from splitopt.model.expr import Constraint

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


def _what(p: Problem, k: int, lin: np.ndarray) -> tuple[str, float, str]:
    """(what the constraint measures, scale, unit) by matching the coefficients to a known cost.

    ``lin`` is the expression's per-option value without its constant; "value" when unknown.
    """
    o = p.options
    known = (("memory", o.mem, 1e6, "MB"), ("bytes sent", o.comm, 1e6, "MB"),
             ("energy", o.e_comp, 1.0, "J"), ("round time", o.a_dev + o.a_srv, 1.0, "s"),
             ("round time", o.a_dev, 1.0, "s"),
             ("batch size", np.broadcast_to(o.batch, o.mem.shape), 1.0, "samples"))
    for name, arr, scale, unit in known:
        if np.any(arr[k]) and np.allclose(lin - lin[0] + arr[k][0], arr[k], rtol=1e-9, atol=0):
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
    """Say why device k has no option left under constraint c (as the user wrote it).

    A ``>=`` constraint is stored negated (``b - a <= 0``); it is shown as written: "no cut
    reaches batch size >= 64; the largest is 32".
    """
    name = p.device_name(k)
    where = f"device {name} ({c.name or 'an unnamed constraint'})"
    sign = -1.0 if c.flipped else 1.0
    vals_all = sign * (lin - c.body.const)  # the written expression's value, per option
    what, scale, unit = _what(p, k, vals_all)
    u = f" {unit}" if unit else ""
    cand = np.flatnonzero(allowed)
    vals = vals_all[cand]
    batch = f" at batch {p.batches[0]}" if len(p.batches) == 1 else ""
    upper = None if c.flipped or c.ub == np.inf else c.ub - c.body.const
    lower = c.body.const - c.ub if c.flipped else (
        None if c.lb == -np.inf else c.lb - c.body.const)
    if np.any(qb[cand] > 0) and upper is not None:
        best = cand[np.argmin(vals + qb[cand])]
        return (f"{where}: no option meets {what} <= {upper / scale:.4g}{u} even with the whole "
                f"band and server; the best, {option_label(p, best)}, needs "
                f"{(vals_all[best] + qb[best]) / scale:.4g}{u}")
    if upper is not None and vals.min() > upper + 1e-9 * max(1.0, abs(upper)):
        best = cand[np.argmin(vals)]
        return (f"{where}: no cut fits {what} <= {upper / scale:.4g}{u}{batch}; the smallest needs "
                f"{vals_all[best] / scale:.4g}{u} at {option_label(p, best)}")
    best = cand[np.argmax(vals)]
    low = -np.inf if lower is None else lower
    return (f"{where}: no cut reaches {what} >= {low / scale:.4g}{u}{batch}; the largest is "
            f"{vals_all[best] / scale:.4g}{u} at {option_label(p, best)}")
