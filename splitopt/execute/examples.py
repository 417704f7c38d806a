"""Small ready-made jobs: digits_cnn on a few devices, for tests, benchmarks and the docs."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from splitopt.execute.job import Job, RunConfig
from splitopt.graph import LayerGraph
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario
from splitopt.system import Channel, Device, Server, Training

#: device-side sets of digits_cnn: after conv1, after relu2 (inside the conv stack), after fc1
DIGITS_CUTS = {
    "conv1": ("x", "conv1"),
    "relu2": ("x", "conv1", "relu1", "conv2", "relu2"),
    "fc1": ("x", "conv1", "relu1", "conv2", "relu2", "pool", "flatten", "fc1"),
}


@cache
def digits_graph(measure: bool = False, device_class: str = "local-cpu") -> LayerGraph:
    """The profiled layer graph of ``digits_cnn`` (optionally with times measured here)."""
    import splitopt
    from splitopt import zoo

    model, ex = zoo.build("digits_cnn", batch_size=32 if measure else 1)
    return splitopt.profile(model, ex, measure=measure, device_class=device_class)


def digits_scenario(n_devices: int = 3, *, batch_size: int = 16, local_iters: int = 5,
                    bandwidth_hz: float = 1e6, snr_db: Sequence[float] | None = None,
                    graph: LayerGraph | None = None, device_class: str | None = None) -> Scenario:
    """A fleet of ``n_devices`` 1 GFLOP/s devices and a 100 GFLOP/s server on one band."""
    snr = list(snr_db) if snr_db is not None else [10.0 + 5.0 * i for i in range(n_devices)]
    devs = tuple(Device(name=f"dev{i}", flops=1e9, snr_db=snr[i], device_class=device_class)
                 for i in range(n_devices))
    return Scenario(graph or digits_graph(), devs, Server(flops=1e11, device_class=device_class),
                    Channel(bandwidth_up_hz=bandwidth_hz, bandwidth_dn_hz=bandwidth_hz),
                    Training(batch_size=batch_size, local_iters=local_iters))


def digits_plan(scenario: Scenario, cuts: Sequence[str] | None = None, *,
                batch_sizes: Sequence[int | None] | None = None,
                modes: Sequence[str] | None = None) -> Plan:
    """Equal bandwidth shares; per-device cuts named as in :data:`DIGITS_CUTS`."""
    n = scenario.n_devices
    cuts = list(cuts) if cuts is not None else [list(DIGITS_CUTS)[i % 3] for i in range(n)]
    batch_sizes = list(batch_sizes) if batch_sizes is not None else [None] * n
    modes = list(modes) if modes is not None else ["split"] * n
    names = scenario.graph.names
    devs = []
    for d, c, b, m in zip(scenario.devices, cuts, batch_sizes, modes):
        side = frozenset(names) if m == "fl" else frozenset(DIGITS_CUTS[c])
        devs.append(DevicePlan(d.name, side, 1.0 / n, batch_size=b, mode=m))  # type: ignore[arg-type]
    return Plan(tuple(devs), rounds=scenario.training.rounds, method="example")


def digits_job(n_devices: int = 3, *, mode: str = "sflv1", cuts: Sequence[str] | None = None,
               batch_sizes: Sequence[int | None] | None = None,
               modes: Sequence[str] | None = None, scenario: Scenario | None = None,
               **config: Any) -> Job:
    """A digits_cnn job; ``config`` goes to :class:`RunConfig`."""
    sc = scenario or digits_scenario(n_devices)
    return Job(digits_plan(sc, cuts, batch_sizes=batch_sizes, modes=modes), sc, "digits_cnn",
               RunConfig(mode=mode, **config))


def dropout_mlp(width: int = 32, classes: int = 4) -> tuple[Any, tuple[Any, ...]]:
    """A small MLP with dropout on 16 features, and example inputs.

    A model that draws random numbers, for the RNG-stream tests.
    """
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes))
    return model, (torch.randn(1, 16),)


def mlp_job(n_devices: int = 2, *, mode: str = "sflv1", **config: Any) -> Job:
    """A job of :func:`dropout_mlp` on synthetic data, cut after the dropout."""
    import splitopt

    spec = "splitopt.execute.examples:dropout_mlp"
    model, ex = dropout_mlp()
    graph = splitopt.profile(model, ex)
    side = graph.pred_closure([n for n in graph.names if n.startswith("2")][:1] or graph.inputs)
    sc = digits_scenario(n_devices, graph=graph)
    devs = tuple(DevicePlan(d.name, side, 1.0 / n_devices) for d in sc.devices)
    return Job(Plan(devs, method="example"), sc, spec, RunConfig(mode=mode, **config))
