"""Cut templates: the device and server modules of a model at a cut, captured once per cut.

Capturing costs ~0.3 s; every participant (each device, the server's per-device copies, another
process) re-binds the template's graphs to its own model instead of capturing again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from splitopt.execute.job import Job
from splitopt.execute.modes import check_tied

_TEMPLATES: dict[tuple[int, type, frozenset[str]], tuple[Any, Any]] = {}


def split_modules(model: nn.Module, example_inputs: tuple[torch.Tensor, ...],
                  side: frozenset[str], graph: Any) -> Any:
    """The device and server modules of ``model`` at ``side`` (parameters shared with ``model``).

    Capturing a model (torch.export) costs ~0.3 s, and every participant needs its own copy of
    the same cut: the first split of a cut is kept as a template and later copies re-bind its
    graphs to their own model (``fx.GraphModule(model, graph)`` takes the model's own objects).
    Re-binding falls back to a fresh split when the graph refers to objects the model lacks.
    """
    key = (id(graph), type(model), frozenset(side))
    if key in _TEMPLATES:
        template = _TEMPLATES[key][1]
        try:
            return replace(template,
                           device=fx.GraphModule(model, template.device.graph, "DevicePart"),
                           server=fx.GraphModule(model, template.server.graph, "ServerPart"))
        except AttributeError:
            pass
    from splitopt.execute.split import split_model

    sp = split_model(model, example_inputs, side, graph=graph)
    _TEMPLATES[key] = (graph, sp)  # the graph is kept alive so that its id stays unique
    return sp


def split_templates(job: Job, extra: Sequence[frozenset[str]] = ()) -> dict[frozenset[str], Any]:
    """The split of every distinct cut of ``job`` and of ``extra`` cuts.

    Picklable: handed to spawned processes.
    """
    model, ex = job.build_model()
    mode = job.training_mode()
    sides = {d.device_side for d in job.devices() if mode.device_mode(d.mode) == "split"}
    sides |= {frozenset(s) for s in extra}
    out = {s: split_modules(model, ex, s, job.scenario.graph) for s in sides}
    check_tied(job, [d.device for d in job.devices() if out.get(d.device_side) is not None
                     and out[d.device_side].tied])
    for sp in out.values():
        for gm in (sp.device, sp.server):
            # a ``torch.Tensor`` annotation on a placeholder makes GraphModule.__reduce__ fail
            # (torch 2.13: the annotation's global is a str); annotations do not change the code
            for n in gm.graph.nodes:
                n.type = None
            gm.recompile()
    return out


def install_templates(job: Job, templates: Mapping[frozenset[str], Any]) -> None:
    """Use splits made elsewhere (another process) as this process's templates for ``job``."""
    model_type = type(job.build_model()[0])
    for side, sp in templates.items():
        _TEMPLATES[(id(job.scenario.graph), model_type, frozenset(side))] = (job.scenario.graph, sp)
