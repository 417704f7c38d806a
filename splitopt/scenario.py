"""Scenario = layer graph + fleet of devices + server + channel + training settings.

A Scenario is validated once (from Python or from a YAML/JSON file) and immutable afterwards;
solving never mutates it. File format: docs/formats.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from splitopt import limits
from splitopt.errors import MISSING, ScenarioError, parse_json, read_text_file
from splitopt.graph import LayerGraph
from splitopt.system import Channel, Device, Server, Training, number_in, scenario_error


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading ``1e6`` / ``2.5e-3`` as floats (YAML 1.2, JSON style).

    YAML 1.1, which PyYAML implements, makes ``1e6`` a string (it wants ``1.0e+6``); scenario
    files are full of such figures, so they are resolved as numbers here. A key given twice in
    one mapping is an error (PyYAML silently keeps the last one).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML's own error says so below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice (the first would be silently ignored)",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """Parse YAML safely, with ``1e6``-style floats (see :class:`_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_yaml(text: str, path: str = "<text>") -> Any:
    """:func:`load_yaml`, with a syntax error or a too-deep document as one ScenarioError line.

    PyYAML's own message spans several lines with a snippet and a caret; this keeps the file,
    line, column and problem on one line: ``s.yaml, line 3, column 9: mapping values are not
    allowed here``.
    """
    try:
        return load_yaml(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
        problem = err.problem or err.context or "invalid YAML"
        raise ScenarioError("scenario file", path, "valid YAML or JSON",
                            f"{where}: {problem}.") from None
    except yaml.YAMLError as err:
        raise ScenarioError("scenario file", path, "valid YAML or JSON",
                            str(err).splitlines()[0] if str(err) else None) from None
    except RecursionError:
        raise ScenarioError("scenario file", path, "YAML nested at most a few hundred levels deep",
                            "The document nests lists/mappings too deeply.") from None


@cache
def catalog() -> dict[str, dict[str, dict[str, Any]]]:
    """The built-in device catalog (``splitopt/data/catalog.yaml``; sources in docs/catalog.md)."""
    text = resources.files("splitopt").joinpath("data/catalog.yaml").read_text()
    return load_yaml(text)


def _from_catalog(kind: str, name: str, *, where: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A catalog entry as Device/Server fields: ``flops = peak_fp32_flops * utilisation``.

    ``overrides`` may replace ``peak_fp32_flops`` or ``utilisation`` before the product is taken;
    they are consumed here (the caller passes the remaining overrides to the model).
    """
    entries = catalog()[kind]
    if not isinstance(name, str) or name not in entries:
        raise ScenarioError(where or f"{kind[:-1]} catalog name", name, f"one of {sorted(entries)}",
                            "See docs/catalog.md.")
    entry = {**entries[name], **{k: v for k, v in (overrides or {}).items() if k in _RATE_KEYS}}
    if "flops" in (overrides or {}):
        entry.pop("peak_fp32_flops"), entry.pop("utilisation")
    else:
        prefix = f"{where.rsplit('.', 1)[0]}." if where else ""
        peak = limits.check(f"{prefix}peak_fp32_flops", entry.pop("peak_fp32_flops"),
                            limits.FLOP_RATE, ScenarioError)
        util = limits.check(f"{prefix}utilisation", entry.pop("utilisation"), _UTILISATION,
                            ScenarioError)
        entry["flops"] = limits.check(f"{prefix}peak_fp32_flops x utilisation", peak * util,
                                      limits.FLOP_RATE, ScenarioError)
    entry.setdefault("device_class", name)
    return entry


_RATE_KEYS = ("peak_fp32_flops", "utilisation")
_UTILISATION = limits.Range(0.0, 1.0, "fraction of the peak", lo_open=True)


def catalog_device(entry: str, name: str | None = None, **overrides: Any) -> Device:
    """A Device built from a catalog entry, e.g. ``catalog_device("jetson-nano", snr_db=10)``.

    ``overrides`` replace any Device field, or ``peak_fp32_flops`` / ``utilisation`` of the entry.
    """
    base = _from_catalog("devices", entry, overrides=overrides)
    rest = {k: v for k, v in overrides.items() if k not in _RATE_KEYS}
    fields = {**base, "name": name or entry, **rest}
    return _validated(Device, fields, f"device {fields['name']!r}")


def catalog_server(entry: str, **overrides: Any) -> Server:
    """A Server built from a catalog entry, e.g. ``catalog_server("edge-h100")``."""
    base = _from_catalog("servers", entry, overrides=overrides)
    rest = {k: v for k, v in overrides.items() if k not in _RATE_KEYS}
    return _validated(Server, {**base, "name": entry, **rest}, f"server {entry!r}")


def _validated(model: type[BaseModel], data: Any, where: str) -> Any:
    """Validate with pydantic and turn its error into one naming field, value and what is allowed.

    Pydantic's own exception never leaves this function: the first error becomes a
    :class:`ScenarioError` whose field is ``where`` plus pydantic's location.
    """
    try:
        return model.model_validate(data)
    except PydanticValidationError as err:
        raise scenario_error(err, where, model) from None


class _DeviceEntry(BaseModel):
    """A fleet entry in a scenario file: a catalog name and/or explicit figures, and a count."""

    model_config = ConfigDict(extra="allow")
    catalog: str | None = None
    count: number_in(limits.COUNT) = 1
    name: str | None = Field(default=None, min_length=1)


@dataclass(frozen=True)
class Scenario:
    """A validated planning scenario.

    Attributes
    ----------
    graph
        The model's layer graph.
    devices
        The fleet; names are unique.
    server, channel, training
        The edge server, the shared band and the training settings.

    """

    graph: LayerGraph
    devices: tuple[Device, ...]
    server: Server
    channel: Channel
    training: Training = Training()

    def __post_init__(self) -> None:
        if not isinstance(self.graph, LayerGraph):
            raise ScenarioError("graph", type(self.graph).__name__, "a splitopt LayerGraph")
        if isinstance(self.devices, Device):
            raise ScenarioError("devices", self.devices.name, "a list of Devices",
                                f"Write [{self.devices.name!r} device] (a list).")
        if isinstance(self.devices, (str, bytes, Mapping)) or not isinstance(self.devices,
                                                                            Iterable):
            raise ScenarioError("devices", type(self.devices).__name__, "a list of Devices")
        object.__setattr__(self, "devices", tuple(self.devices))
        if not self.devices:
            raise ScenarioError("devices", [], "at least one device")
        if len(self.devices) > limits.MAX_DEVICES:
            raise ScenarioError("devices", f"{len(self.devices)} devices",
                                f"at most {limits.MAX_DEVICES} devices")
        for attr, kind in (("server", Server), ("channel", Channel), ("training", Training)):
            if not isinstance(getattr(self, attr), kind):
                raise ScenarioError(attr, type(getattr(self, attr)).__name__,
                                    f"a splitopt {kind.__name__}")
        for i, d in enumerate(self.devices):
            if not isinstance(d, Device):
                raise ScenarioError(f"devices[{i}]", type(d).__name__, "a splitopt Device")
        by_name = {d.name: d for d in self.devices}
        if len(by_name) != len(self.devices):
            names = [d.name for d in self.devices]
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ScenarioError("devices[].name", dup, "unique device names")
        object.__setattr__(self, "_by_name", by_name)  # not a field: no effect on ==, repr

    @property
    def n_devices(self) -> int:
        """Number of devices in the fleet."""
        return len(self.devices)

    def device_names(self) -> list[str]:
        """The devices' names in fleet order (from the name index: no pass over the devices)."""
        return list(self._by_name)  # type: ignore[attr-defined]

    def device(self, name: str) -> Device:
        """The device called ``name``."""
        d = self._by_name.get(name) if isinstance(name, str) else None  # type: ignore[attr-defined]
        if d is not None:
            return d
        raise ScenarioError("device", name, f"one of {[d.name for d in self.devices][:8]}")

    def device_groups(self) -> list[list[int]]:
        """Indices of devices with identical figures: each group shares one cut computation."""
        groups: dict[tuple, list[int]] = {}
        for i, d in enumerate(self.devices):
            groups.setdefault(d.signature(), []).append(i)
        return list(groups.values())

    def replace(self, **changes: Any) -> Scenario:
        """A new scenario with some parts replaced (the original is untouched)."""
        fields = {"graph": self.graph, "devices": self.devices, "server": self.server,
                  "channel": self.channel, "training": self.training, **changes}
        return Scenario(**fields)

    # ------------------------------------------------------------------ files
    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, base_dir: str | Path = ".",
                  graph: LayerGraph | None = None, allow_code: bool = True) -> Scenario:
        """Build from a scenario document (docs/formats.md); ``graph`` overrides ``model``.

        ``allow_code=False`` refuses a ``package.module:factory`` model (see :meth:`load`).
        """
        if not isinstance(doc, Mapping):
            raise ScenarioError("scenario", type(doc).__name__, "a mapping (YAML/JSON object)")
        unknown = set(doc) - {"model", "devices", "server", "channel", "training", "name"}
        if unknown:
            raise ScenarioError("scenario", sorted(unknown, key=repr), "the fields model, "
                                "devices, server, channel, training, name")
        if not isinstance(doc.get("name", ""), str):
            raise ScenarioError("name", doc["name"], "a string (the scenario's name)")
        for key in ("devices", "server", "channel"):
            if key not in doc:
                raise ScenarioError(key, MISSING, "a required field of the scenario",
                                    "See docs/formats.md.")
        if graph is None:
            if "model" not in doc:
                raise ScenarioError("model", MISSING, "a zoo name, 'package.module:factory', or a "
                                    "graph JSON path")
            graph = resolve_model(doc["model"], base_dir, allow_code=allow_code)
        return cls(graph, _fleet(doc["devices"]), _server(doc["server"]),
                   _validated(Channel, doc["channel"], "channel"),
                   _validated(Training, {} if doc.get("training") is None else doc["training"],
                              "training"))

    @classmethod
    def load(cls, path: str | Path, *, graph: LayerGraph | None = None,
             allow_code: bool | None = None) -> Scenario:
        """Read a YAML or JSON scenario file.

        A file may name Python code as its model (``package.module:factory``) only with
        ``allow_code=True`` or the environment variable ``SPLITOPT_ALLOW_CODE=1``: loading a
        data file never imports and runs code by default.
        """
        text = read_text_file(path, "scenario file", "an existing YAML or JSON file",
                              ScenarioError)
        p = Path(path)
        if p.suffix.lower() == ".json":
            doc = parse_json(text, "scenario file", path, ScenarioError)
        else:
            doc = parse_yaml(text, str(path))
        if allow_code is None:
            allow_code = os.environ.get(ALLOW_CODE_ENV, "") == "1"
        return cls.from_dict(doc, base_dir=p.parent, graph=graph, allow_code=allow_code)

    def to_dict(self) -> dict[str, Any]:
        """A scenario document with the graph inlined (``model`` holds the graph JSON)."""
        return {"model": self.graph.to_dict(),
                "devices": [d.model_dump(exclude_none=True) for d in self.devices],
                "server": self.server.model_dump(exclude_none=True),
                "channel": self.channel.model_dump(), "training": self.training.model_dump()}


def _fleet(entries: Any) -> list[Device]:
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise ScenarioError("devices", entries, "a non-empty list of device entries")
    parsed = [_validated(_DeviceEntry, raw, f"devices[{i}]") for i, raw in enumerate(entries)]
    total = sum(e.count for e in parsed)  # before expanding: a huge fleet is refused at once
    if total > limits.MAX_DEVICES:
        raise ScenarioError("devices[].count", f"{total} devices in all",
                            f"at most {limits.MAX_DEVICES} devices in a scenario")
    fleet: list[Device] = []
    for i, entry in enumerate(parsed):
        extra = dict(entry.model_extra or {})
        base = {}
        if entry.catalog is not None:
            base = _from_catalog("devices", entry.catalog, where=f"devices[{i}].catalog",
                                 overrides=extra)
            extra = {k: v for k, v in extra.items() if k not in _RATE_KEYS}
        stem = entry.name or entry.catalog
        if stem is None:
            raise ScenarioError(f"devices[{i}].name", MISSING, "a name or a catalog entry")
        first = _validated(Device, {**base, **extra, "name": stem if entry.count == 1
                                    else f"{stem}-0"}, f"devices[{i}]")
        # the copies differ only by name (a validated string): no need to validate each again
        fleet.append(first)
        fleet.extend(first.model_copy(update={"name": f"{stem}-{j}"})
                     for j in range(1, entry.count))
    return fleet


def _server(raw: Any) -> Server:
    if isinstance(raw, Mapping) and "catalog" in raw:
        rest = {k: v for k, v in raw.items() if k != "catalog"}
        odd = [k for k in rest if not isinstance(k, str)]
        if odd:
            raise ScenarioError(f"server.{odd[0]!r}", rest[odd[0]], "string field names",
                                "See docs/formats.md for the scenario fields.")
        base = _from_catalog("servers", raw["catalog"], where="server.catalog", overrides=rest)
        rest = {k: v for k, v in rest.items() if k not in _RATE_KEYS}
        return _validated(Server, {**base, "name": raw["catalog"], **rest}, "server")
    return _validated(Server, raw, "server")


ALLOW_CODE_ENV = "SPLITOPT_ALLOW_CODE"
"""Set to ``1`` to let scenario files name ``package.module:factory`` code to import and run."""


def resolve_model(spec: Any, base_dir: str | Path = ".", *, allow_code: bool = True) -> LayerGraph:
    """A LayerGraph from a scenario's ``model`` field.

    Accepts an inline graph document, a path to a graph JSON file, a zoo name (``resnet18``) or
    ``package.module:factory``; the last two are profiled with torch (``splitopt.profiler``).
    With ``allow_code=False`` (a scenario read from a file) ``package.module:factory`` is refused:
    importing a module and calling a function named by a data file runs code the user never saw.
    """
    if isinstance(spec, Mapping):
        return LayerGraph.from_dict(spec)
    if not isinstance(spec, str) or not spec:
        raise ScenarioError("model", spec, "a zoo name, 'package.module:factory' or a graph path")
    if ":" in spec and not spec.endswith(".json") and not allow_code:
        raise ScenarioError("model", spec, "a zoo name, a graph JSON path or an inline graph "
                            "(a scenario file does not run Python code by default)",
                            f"If you trust this file, set {ALLOW_CODE_ENV}=1 or pass "
                            "allow_code=True to Scenario.load; or profile the model first "
                            "(splitopt profile SPEC --out graph.json) and name graph.json.")
    path = Path(base_dir) / spec
    if spec.endswith(".json"):
        if not path.is_file():
            raise ScenarioError("model", spec, "an existing graph JSON file",
                                f"No file at {path}.")
        return LayerGraph.load(path)
    from splitopt.profiler import profile_model  # torch is imported only here

    return profile_model(spec)


def default_scenario_path() -> Path:
    """Path of the built-in default scenario used by ``splitopt demo``."""
    return Path(str(resources.files("splitopt").joinpath("data/default_scenario.yaml")))

