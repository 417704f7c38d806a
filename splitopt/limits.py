"""The ranges every number read by splitopt must lie in, and strict checks against them.

Values enter at the boundary (a graph, scenario or plan document, or the Python constructors) and
are checked there, once, against these ranges, so that nothing downstream overflows, divides by
zero or prices a plan as ``inf``. The ranges are wide (far beyond any real device or model) and are
chosen so that the largest product the cost model forms stays finite: per-sample FLOPs (1e18) x
nodes (1e6) x batch (1e6) x local iterations (1e6) / the slowest device (1 FLOP/s) x rounds (1e9)
is 1e45 s; the most bits (8e15 per node x 1e6 nodes x 1e6 samples) over the slowest link
(1 Hz x 1e-6 bit/s/Hz) is 8e33 s. docs/formats.md lists them.

The checks are strict: ``True``, ``"2e7"`` and ``None`` are not numbers, and an integer field
refuses floats (``1.5e16`` is not a device count).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from splitopt.errors import InputError

MAX_DEVICES = 100_000
"""Most devices in one scenario, after ``count`` expansion (one fleet entry or all together)."""
MAX_NESTING = 100
"""Deepest nesting of lists/objects accepted in free-form JSON (a graph's or plan's ``meta``)."""
MAX_ITEMS = 1_000_000
"""Most values (leaves and containers) in one free-form ``meta`` object."""


@dataclass(frozen=True)
class Range:
    """A closed range ``[lo, hi]`` of a quantity; ``inf_ok`` also allows ``+inf``."""

    lo: float
    hi: float
    unit: str = ""
    integer: bool = False
    lo_open: bool = False
    inf_ok: bool = False

    def text(self) -> str:
        """E.g. ``"a number in [1, 1e21] (FLOP/s)"`` or ``"an integer in [1, 1000000]"``."""
        kind = "an integer" if self.integer else "a number"
        lo = _short(self.lo) if not self.integer else str(int(self.lo))
        hi = _short(self.hi) if not self.integer else str(int(self.hi))
        out = f"{kind} in {'(' if self.lo_open else '['}{lo}, {hi}]"
        if self.inf_ok:
            out += " or inf"
        return out + (f" ({self.unit})" if self.unit else "")


def _short(x: float) -> str:
    """``1e21`` and ``1e-6`` rather than Python's ``1e+21`` and ``1e-06``."""
    text = f"{x:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


FLOP_RATE = Range(1.0, 1e21, "FLOP/s")
BANDWIDTH = Range(1.0, 1e12, "Hz")
SPECTRAL_EFF = Range(1e-6, 1e4, "bit/s/Hz")
SNR_DB = Range(-60.0, 30_000.0, "dB")
MEMORY = Range(1.0, 1e18, "bytes", inf_ok=True)
WORKSPACE = Range(0.0, 1e18, "bytes")
POWER = Range(0.0, 1e6, "W")
BATCH = Range(1, 1_000_000, "samples", integer=True)
LOCAL_ITERS = Range(1, 1_000_000, integer=True)
ROUNDS = Range(1, 1_000_000_000, integer=True)
COUNT = Range(1, MAX_DEVICES, "devices", integer=True)
NODE_FLOPS = Range(0.0, 1e18, "FLOPs per sample")
NODE_BYTES = Range(0.0, 1e15, "bytes per sample")
PARAM_BYTES = Range(0.0, 1e15, "bytes")
NODE_SECONDS = Range(0.0, 1e6, "seconds per sample")
SHARE = Range(0.0, 1.0, lo_open=True)
PLAN_SHARE = Range(0.0, 1.0 + 1e-9, lo_open=True)
"""A planned bandwidth or server share: (0, 1], with room for a solver's rounding above 1."""
TIME_LIMIT = Range(0.0, 1e9, "seconds", lo_open=True)


def in_range(value: Any, rng: Range) -> bool:
    """Fast path for the common case: a plain float (or int) already inside ``rng``.

    Callers build their field name only when this is False, which keeps validating a 10^5-node
    graph as fast as the old unchecked ``float()``.
    """
    t = type(value)
    if t is float:
        return not rng.integer and (rng.lo < value if rng.lo_open else rng.lo <= value) \
            and value <= rng.hi
    if t is int:
        return (rng.lo < value if rng.lo_open else rng.lo <= value) and value <= rng.hi
    return False


def check(field: str, value: Any, rng: Range, error: type[InputError] = InputError) -> Any:
    """``value`` as a float (an int for an integer range), or ``error`` naming field and range.

    Strict: booleans, strings and other non-numbers are refused, and an integer range refuses
    floats. NaN, -inf and (unless ``rng.inf_ok``) +inf are outside every range.
    """
    bad_type = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if rng.integer:
        bad_type = bad_type or not isinstance(value, numbers.Integral)
    if bad_type:
        raise error(field, value, rng.text())
    if rng.integer:
        x: Any = int(value)
        ok = rng.lo <= x <= rng.hi
    else:
        try:
            x = float(value)
        except OverflowError:  # an integer beyond any float (10**400)
            raise error(field, value, rng.text()) from None
        above = x > rng.lo if rng.lo_open else x >= rng.lo
        ok = above and (x <= rng.hi or (rng.inf_ok and x == math.inf))
    if not ok:
        raise error(field, value, rng.text())
    return x


_SCALARS = frozenset({str, float, int, bool, type(None)})


def check_nesting(field: str, value: Any, error: type[InputError] = InputError, *,
                  depth: int = MAX_NESTING, items: int = MAX_ITEMS) -> None:
    """Refuse free-form JSON nested deeper than ``depth`` or holding more than ``items`` values.

    Walks iteratively (no recursion), so a 100,000-deep list gives this error, not a
    RecursionError; the item cap stops YAML aliases from making the walk exponential.
    """
    stack = [(value, 0)]
    seen = 0
    while stack:
        node, level = stack.pop()
        seen += 1
        if seen > items:
            raise error(field, f"more than {items} values", f"at most {items} values")
        if type(node) in _SCALARS:  # most values: skip the slower ABC test below
            continue
        if isinstance(node, (list, tuple, Mapping)):
            if level >= depth:
                raise error(field, f"nesting deeper than {depth}",
                            f"lists/objects nested at most {depth} deep")
            kids = node.values() if isinstance(node, Mapping) else node
            stack.extend((k, level + 1) for k in kids)
