"""Node and NodeTime: one layer's per-sample costs, checked on creation; their JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from splitopt import limits
from splitopt.errors import MISSING, GraphError, only_fields

_NUMERIC = ("fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes")
#: the columns of :attr:`Node._row`: the numbers, then flags "has measured times", "kind input"
_ROW = (*_NUMERIC, "timed", "input_kind")


@dataclass(frozen=True)
class NodeTime:
    """Measured seconds per sample of one node on one device class.

    ``unmeasured_fwd_flops`` / ``unmeasured_bwd_flops`` are FLOPs of the node that the measurement
    does not cover, priced at the device's FLOP/s on top of the measured seconds. They are zero for
    a profiled node and non-zero only on a contracted block whose members are partly measured (a
    measured convolution beside an unmeasured residual add), so contraction never drops work.
    """

    fwd_s: float
    bwd_s: float
    unmeasured_fwd_flops: float = 0.0
    unmeasured_bwd_flops: float = 0.0

    def fwd_seconds(self, flops_per_s: float) -> float:
        """Forward seconds per sample on a device of ``flops_per_s``."""
        return self.fwd_s + self.unmeasured_fwd_flops / flops_per_s

    def train_seconds(self, flops_per_s: float) -> float:
        """Forward + backward seconds per sample on a device of ``flops_per_s``."""
        rest = self.unmeasured_fwd_flops + self.unmeasured_bwd_flops
        return self.fwd_s + self.bwd_s + rest / flops_per_s


@dataclass(frozen=True, eq=True)
class Node:
    """One layer or operator of a model.

    Attributes
    ----------
    name
        Unique name; for profiled models the module's fully qualified name (FQN).
    fwd_flops, bwd_flops
        FLOPs per sample of the forward and backward pass (a multiply-accumulate is 2 FLOPs).
        ``bwd_flops`` defaults to ``2 * fwd_flops`` when not given.
    out_bytes
        Bytes of the node's output tensor(s) per sample, sent once however many consumers it has.
    param_bytes
        Bytes of the node's own parameters, counted once even when tied.
    kind
        ``"input"``, ``"output"``, or the operator / module type (``"Conv2d"``, ``"add"``, ...).
    times
        Optional measured seconds per sample, keyed by device class (e.g. ``"h100"``).
    act_bytes
        Bytes per sample the node keeps on its device for the backward pass; defaults to
        ``out_bytes``. Differs only on a contracted block, which keeps every member's activation
        but sends only the tensors that leave it.

    """

    name: str
    fwd_flops: float = 0.0
    bwd_flops: float | None = None
    out_bytes: float = 0.0
    param_bytes: float = 0.0
    kind: str = "op"
    times: Mapping[str, NodeTime] = field(default_factory=dict, compare=True, hash=False)
    act_bytes: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise GraphError("node.name", self.name, "a non-empty string")
        if not isinstance(self.kind, str):
            raise GraphError(f"node {self.name!r}.kind", self.kind, "a string")
        if self.bwd_flops is None:  # checked below as "bwd_flops (2 x fwd_flops by default)"
            object.__setattr__(self, "bwd_flops", 2.0 * _number(self.name, "fwd_flops",
                                                                self.fwd_flops))
            if self.bwd_flops > limits.NODE_FLOPS.hi:
                raise GraphError(f"node {self.name!r}.bwd_flops (2 x fwd_flops by default)",
                                 self.bwd_flops, limits.NODE_FLOPS.text(),
                                 "Give bwd_flops explicitly or a smaller fwd_flops.")
        if self.act_bytes is None:
            object.__setattr__(self, "act_bytes", _number(self.name, "out_bytes", self.out_bytes))
        for attr in _NUMERIC:
            object.__setattr__(self, attr, _number(self.name, attr, getattr(self, attr)))
        if not isinstance(self.times, Mapping):
            raise GraphError(f"node {self.name!r}.times", self.times,
                             "a mapping of device class to NodeTime")
        for cls, t in self.times.items():
            if not isinstance(t, NodeTime):
                raise GraphError(f"node {self.name!r}.times[{cls!r}]", t, "a NodeTime")
            for part in ("fwd_s", "bwd_s", "unmeasured_fwd_flops", "unmeasured_bwd_flops"):
                _number(self.name, f"times[{cls!r}].{part}", getattr(t, part))
        # the node's numbers in one tuple (not a field): a graph stacks these rows into its arrays
        # in one C-level pass instead of reading seven attributes of every node
        object.__setattr__(self, "_row", _node_row(self))

    @property
    def train_flops(self) -> float:
        """Forward plus backward FLOPs per sample."""
        return self.fwd_flops + self.bwd_flops  # type: ignore[operator]


def _node_row(node: Node) -> tuple[float, ...]:
    """The :data:`_ROW` numbers of a node."""
    return (*(getattr(node, a) for a in _NUMERIC), float(bool(node.times)),
            float(node.kind == "input"))


def _number(node: str, attr: str, value: Any) -> float:
    """A node's figure, strictly a number in its range (limits.py), or a GraphError naming it."""
    rng = _RANGES.get(attr) or _RANGES[attr.rsplit(".", 1)[-1]]  # "times['c'].fwd_s"
    if limits.in_range(value, rng):
        return float(value)
    return limits.check(f"node {node!r}.{attr}", value, rng, GraphError)


_RANGES = {"fwd_flops": limits.NODE_FLOPS, "bwd_flops": limits.NODE_FLOPS,
           "out_bytes": limits.NODE_BYTES, "act_bytes": limits.NODE_BYTES,
           "param_bytes": limits.PARAM_BYTES, "fwd_s": limits.NODE_SECONDS,
           "bwd_s": limits.NODE_SECONDS, "unmeasured_fwd_flops": limits.NODE_FLOPS,
           "unmeasured_bwd_flops": limits.NODE_FLOPS}


def _time_to_dict(t: NodeTime) -> dict[str, float]:
    d = {"fwd_s": t.fwd_s, "bwd_s": t.bwd_s}
    if t.unmeasured_fwd_flops or t.unmeasured_bwd_flops:
        d["unmeasured_fwd_flops"] = t.unmeasured_fwd_flops
        d["unmeasured_bwd_flops"] = t.unmeasured_bwd_flops
    return d


_NODE_FIELDS = ("name", "kind", "fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes",
                "times")


def _node_from_dict(i: int, d: Any) -> Node:
    """One node of a graph document, with errors that name the node and the field."""
    if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
        raise GraphError(f"nodes[{i}].name", d, "a node object with a string 'name'")
    only_fields(f"node {d['name']!r}", d, _NODE_FIELDS, GraphError)
    for key in ("fwd_flops", "out_bytes", "param_bytes"):
        if key not in d:
            raise GraphError(f"node {d['name']!r}.{key}", MISSING, "a required field",
                             "See docs/formats.md.")
    times = d.get("times") or {}
    if not isinstance(times, Mapping):
        raise GraphError(f"node {d['name']!r}.times", times, "an object keyed by device class")
    parsed = {}
    for cls, t in times.items():
        where = f"node {d['name']!r}.times[{cls!r}]"
        if not isinstance(t, Mapping) or "fwd_s" not in t or "bwd_s" not in t:
            raise GraphError(where, t, "an object with 'fwd_s' and 'bwd_s' (seconds per sample)")
        keys = ("fwd_s", "bwd_s", "unmeasured_fwd_flops", "unmeasured_bwd_flops")
        only_fields(where, t, keys, GraphError)
        parsed[cls] = NodeTime(*(_number(d["name"], f"times[{cls!r}].{k}", t.get(k, 0.0))
                                 for k in keys))
    return Node(d["name"], d["fwd_flops"], d.get("bwd_flops"), d["out_bytes"], d["param_bytes"],
                d.get("kind", "op"), parsed, d.get("act_bytes"))
