"""Attach measured per-layer times (the H100 profiles in shared/data/profiles) by module name."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from splitopt.errors import InputError
from splitopt.graph import LayerGraph

ENV = "SPLITOPT_PROFILES"
FILE = "h100_layer_profiles.json"


def profiles_path(path: str | Path | None = None) -> Path:
    """Locate the measured profiles: ``path``, else ``$SPLITOPT_PROFILES``, else the shared data.

    The shared data is looked for at ``../shared/data/profiles/`` beside the repository (and
    beside the current directory).

    Raises
    ------
    InputError
        If no file is found; the message lists where it looked.

    """
    tried: list[Path] = []
    if path is not None:
        tried.append(Path(path))
    elif os.environ.get(ENV):
        tried.append(Path(os.environ[ENV]))
    else:
        repo = Path(__file__).resolve().parents[2]
        for base in (repo, Path.cwd()):
            tried.append(base.parent / "shared" / "data" / "profiles" / FILE)
    for p in tried:
        if p.is_dir():
            p = p / FILE
        if p.is_file():
            return p
    raise InputError("profiles file", [str(p) for p in tried], "an existing JSON file of "
                     "measured per-layer profiles", f"Pass path= or set {ENV}.")


def load_profile(model_name: str, *, batch: int = 32, dtype: str = "torch.float32",
                 path: str | Path | None = None) -> dict[str, Any]:
    """The measured profile of one model, batch size and dtype."""
    p = profiles_path(path)
    try:
        doc = json.loads(p.read_text())
        profiles = doc["profiles"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError("profiles file", str(p), "a JSON object with a 'profiles' list",
                         str(err)) from None
    for prof in profiles:
        if (prof.get("model"), prof.get("batch"), prof.get("dtype")) == (model_name, batch, dtype):
            return prof
    have = sorted({(q.get("model"), q.get("batch"), q.get("dtype")) for q in profiles})
    raise InputError("profile (model, batch, dtype)", (model_name, batch, dtype),
                     f"one of {have}", f"See {p}.")


def profile_times(prof: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per-sample ``(fwd_s, bwd_s)`` per node name from one measured profile.

    A layer's times are per training step at the profile's batch; a module called ``c`` times
    per step (``calls_per_step``, e.g. ResNet's shared ReLU) is split evenly over its ``c``
    calls, which the profiler names ``FQN``, ``FQN@1``, ..., ``FQN@{c-1}``. Layers without a
    forward or backward time are left out.
    """
    batch = float(prof["batch"])
    out: dict[str, tuple[float, float]] = {}
    for layer in prof["layers"]:
        if layer.get("fwd_s") is None or layer.get("bwd_s") is None:
            continue  # not measured (e.g. no backward hook fired): priced from FLOPs instead
        calls = max(1, round(float(layer.get("calls_per_step", 1))))
        f = float(layer["fwd_s"]) / batch / calls
        b = float(layer["bwd_s"]) / batch / calls
        for k in range(calls):
            out[layer["name"] if k == 0 else f"{layer['name']}@{k}"] = (f, b)
    return out


def attach_profile(graph: LayerGraph, model_name: str, *, batch: int = 32,
                   dtype: str = "torch.float32", path: str | Path | None = None,
                   device_class: str = "h100") -> LayerGraph:
    """A copy of ``graph`` carrying measured per-sample times of ``device_class``.

    Times are matched to nodes by module name. Measured layers absent from the graph are listed
    in ``meta["unmatched_times"][device_class]``; nodes of the graph without a measurement (the
    functional operations, which hooks on modules cannot time) in
    ``meta["untimed_nodes"][device_class]`` - the cost model prices those from FLOPs.
    """
    prof = load_profile(model_name, batch=batch, dtype=dtype, path=path)
    out = graph.with_times(device_class, profile_times(prof))
    untimed = [n.name for n in out.nodes
               if device_class not in n.times and n.kind not in ("input", "output")]
    out.meta.setdefault("untimed_nodes", {})[device_class] = untimed
    out.meta.setdefault("times_source", {})[device_class] = {
        "file": str(profiles_path(path)), "model": model_name, "batch": batch, "dtype": dtype,
        "device": prof.get("device", ""), "torch": prof.get("torch", "")}
    return out
