"""Scenario = layer graph + fleet of devices + server + channel + training settings.

A Scenario is validated once (from Python or from a YAML/JSON file) and immutable afterwards;
solving never mutates it. File format: docs/formats.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from splitopt.errors import ScenarioError
from splitopt.graph import LayerGraph
from splitopt.system import Channel, Device, Server, Training


@cache
def catalog() -> dict[str, dict[str, dict[str, Any]]]:
    """The built-in device catalog (``splitopt/data/catalog.yaml``; sources in docs/catalog.md)."""
    text = resources.files("splitopt").joinpath("data/catalog.yaml").read_text()
    return yaml.safe_load(text)


def _from_catalog(kind: str, name: str) -> dict[str, Any]:
    entries = catalog()[kind]
    if name not in entries:
        raise ScenarioError(f"{kind[:-1]} catalog name", name, f"one of {sorted(entries)}")
    entry = dict(entries[name])
    entry["flops"] = float(entry.pop("peak_fp32_flops")) * float(entry.pop("utilisation"))
    entry.setdefault("device_class", name)
    return entry


def catalog_device(entry: str, name: str | None = None, **overrides: Any) -> Device:
    """A Device built from a catalog entry, e.g. ``catalog_device("jetson-nano", snr_db=10)``."""
    fields = {**_from_catalog("devices", entry), "name": name or entry, **overrides}
    return _validated(Device, fields, f"device {fields['name']!r}")


def catalog_server(entry: str, **overrides: Any) -> Server:
    """A Server built from a catalog entry, e.g. ``catalog_server("edge-h100")``."""
    return _validated(Server, {**_from_catalog("servers", entry), "name": entry, **overrides},
                      f"server {entry!r}")


def _validated(model: type[BaseModel], data: Any, where: str) -> Any:
    """Validate with pydantic and turn its error into one naming field, value and what is allowed."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(whole object)"
        value = first.get("input")
        if first["type"] == "missing":
            value = None
        raise ScenarioError(f"{where}.{loc}" if loc else where, value, first["msg"],
                            "See docs/formats.md for the scenario fields.") from None


class _DeviceEntry(BaseModel):
    """A fleet entry in a scenario file: a catalog name and/or explicit figures, and a count."""

    model_config = ConfigDict(extra="allow")
    catalog: str | None = None
    count: int = Field(default=1, ge=1)
    name: str | None = None


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
        object.__setattr__(self, "devices", tuple(self.devices))
        if not self.devices:
            raise ScenarioError("devices", [], "at least one device")
        names = [d.name for d in self.devices]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ScenarioError("devices[].name", dup, "unique device names")

    @property
    def n_devices(self) -> int:
        """Number of devices in the fleet."""
        return len(self.devices)

    def device(self, name: str) -> Device:
        """The device called ``name``."""
        for d in self.devices:
            if d.name == name:
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
                  graph: LayerGraph | None = None) -> Scenario:
        """Build from a scenario document (docs/formats.md); ``graph`` overrides ``model``."""
        if not isinstance(doc, Mapping):
            raise ScenarioError("scenario", type(doc).__name__, "a mapping (YAML/JSON object)")
        unknown = set(doc) - {"model", "devices", "server", "channel", "training", "name"}
        if unknown:
            raise ScenarioError("scenario", sorted(unknown), "the fields model, devices, server, "
                                "channel, training, name")
        for key in ("devices", "server", "channel"):
            if key not in doc:
                raise ScenarioError(key, None, "a required field of the scenario")
        if graph is None:
            if "model" not in doc:
                raise ScenarioError("model", None, "a zoo name, 'package.module:factory', or a "
                                    "graph JSON path")
            graph = resolve_model(doc["model"], base_dir)
        return cls(graph, _fleet(doc["devices"]), _server(doc["server"]),
                   _validated(Channel, doc["channel"], "channel"),
                   _validated(Training, doc.get("training") or {}, "training"))

    @classmethod
    def load(cls, path: str | Path, *, graph: LayerGraph | None = None) -> Scenario:
        """Read a YAML or JSON scenario file."""
        p = Path(path)
        if not p.is_file():
            raise ScenarioError("scenario file", str(path), "an existing YAML or JSON file")
        try:
            doc = yaml.safe_load(p.read_text())  # JSON is YAML
        except yaml.YAMLError as err:
            raise ScenarioError("scenario file", str(path), "valid YAML or JSON", str(err)) from None
        return cls.from_dict(doc, base_dir=p.parent, graph=graph)

    def to_dict(self) -> dict[str, Any]:
        """A scenario document with the graph inlined (``model`` holds the graph JSON)."""
        return {"model": self.graph.to_dict(),
                "devices": [d.model_dump(exclude_none=True, exclude={"snr_db"}) for d in self.devices],
                "server": self.server.model_dump(exclude_none=True),
                "channel": self.channel.model_dump(), "training": self.training.model_dump()}


def _fleet(entries: Any) -> list[Device]:
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise ScenarioError("devices", entries, "a non-empty list of device entries")
    fleet: list[Device] = []
    for i, raw in enumerate(entries):
        entry = _validated(_DeviceEntry, raw, f"devices[{i}]")
        extra = dict(entry.model_extra or {})
        base = _from_catalog("devices", entry.catalog) if entry.catalog else {}
        stem = entry.name or entry.catalog
        if stem is None:
            raise ScenarioError(f"devices[{i}].name", None, "a name or a catalog entry")
        for j in range(entry.count):
            name = stem if entry.count == 1 else f"{stem}-{j}"
            fleet.append(_validated(Device, {**base, **extra, "name": name}, f"devices[{i}]"))
    return fleet


def _server(raw: Any) -> Server:
    if isinstance(raw, Mapping) and "catalog" in raw:
        rest = {k: v for k, v in raw.items() if k != "catalog"}
        return catalog_server(raw["catalog"], **rest)
    return _validated(Server, raw, "server")


def resolve_model(spec: Any, base_dir: str | Path = ".") -> LayerGraph:
    """A LayerGraph from a scenario's ``model`` field.

    Accepts an inline graph document, a path to a graph JSON file, a zoo name (``resnet18``) or
    ``package.module:factory``; the last two are profiled with torch (``splitopt.profiler``).
    """
    if isinstance(spec, Mapping):
        return LayerGraph.from_dict(spec)
    if not isinstance(spec, str) or not spec:
        raise ScenarioError("model", spec, "a zoo name, 'package.module:factory' or a graph path")
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

