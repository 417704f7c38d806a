"""Plans: what each device does, frozen, with predicted costs under the reference model.

Every solver path (max-flow partitioning, the builder's MILP / structured paths, baselines) returns
a :class:`Plan`; :func:`evaluate` prices any plan under the reference cost model, so all paths are
compared on the same scale. JSON format: docs/formats.md.
"""

from __future__ import annotations

import json
import math
import numbers
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

from splitopt import limits
from splitopt.costs import Phases, check_bandwidth, device_phases, round_latency, server_shares
from splitopt.errors import MISSING, InputError, only_fields, parse_json, read_text_file
from splitopt.io import atomic_write
from splitopt.scenario import Scenario
from splitopt.system import link_of

PLAN_FORMAT = "splitopt.plan"
PLAN_VERSION = 1
_PLAN_FIELDS = ("format", "version", "method", "status", "objective", "bound", "gap", "rounds",
                "devices", "meta", "predicted")
_DEVICE_FIELDS = ("device", "mode", "selected", "bandwidth_share", "server_share", "batch_size",
                  "device_side", "cut")

_PLAN_ROUNDS = limits.Range(0.0, float(limits.ROUNDS.hi), lo_open=True, inf_ok=True)

Mode = Literal["split", "fl"]


@dataclass(frozen=True)
class DevicePlan:
    """One device's decisions.

    Attributes
    ----------
    device
        The device's name in the scenario.
    device_side
        Names of the nodes the device runs (predecessor-closed, holding the inputs).
    bandwidth_share
        Share beta of the up- and downlink band, in (0, 1].
    server_share
        Share phi of the server's compute, in (0, 1]; None (not planned): what the scenario's
        ``server.serving`` gives (shared: an equal part of what planned shares leave; sequential
        or dedicated: the whole server; costs.server_shares).
    batch_size
        Samples per iteration (None: the scenario's training batch size).
    mode
        ``"split"``, or ``"fl"`` (whole model local; device_side is then every node).
    selected
        False for a device left out of the round.

    """

    device: str
    device_side: frozenset[str]
    bandwidth_share: float
    server_share: float | None = None
    batch_size: int | None = None
    mode: Mode = "split"
    selected: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise InputError("device plan .device", self.device, "a device name (a string)")
        side = self.device_side
        if (isinstance(side, (str, bytes, Mapping)) or not isinstance(side, Iterable)
                or not all(map(isinstance, side, repeat(str)))):
            raise InputError(f"device {self.device!r}.device_side", side, "a set of node names")
        object.__setattr__(self, "device_side", frozenset(side))
        for name in ("bandwidth_share", "server_share"):
            v = getattr(self, name)
            if v is None and name == "server_share":
                continue
            object.__setattr__(self, name, limits.check(f"device {self.device!r}.{name}", v,
                                                        limits.PLAN_SHARE))
        b = self.batch_size
        if isinstance(b, float) and b.is_integer() and abs(b) <= 2.0 ** 53:
            b = int(b)  # a solver's 16.0; 1e308 is left to be refused below
        if b is not None:
            if not (type(b) is int and limits.in_range(b, limits.BATCH)):
                b = limits.check(f"device {self.device!r}.batch_size", b, limits.BATCH)
            object.__setattr__(self, "batch_size", b)
        if not isinstance(self.selected, bool):
            raise InputError(f"device {self.device!r}.selected", self.selected, "true or false")
        if self.mode not in ("split", "fl"):
            raise InputError(f"device {self.device!r}.mode", self.mode, "'split' or 'fl'")


class DeviceRows(Sequence):
    """A plan's DevicePlans held as columns; each DevicePlan is made when first read.

    ``decisions`` are validated DevicePlans (their name and shares are placeholders) with what
    devices share: the device side, batch size, mode, selection; device k takes
    ``decisions[which[k]]`` under its own name ``names[k]`` and shares ``beta[k]``, ``phi[k]``
    (``phi`` None: no planned server share; ``names_checked``: the names are a Scenario's, so
    they are non-empty strings already). A fleet's plan has a few decisions, so a solver
    writes 10^4 devices as arrays (``pricing.DevicePlans``) and the guard reads them as arrays
    (``solving.verify_builder``); iterating, indexing or comparing builds the tuple of
    DevicePlans once, equal to the one a plain tuple would hold.
    """

    def __init__(self, names: Sequence[str], decisions: Sequence[DevicePlan], which: Any,
                 beta: Any, phi: Any = None, *, names_checked: bool = False):
        import numpy as np

        self.names, self.decisions = list(names), tuple(decisions)
        self.which = np.array(which, dtype=np.int64)
        self.beta = np.array(beta, dtype=float)
        self.phi = None if phi is None else np.array(phi, dtype=float)
        for arr in (self.which, self.beta, self.phi):
            if arr is not None:
                arr.flags.writeable = False  # a frozen Plan's columns
        n, hi = len(self.names), limits.PLAN_SHARE.hi
        shares = [self.beta] + ([] if self.phi is None else [self.phi])
        if not (len(self.which) == len(self.beta) == n and all(len(s) == n for s in shares)
                and set(map(type, self.decisions)) <= {DevicePlan}
                and (names_checked or (set(map(type, self.names)) <= {str}
                                       and "" not in self.names))
                and (n == 0 or 0 <= self.which.min() <= self.which.max() < len(self.decisions))
                and all(bool(np.all((s > 0) & (s <= hi))) for s in shares)):
            raise InputError("devices", f"{n} device rows", "one device name, decision index "
                             f"and share in {limits.PLAN_SHARE.text()} per device")
        self._built: tuple[DevicePlan, ...] | None = None

    def plans(self) -> tuple[DevicePlan, ...]:
        """Every DevicePlan (built on the first call, shares clipped into [1e-12, 1])."""
        if self._built is None:
            fields = [vars(d) for d in self.decisions]
            phis = [None] * len(self.names) if self.phi is None else self.phi.tolist()
            out: list[DevicePlan] = []
            new, put, add = object.__new__, object.__setattr__, out.append
            for name, j, b, f in zip(self.names, self.which.tolist(), self.beta.tolist(), phis):
                d = new(DevicePlan)  # a copy of the validated decision, new name/shares
                own = fields[j].copy()  # (a dict copy and three stores: the fastest way measured)
                own["device"], own["bandwidth_share"], own["server_share"] = name, b, f
                put(d, "__dict__", own)
                add(d)
            self._built = tuple(out)
        return self._built

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: Any) -> Any:
        return self.plans()[i]

    def __iter__(self) -> Iterator[DevicePlan]:
        return iter(self.plans())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DeviceRows):
            other = other.plans()
        return isinstance(other, tuple) and self.plans() == other

    def __hash__(self) -> int:
        return hash(self.plans())

    def __add__(self, other: Any) -> tuple:
        return self.plans() + tuple(other)

    def __radd__(self, other: Any) -> tuple:
        return tuple(other) + self.plans()

    def __repr__(self) -> str:
        return repr(self.plans())

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_built": None}  # (pickled as columns)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for arr in (self.which, self.beta, self.phi):
            if arr is not None:
                arr.flags.writeable = False


@dataclass(frozen=True)
class PlanCosts:
    """Predicted costs of a plan under the reference model."""

    per_device: Mapping[str, Phases]
    round_latency_s: float
    rounds: float
    total_delay_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary, per-device phases included."""
        return {"round_latency_s": self.round_latency_s, "rounds": self.rounds,
                "total_delay_s": self.total_delay_s,
                "per_device": {k: v.to_dict() for k, v in self.per_device.items()}}


@dataclass(frozen=True)
class Plan:
    """A complete plan: per-device decisions plus how it was found.

    ``status`` is why the solver stopped (``optimal``, ``time_limit``, ``feasible``, ...);
    ``objective`` the value found, ``bound`` the proven bound on the optimum, ``gap`` their relative
    difference; ``method`` names the path that produced it.
    """

    devices: tuple[DevicePlan, ...] | DeviceRows
    rounds: float = 1.0
    status: str = "unknown"
    objective: float | None = None
    bound: float | None = None
    method: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    predicted: PlanCosts | None = None

    def __post_init__(self) -> None:
        if isinstance(self.devices, (str, bytes, Mapping)) or not isinstance(self.devices,
                                                                            Iterable):
            raise InputError("devices", type(self.devices).__name__, "a list of DevicePlans")
        if not isinstance(self.devices, DeviceRows):  # (DeviceRows: checked when made)
            object.__setattr__(self, "devices", tuple(self.devices))
        if not isinstance(self.devices, DeviceRows) and not set(
                map(type, self.devices)) <= {DevicePlan}:  # (C speed; fleets are large)
            for i, d in enumerate(self.devices):
                if not isinstance(d, DevicePlan):
                    raise InputError(f"devices[{i}]", d, "a DevicePlan")
        object.__setattr__(self, "rounds", limits.check("rounds", self.rounds, _PLAN_ROUNDS))
        for name in ("objective", "bound"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, numbers.Real) and not isinstance(v, bool)):
                raise InputError(name, v, "a number or null")
        for name in ("status", "method"):
            if not isinstance(getattr(self, name), str):
                raise InputError(name, getattr(self, name), "a string")
        if not isinstance(self.meta, Mapping):
            raise InputError("meta", self.meta, "an object (mapping)")
        limits.check_nesting("meta", self.meta)

    @property
    def gap(self) -> float | None:
        """Relative gap |objective - bound| / |objective| (0 when proven optimal)."""
        if self.objective is None or self.bound is None:
            return None
        if self.objective == self.bound:
            return 0.0
        return abs(self.objective - self.bound) / max(abs(self.objective), 1e-300)

    def device(self, name: str) -> DevicePlan:
        """The decisions of device ``name``."""
        for d in self.devices:
            if d.device == name:
                return d
        raise InputError("device", name, f"one of {[d.device for d in self.devices][:8]}")

    def priced(self, scenario: Scenario) -> Plan:
        """A copy with ``predicted`` filled in under the reference model."""
        return replace(self, predicted=evaluate(scenario, self))

    # ------------------------------------------------------------------ JSON
    def to_dict(self, scenario: Scenario | None = None) -> dict[str, Any]:
        """The plan document of docs/formats.md (``scenario`` adds cut names and predictions)."""
        pred = self.predicted or (evaluate(scenario, self) if scenario else None)
        devs = []
        for d in self.devices:
            entry: dict[str, Any] = {
                "device": d.device, "mode": d.mode, "selected": d.selected,
                "bandwidth_share": d.bandwidth_share, "server_share": d.server_share,
                "batch_size": d.batch_size, "device_side": sorted(d.device_side)}
            if scenario is not None:
                entry["cut"] = scenario.graph.boundary(d.device_side)
            devs.append(entry)
        doc: dict[str, Any] = {"format": PLAN_FORMAT, "version": 1, "method": self.method,
                               "status": self.status, "objective": self.objective,
                               "bound": self.bound, "gap": self.gap, "rounds": self.rounds,
                               "devices": devs, "meta": dict(self.meta)}
        if pred is not None:
            doc["predicted"] = pred.to_dict()
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Plan:
        """Read a plan document (predictions are recomputed, not trusted)."""
        if not isinstance(doc, Mapping):
            raise InputError("plan document", type(doc).__name__, "a JSON object")
        if doc.get("format") != PLAN_FORMAT:
            raise InputError("format", doc.get("format", MISSING), repr(PLAN_FORMAT))
        only_fields("plan", doc, _PLAN_FIELDS)
        version = doc.get("version", PLAN_VERSION)
        if type(version) is not int or version != PLAN_VERSION:
            raise InputError("version", version, f"{PLAN_VERSION} (this splitopt reads plan "
                             f"format version {PLAN_VERSION})")
        if not isinstance(doc.get("devices"), list):
            raise InputError("devices", doc.get("devices", MISSING), "a list of device plans")
        devs = []
        for i, d in enumerate(doc["devices"]):
            if not isinstance(d, Mapping):
                raise InputError(f"devices[{i}]", d, "a device plan object")
            only_fields(f"devices[{i}]", d, _DEVICE_FIELDS)
            for key in ("device", "device_side", "bandwidth_share"):
                if key not in d:
                    raise InputError(f"devices[{i}].{key}", MISSING, "a required field",
                                     "See docs/formats.md.")
            side = d["device_side"]
            if not isinstance(side, list) or not all(isinstance(n, str) for n in side):
                raise InputError(f"devices[{i}].device_side", side, "a list of node names")
            batch = d.get("batch_size")
            if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)):
                raise InputError(f"devices[{i}].batch_size", batch,
                                 f"null or {limits.BATCH.text()}")
            devs.append(DevicePlan(d["device"], frozenset(side), d["bandwidth_share"],
                                   d.get("server_share"), batch,
                                   d.get("mode", "split"), d.get("selected", True)))
        return cls(tuple(devs), doc.get("rounds", 1.0), doc.get("status", "unknown"),
                   doc.get("objective"), doc.get("bound"), doc.get("method", ""),
                   {} if doc.get("meta") is None else doc["meta"])

    def save(self, path: str | Path, scenario: Scenario | None = None) -> None:
        """Write the plan JSON (atomically: a reader sees the old file or the new one)."""
        atomic_write(path, json.dumps(self.to_dict(scenario), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan JSON file."""
        text = read_text_file(path, "plan file", "an existing JSON file")
        return cls.from_dict(parse_json(text, "plan file", path))


def evaluate(scenario: Scenario, plan: Plan) -> PlanCosts:
    """Price a plan under the reference cost model (docs/cost_model.md), device by device.

    Checks that every device of the plan exists, that its set is a valid split, and that bandwidth
    and server shares of the selected devices sum to at most 1.
    """
    if not isinstance(scenario, Scenario):
        raise InputError("scenario", type(scenario).__name__, "a splitopt Scenario")
    if not isinstance(plan, Plan):
        raise InputError("plan", type(plan).__name__, "a splitopt Plan")
    g, tr = scenario.graph, scenario.training
    names = [d.device for d in plan.devices]
    try:  # linear in the fleet size (list.count made 10^4 devices take 9 s)
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
    except TypeError:  # an unhashable name: found and reported below
        dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError("plan devices", dup, "each device at most once in a plan")
    chosen = [d for d in plan.devices if d.selected]
    modes = [d.mode for d in chosen]
    serving = scenario.server.serving
    check_bandwidth(tr.schedule, serving, [d.bandwidth_share for d in chosen], modes)
    phis = server_shares(serving, tr.schedule, [d.server_share for d in chosen], modes)
    phases: dict[str, Phases] = {}
    for d, phi in zip(chosen, phis):
        dev = scenario.device(d.device)
        side = frozenset(g.names) if d.mode == "fl" else g.check_split(
            d.device_side, labels_on_device=tr.labels == "device")
        phases[d.device] = device_phases(g, side, dev, scenario.server,
                                         link_of(dev, scenario.channel, d.bandwidth_share), tr,
                                         batch=d.batch_size, server_share=phi)
        if not math.isfinite(phases[d.device].round_s):
            # every figure is in range (limits.py), so only a vanishing share gets here
            raise InputError(f"device {d.device!r}.bandwidth_share / server_share",
                             (d.bandwidth_share, d.server_share),
                             "shares large enough for a finite round time",
                             "A share this small makes the transfer or compute time overflow.")
    latency = round_latency([p.round_s for p in phases.values()], modes, tr.schedule,
                            serving) if chosen else 0.0
    rounds = float(plan.rounds)
    total = latency * rounds if math.isfinite(rounds) else math.inf
    return PlanCosts(phases, latency, rounds, total)


def uniform_plan(scenario: Scenario, device_sides: Sequence[frozenset[str]] | frozenset[str], *,
                 method: str = "uniform") -> Plan:
    """Equal bandwidth shares and the given device-side set(s); a naive baseline and a test aid.

    ``device_sides`` is one set of node names for every device, or one set per device.
    """
    if not isinstance(scenario, Scenario):
        raise InputError("scenario", type(scenario).__name__, "a splitopt Scenario")
    n = scenario.n_devices
    if isinstance(device_sides, (str, bytes, Mapping)) or not isinstance(device_sides, Iterable):
        raise InputError("device_sides", type(device_sides).__name__, "a set of node names, or "
                         f"a list of {n} sets (one per device)")
    if isinstance(device_sides, (set, frozenset)):
        sides = [frozenset(device_sides)] * n
    else:
        given = list(device_sides)
        bad = any(isinstance(s, str) or not isinstance(s, Iterable) for s in given)
        sides = [] if bad else [frozenset(s) for s in given]
        if bad or len(sides) != n:
            raise InputError("device_sides", f"{len(sides)} entries", f"one set of node names, or "
                             f"a list of {n} sets (one per device)")
    devs = tuple(DevicePlan(d.name, s, 1.0 / n)
                 for d, s in zip(scenario.devices, sides, strict=True))
    return Plan(devs, rounds=scenario.training.rounds, method=method).priced(scenario)
