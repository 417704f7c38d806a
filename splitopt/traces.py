"""Link traces: each device's link rate over time, and re-planning as the trace unfolds.

A trace gives, per device, piecewise-constant uplink and downlink rates in bit/s at the whole band
(what the device would get with bandwidth share 1): from time ``time_s[i]`` until the next entry
the rates are ``up_bps[i]``, ``dn_bps[i]``. In the reference model a device's rate at share beta
is beta * B * s, so a rate r at the whole band is the spectral efficiency s = r / B
(docs/cost_model.md): a trace step is one :meth:`splitopt.Planner.update` of ``spectral_eff_up`` and
``spectral_eff_dn``.

Sources: :func:`steps` (given change points), :func:`random_walk` (a seeded multiplicative walk
within bounds), :meth:`FleetTrace.load` (a recorded trace: the JSON or CSV formats of
docs/formats.md, "Link traces"). The scenario itself is unchanged: a trace is passed beside it to
:class:`TraceReplanner`, which a runner asks for the plan before each round.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitopt.errors import MISSING, InputError, read_text_file

TRACE_FORMAT = "splitopt.link-trace"
CSV_HEADER = ("time_s", "device", "up_bps", "dn_bps")


@dataclass(frozen=True)
class LinkTrace:
    """One device's rates over time (bit/s at the whole band), piecewise constant."""

    device: str
    time_s: tuple[float, ...]
    up_bps: tuple[float, ...]
    dn_bps: tuple[float, ...]

    def __post_init__(self) -> None:
        where = f"trace[{self.device!r}]"
        if not isinstance(self.device, str) or not self.device:
            raise InputError("trace device", self.device, "a device name")
        n = len(self.time_s)
        if n == 0 or len(self.up_bps) != n or len(self.dn_bps) != n:
            raise InputError(f"{where} lengths", (n, len(self.up_bps), len(self.dn_bps)),
                             "as many rates up and down as times, at least one")
        for name in ("time_s", "up_bps", "dn_bps"):
            vals = getattr(self, name)
            if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals):
                raise InputError(f"{where}.{name}", list(vals)[:5], "numbers")
            object.__setattr__(self, name, tuple(float(v) for v in vals))
        t = np.asarray(self.time_s)
        if not (np.all(np.isfinite(t)) and t[0] >= 0 and np.all(np.diff(t) > 0)):
            raise InputError(f"{where}.time_s", list(self.time_s)[:5],
                             "finite seconds >= 0, strictly increasing")
        for name in ("up_bps", "dn_bps"):
            r = np.asarray(getattr(self, name))
            if not np.all(np.isfinite(r) & (r > 0)):
                raise InputError(f"{where}.{name}", list(getattr(self, name))[:5],
                                 "finite rates > 0 in bit/s")

    def at(self, t: float) -> tuple[float, float]:
        """(up, down) bit/s at time t (the first entry before the trace starts)."""
        i = max(int(np.searchsorted(self.time_s, t, side="right")) - 1, 0)
        return self.up_bps[i], self.dn_bps[i]


def steps(device: str, time_s: Sequence[float], up_bps: Sequence[float],
          dn_bps: Sequence[float] | None = None) -> LinkTrace:
    """A trace that changes at the given times (downlink = uplink when not given)."""
    return LinkTrace(device, tuple(time_s), tuple(up_bps), tuple(up_bps if dn_bps is None
                                                                 else dn_bps))


def random_walk(device: str, start_bps: float, *, duration_s: float, step_s: float,
                sigma: float = 0.2, low_bps: float | None = None, high_bps: float | None = None,
                seed: int = 0) -> LinkTrace:
    """A seeded multiplicative random walk of the rate (up and down alike).

    Every ``step_s`` the rate is multiplied by exp(N(0, sigma^2)) and clipped to [low, high]
    (default start / 10, start * 10).
    """
    for name, v in (("start_bps", start_bps), ("duration_s", duration_s), ("step_s", step_s)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InputError(name, v, "a finite number > 0")
    if not (isinstance(sigma, (int, float)) and 0 <= sigma < 10):
        raise InputError("sigma", sigma, "a number in [0, 10)")
    lo = start_bps / 10 if low_bps is None else low_bps
    hi = start_bps * 10 if high_bps is None else high_bps
    if not 0 < lo <= hi:
        raise InputError("low_bps/high_bps", (lo, hi), "0 < low <= high")
    n = int(duration_s // step_s) + 1
    rng = np.random.default_rng(seed)
    walk = start_bps * np.exp(np.cumsum(np.r_[0.0, rng.normal(0.0, sigma, n - 1)]))
    rates = np.clip(walk, lo, hi)
    times = (np.arange(n) * float(step_s)).tolist()
    return LinkTrace(device, tuple(times), tuple(rates.tolist()), tuple(rates.tolist()))


@dataclass(frozen=True)
class FleetTrace:
    """Link traces by device name (devices without a trace keep their scenario's link)."""

    traces: Mapping[str, LinkTrace]

    def __post_init__(self) -> None:
        for name, tr in self.traces.items():
            if not isinstance(tr, LinkTrace) or tr.device != name:
                raise InputError(f"traces[{name!r}]", type(tr).__name__,
                                 "the LinkTrace of that device")

    @classmethod
    def of(cls, traces: Iterable[LinkTrace]) -> FleetTrace:
        """From LinkTrace objects (one per device)."""
        out: dict[str, LinkTrace] = {}
        for tr in traces:
            if tr.device in out:
                raise InputError("traces", tr.device, "one trace per device")
            out[tr.device] = tr
        return cls(out)

    def changes(self, t0: float, t1: float) -> list[tuple[float, str, float, float]]:
        """(time, device, up, down) of every step in (t0, t1], in time order."""
        ev = [(t, name, u, d) for name, tr in self.traces.items()
              for t, u, d in zip(tr.time_s, tr.up_bps, tr.dn_bps) if t0 < t <= t1]
        return sorted(ev)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The JSON document of docs/formats.md."""
        return {"format": TRACE_FORMAT, "version": 1,
                "devices": {n: {"time_s": list(t.time_s), "up_bps": list(t.up_bps),
                                "dn_bps": list(t.dn_bps)} for n, t in self.traces.items()}}

    @classmethod
    def from_dict(cls, doc: Any) -> FleetTrace:
        """Read the JSON document (see :meth:`to_dict`)."""
        if not isinstance(doc, Mapping) or doc.get("format") != TRACE_FORMAT:
            got = doc.get("format", MISSING) if isinstance(doc, Mapping) else type(doc).__name__
            raise InputError("format", got, repr(TRACE_FORMAT))
        if doc.get("version", 1) != 1:
            raise InputError("version", doc.get("version"), "1")
        devs = doc.get("devices")
        if not isinstance(devs, Mapping) or not devs:
            raise InputError("devices", devs, "an object: device name -> its trace")
        out = []
        for name, tr in devs.items():
            if not isinstance(tr, Mapping) or any(k not in tr for k in ("time_s", "up_bps")):
                raise InputError(f"devices[{name!r}]", tr, "an object with time_s, up_bps "
                                 "(and dn_bps) lists")
            out.append(steps(name, _list(tr, "time_s", name), _list(tr, "up_bps", name),
                             _list(tr, "dn_bps", name) if "dn_bps" in tr else None))
        return cls.of(out)

    @classmethod
    def from_csv(cls, text: str) -> FleetTrace:
        """Read the CSV format: header ``time_s,device,up_bps,dn_bps``, one row per step."""
        rows = list(csv.reader(io.StringIO(text)))
        rows = [r for r in rows if r and not r[0].lstrip().startswith("#")]
        if not rows or tuple(c.strip() for c in rows[0]) != CSV_HEADER:
            raise InputError("trace CSV header", rows[0] if rows else None, ",".join(CSV_HEADER))
        per: dict[str, list[tuple[float, float, float]]] = {}
        for i, r in enumerate(rows[1:], start=2):
            try:
                t, name, up, dn = r
                per.setdefault(name.strip(), []).append((float(t), float(up), float(dn)))
            except ValueError:
                raise InputError(f"trace CSV row {i}", ",".join(r),
                                 "time_s,device,up_bps,dn_bps with numbers") from None
        return cls.of(steps(n, *zip(*sorted(v))) for n, v in per.items())

    @classmethod
    def load(cls, path: str | Path) -> FleetTrace:
        """Read a ``.json`` or ``.csv`` trace file."""
        text = read_text_file(path, "trace file", "an existing .json or .csv file")
        if str(path).endswith(".csv"):
            return cls.from_csv(text)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError("trace file", str(path), "valid JSON", str(err)) from None
        return cls.from_dict(doc)

    def save(self, path: str | Path) -> None:
        """Write the JSON document (atomically)."""
        from splitopt.io import atomic_write

        atomic_write(path, json.dumps(self.to_dict(), indent=1))


def _list(tr: Mapping[str, Any], key: str, name: str) -> list[float]:
    v = tr[key]
    if not isinstance(v, list):
        raise InputError(f"devices[{name!r}].{key}", v, "a list of numbers")
    return v


def moved_devices(old: Any, new: Any) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Devices whose device-side set differs between two plans: {name: (old side, new side)}.

    What a runner re-splits between rounds (layers and their optimiser state move between device
    and server); devices whose shares alone changed keep their split model.
    """
    before = {d.device: d.device_side for d in old.devices}
    return {d.device: (before[d.device], d.device_side) for d in new.devices
            if d.device in before and before[d.device] != d.device_side}


class TraceReplanner:
    """Keeps a :class:`~splitopt.Planner` in step with a :class:`FleetTrace`.

    ``at(t)`` applies every trace step up to time t (spectral efficiency = rate / band) as one
    ``Planner.update_many`` and returns the current exact Result; a runner calls it between
    rounds with the elapsed time and re-splits the devices :func:`moved_devices` names.
    """

    def __init__(self, planner: Any, trace: FleetTrace, *, start_s: float = 0.0):
        unknown = sorted(set(trace.traces) - {d.name for d in planner.scenario.devices})
        if unknown:
            raise InputError("trace devices", unknown[:5], "devices of the planner's scenario")
        self.planner, self.trace, self.now = planner, trace, -math.inf
        self.replans = 0
        self.result = planner.result if planner.result is not None else planner.solve()
        self.at(start_s)

    def at(self, t: float) -> Any:
        """The exact Result for the links at time t (re-planned only if a link changed)."""
        if not t >= self.now:
            raise InputError("time", t, f"a time >= the last one asked ({self.now})")
        latest: dict[str, tuple[float, float]] = {}
        for _, name, up, dn in self.trace.changes(self.now, t):
            latest[name] = (up, dn)
        ch = self.planner.scenario.channel
        changes = {}
        for name, (up, dn) in latest.items():
            dev = self.planner.scenario.device(name)
            s_up, s_dn = up / ch.bandwidth_up_hz, dn / ch.bandwidth_dn_hz
            if (s_up, s_dn) != (dev.spectral_eff_up, dev.spectral_eff_dn):
                changes[name] = {"spectral_eff_up": s_up, "spectral_eff_dn": s_dn,
                                 "snr_db": None}
        if changes:  # every device that changed since the last call, in one re-plan
            self.result = self.planner.update_many(changes)
            self.replans += 1
        self.now = t
        return self.result
