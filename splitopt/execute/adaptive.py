"""Adaptive runs: follow a link trace, re-plan between rounds, re-split the model in place.

Before every round the runner asks an :class:`Adaptation` for the links of that moment. It reads
each traced device's rate at the elapsed time of the run (simulated seconds in the in-process
runner: the sum of the rounds' latencies) and

* **static**: keeps the job's plan (cuts and bandwidth shares); only the rates follow the trace;
* **adaptive**: asks :class:`~splitopt.traces.TraceReplanner` for the exact plan at that time
  (one ``Planner.update_many`` when a link changed), gives every device its new share, and
  re-splits the devices whose cut moved (:func:`resplit`).

A re-split moves layers between a device and its server model together with their weights and
their optimiser state (SGD momentum buffers, Adam moments and step counts), parameter by
parameter under its name. It changes where a layer runs, not what is computed: in SFL-V1 each
device's round is the chain rule of one model, split or not, and every parameter keeps its own
optimiser state, so the same data order gives the same parameters (tests/test_adaptive.py).
Modes with one server model shared by several devices (sl, sflv2, psl, hsfl) are refused: there a
layer on the server is trained by other devices too, so moving a cut changes what is trained.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from splitopt.errors import InputError
from splitopt.execute.holder import draws_random, make_optimizer
from splitopt.execute.job import Job
from splitopt.execute.templates import split_modules
from splitopt.execute.workers import DeviceWorker, ServerWorker
from splitopt.system import Link, link_of


@dataclass(frozen=True)
class Replan:
    """One device's change at one re-plan: cut (boundary layers), device layers and share."""

    round: int
    time_s: float
    device: str
    old_cut: list[str]
    new_cut: list[str]
    old_layers: int
    new_layers: int
    old_share: float
    new_share: float
    replan_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def _names_by_id(model: torch.nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def opt_state(opt: torch.optim.Optimizer | None, model: torch.nn.Module) -> dict[str, dict]:
    """The optimiser's per-parameter state by parameter name (parameters it has stepped)."""
    if opt is None:
        return {}
    names = _names_by_id(model)
    return {names[id(p)]: st for p, st in opt.state.items() if st}


def _with_state(params: list[torch.nn.Parameter], model: torch.nn.Module, job: Job,
                state: Mapping[str, dict]) -> torch.optim.Optimizer | None:
    """A fresh optimiser over ``params`` holding each parameter's state under its name."""
    opt = make_optimizer(params, job)
    if opt is not None:
        names = _names_by_id(model)
        for p in params:
            if names[id(p)] in state:
                opt.state[p] = state[names[id(p)]]
    return opt


def state_keys(job: Job) -> tuple[str, ...]:
    """The per-parameter optimiser state of the run's optimiser, in a fixed order."""
    return ("step", "exp_avg", "exp_avg_sq") if job.config.optimizer == "adam" else (
        "momentum_buffer",)


def pack_state(job: Job, state: Mapping[str, dict], names: list[str]) -> list[torch.Tensor]:
    """The optimiser state of ``names`` as a flat tensor list (empty tensors: no state yet)."""
    empty = torch.empty(0)
    return [state[n][k] if n in state and k in state[n] else empty
            for n in names for k in state_keys(job)]


def unpack_state(job: Job, tensors: list[torch.Tensor], names: list[str]) -> dict[str, dict]:
    """The inverse of :func:`pack_state`."""
    keys = state_keys(job)
    out = {}
    for i, n in enumerate(names):
        vals = tensors[i * len(keys):(i + 1) * len(keys)]
        if all(v.numel() for v in vals):
            out[n] = dict(zip(keys, vals, strict=True))
    return out


def recut_device(job: Job, device: DeviceWorker, side: frozenset[str],
                 state: Mapping[str, dict]) -> None:
    """The device's half of a re-split: its views and its optimiser (``state`` by name)."""
    sp = split_modules(device.model, device.example_inputs, side, job.scenario.graph)
    state = {**state, **opt_state(device.holder.opt, device.model)}
    device.split, device.module = sp, sp.device
    device.holder.module = sp.device
    device.holder.opt = _with_state(list(sp.device.parameters()), device.model, job, state)
    device.holder.random = draws_random(sp.device)


def recut_server(job: Job, server: ServerWorker, name: str, side: frozenset[str],
                 state: Mapping[str, dict]) -> None:
    """The server's half of a re-split for device ``name``."""
    holder = server.holder(name)
    sp = split_modules(holder.module, server.example_inputs, side, job.scenario.graph)
    state = {**state, **opt_state(holder.opt, holder.module)}
    server.views[name] = sp.server
    server.device_names[name] = list(server.part_of(sp.device))  # a tied weight once
    holder.opt = _with_state(list(sp.server.parameters()), holder.module, job, state)
    holder.random = draws_random(sp.server)


def resplit(job: Job, device: DeviceWorker, server: ServerWorker,
            side: frozenset[str]) -> None:
    """Re-cut ``device`` at ``side`` in one process: layers, weights and optimiser state move.

    The device and its server model are two copies of one model, each training one side. The
    layers that change sides take their current weights along (copied into the other copy) and
    their optimiser state (moved under the parameter's name into the other side's optimiser).
    """
    holder = server.holder(device.name)
    dev_full, srv_full = device.model, holder.module
    dev_state, srv_state = opt_state(device.holder.opt, dev_full), opt_state(holder.opt, srv_full)
    old = set(device.module.state_dict())
    recut_device(job, device, side, srv_state)
    new = set(device.module.state_dict())
    recut_server(job, server, device.name, side, dev_state)
    dev_t, srv_t = dev_full.state_dict(), srv_full.state_dict()
    with torch.no_grad():
        for n in new - old:  # server -> device
            dev_t[n].copy_(srv_t[n])
        for n in old - new:  # device -> server
            srv_t[n].copy_(dev_t[n])


def warm_up(job: Job) -> None:
    """Create and step the run's optimiser once on a scratch parameter.

    A process whose side had no parameters never built an optimiser; the first one built after
    a re-split then imports torch's compiler stack (``torch._dynamo``, seconds on a loaded
    machine) inside a measured round. A multi-process adaptive run pays that at start instead.
    """
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.zeros(1)
    opt = make_optimizer([p], job)
    assert opt is not None
    opt.step()


def check_adaptive(job: Job) -> None:
    """Refuse an adaptive run where moving a cut would change what is trained."""
    mode = job.training_mode()
    if mode.shared_server or mode.name not in ("sflv1",):
        raise InputError("mode", mode.name, "'sflv1' for an adaptive run (one server model per "
                         "device, so a cut can move without changing what is trained)",
                         "Run with --mode sflv1, or --static to keep the plan.")
    if job.config.checkpoint_every:
        raise InputError("checkpoint_every", job.config.checkpoint_every,
                         "0 in an adaptive run (checkpoints hold one cut per device)",
                         "Leave out --checkpoint-every, or run --static.")


class Adaptation:
    """Drives a runner's links from a trace and, when adaptive, re-plans between rounds.

    ``planner`` is a :class:`~splitopt.Planner` of the job's scenario (default: SFL's, the
    round-latency problem of SFL-V1 with its model aggregation); needed only when ``adaptive``.
    """

    def __init__(self, job: Job, trace: Any, *, adaptive: bool = True,
                 planner: Any = None) -> None:
        names = [d.device for d in job.devices()]
        unknown = sorted(set(trace.traces) - set(names))
        if unknown:
            raise InputError("trace devices", unknown[:5], f"devices of the plan: {names[:5]}")
        self.job, self.trace, self.adaptive = job, trace, adaptive
        self.plan = job.plan
        self.replans: list[Replan] = []
        self.follow = None
        if adaptive:
            check_adaptive(job)
            from splitopt.traces import TraceReplanner

            if planner is None:
                from splitopt.formulations.sfl import SFL
                from splitopt.planner import Planner

                planner = Planner.for_formulation(SFL(), job.scenario)
            self.follow = TraceReplanner(planner, trace)

    def candidate_sides(self) -> list[frozenset[str]]:
        """Every split device side the planner may choose (none known: an empty list).

        The multi-process launcher captures these once before the run, so that a re-split
        between rounds re-binds a captured split instead of capturing the model (~0.3 s each,
        more on a loaded machine) while the devices wait.
        """
        table = getattr(self.follow.planner, "table", None) if self.follow else None
        if table is None:
            return []
        g = self.job.scenario.graph
        sides = (g.names_of(m) for m in table.masks)
        return [s for s in sides if g.output not in s]

    def links(self, t: float) -> dict[str, Link]:
        """Every device's rates at time ``t`` at its current share."""
        sc, out = self.job.scenario, {}
        for d in self.plan.devices:
            if not d.selected:
                continue
            tr = self.trace.traces.get(d.device)
            if tr is None:
                out[d.device] = link_of(sc.device(d.device), sc.channel, d.bandwidth_share)
            else:
                up, dn = tr.at(t)
                out[d.device] = Link(d.bandwidth_share * up, d.bandwidth_share * dn)
        return out

    def advance(self, rnd: int, t: float) -> dict[str, frozenset[str]]:
        """Re-plan for time ``t`` (adaptive); returns {device: new side} of the moved cuts."""
        if self.follow is None:
            return {}
        t0 = time.perf_counter()
        plan = self.follow.at(t).plan
        replan_ms = 1e3 * (time.perf_counter() - t0)
        if plan is self.plan:
            return {}
        graph = self.job.scenario.graph
        before = {d.device: d for d in self.plan.devices}
        moved = {}
        for d in plan.devices:
            old = before.get(d.device)
            if old is None or not d.selected:
                continue
            if old.device_side != d.device_side:
                moved[d.device] = d.device_side
            elif old.bandwidth_share == d.bandwidth_share:
                continue
            self.replans.append(Replan(
                rnd, float(t), d.device, graph.boundary(old.device_side),
                graph.boundary(d.device_side), len(old.device_side), len(d.device_side),
                old.bandwidth_share, d.bandwidth_share, replan_ms))
        self.plan = plan
        return moved

    def server_shares(self, mode: Any, devices: Any) -> dict[str, float]:
        """The priced server share of each of ``devices`` under the current plan."""
        from splitopt.execute.modes import priced_server_shares

        selected = [d for d in self.plan.devices if d.selected and d.device in devices]
        return priced_server_shares(self.job.scenario, selected, mode)

    def before_round(self, runner: Any, rnd: int, elapsed_s: float) -> None:
        """Bring an in-process runner to the links, plan and cuts of time ``elapsed_s``."""
        for name, side in self.advance(rnd, elapsed_s).items():
            if name not in runner.dead:
                resplit(self.job, runner.devices[name], runner.server, side)
        runner.links.update(self.links(elapsed_s))
        runner.phi = self.server_shares(runner.mode, runner.devices)
