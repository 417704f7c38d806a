"""The in-process runner: every device and the server in one process.

Compute is timed for real (``time.perf_counter`` around device forward/backward and server
forward/backward, optimiser steps included); transfers are priced on a simulated clock from the
plan's rates, ``8 * bytes / rate`` with the rates of :func:`splitopt.system.link_of` at the
device's bandwidth share, using the bytes of the tensors actually exchanged.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from splitopt.execute.job import Job
from splitopt.execute.loop import (
    DeviceRound,
    RoundRecord,
    mean_loss,
    round_latency,
    run_rounds,
    stamp,
)
from splitopt.execute.modes import (
    Collect,
    Event,
    ServerStep,
    Step,
    Sync,
    priced_server_shares,
    server_schedule,
)
from splitopt.execute.workers import DeviceWorker, ServerWorker, State, evaluate, load_into
from splitopt.system import Link, link_of


def nbytes(tensors: Any) -> int:
    """Bytes of a tensor, a sequence of tensors or a state dict."""
    if isinstance(tensors, torch.Tensor):
        return tensors.numel() * tensors.element_size()
    if isinstance(tensors, Mapping):
        tensors = tensors.values()
    return sum(nbytes(t) for t in tensors)


@dataclass
class RunResult:
    """What a run returns: the history, the final weights and how it ran."""

    history: list[RoundRecord]
    final_state: dict[str, Any]
    runner: str
    initial_test: tuple[float, float] = (float("nan"), float("nan"))
    failed: list[str] = field(default_factory=list)
    #: how transfers were timed: "priced" (simulated clock), "paced" (user-space pacing of real
    #: sends) or "htb" (real sends over kernel-shaped links)
    links: str = "priced"
    #: an adaptive run's re-plans (:class:`splitopt.execute.adaptive.Replan` as dictionaries)
    replans: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (weights excluded)."""
        return {"runner": self.runner, "links": self.links,
                "initial_test_loss": self.initial_test[0],
                "initial_test_accuracy": self.initial_test[1], "failed": self.failed,
                "replans": list(self.replans), "rounds": [r.to_dict() for r in self.history]}

    def to_state(self) -> dict[str, Any]:
        """Tensors and plain data only (loadable with ``torch.load(weights_only=True)``)."""
        return {**self.to_dict(), "final_state": self.final_state}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> RunResult:
        """The inverse of :meth:`to_state`."""
        return cls([RoundRecord.from_dict(r) for r in d["rounds"]], d["final_state"], d["runner"],
                   (d["initial_test_loss"], d["initial_test_accuracy"]), list(d["failed"]),
                   d["links"], list(d.get("replans", [])))


def final_state(server: ServerWorker, has_global: bool) -> dict[str, Any]:
    """The run's resulting weights.

    The global model, or (parallel SL) the server model and every device part.
    """
    if has_global:
        return {"global": {k: v.clone() for k, v in server.global_model.state_dict().items()}}
    shared = server.holders["shared"].module.state_dict()
    return {"server": {k: v.clone() for k, v in shared.items()},
            "devices": {d: dict(p) for d, p in server.parts.items()}}


def evaluate_server(server: ServerWorker, job: Job, test: Any) -> tuple[float, float]:
    """Test loss and accuracy.

    Of the global model, or (no global model) the mean over devices of each device's model
    joined with the server model.
    """
    if job.training_mode().has_global:
        return evaluate(server.global_model, test, server.loss_fn)
    scratch = copy.deepcopy(server.global_model)
    scores = []
    for d, part in server.parts.items():
        load_into(scratch, server.merged(d, part))
        scores.append(evaluate(scratch, test, server.loss_fn))
    if not scores:
        return evaluate(server.global_model, test, server.loss_fn)
    return (sum(s[0] for s in scores) / len(scores), sum(s[1] for s in scores) / len(scores))


class InProcessRunner:
    """Runs a :class:`Job` with every participant in this process (see the module docstring)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.mode = job.training_mode()
        model, ex = job.build_model()
        self.data = job.data()
        self.server = ServerWorker(job, model=copy.deepcopy(model), example_inputs=ex,
                                   data=self.data)
        self.devices = {d.device: DeviceWorker(job, d.device, model=copy.deepcopy(model),
                                               example_inputs=ex, data=self.data)
                        for d in job.devices()}
        sc = job.scenario
        self.links: dict[str, Link] = {
            d.device: link_of(sc.device(d.device), sc.channel, d.bandwidth_share)
            for d in job.devices()}
        self.modes = {k: w.mode for k, w in self.devices.items()}
        # the scenario's server serving (server.serving): a device's measured server compute is
        # divided by its share on the simulated clock; turns make the round a sum
        self.phi = priced_server_shares(sc, job.devices(), self.mode)
        self.schedule = server_schedule(sc.server.serving, self.mode)
        self.dead: list[str] = []

    # ------------------------------------------------------------------ loop backend
    def alive(self) -> list[str]:
        """Devices that have not failed."""
        return [d for d in self.devices if d not in self.dead]

    def run_round(self, rnd: int, events: list[Event]) -> RoundRecord:
        """Execute one round's events, timing compute and pricing transfers."""
        stats = {d: DeviceRound() for d in self.alive()}
        failed: list[str] = []
        agg_s = 0.0
        for ev in events:
            if isinstance(ev, Step):
                if self._fails(ev, rnd):
                    self.dead.append(ev.device)
                    failed.append(ev.device)
                elif ev.device not in self.dead:
                    self._step(ev.device, stats[ev.device])
            elif isinstance(ev, ServerStep):
                agg_s += self._timed(self.server.server_step)
            elif isinstance(ev, Sync):
                self._sync([d for d in ev.devices if d not in self.dead], stats)
            elif isinstance(ev, Collect):
                agg_s += self._collect([d for d in ev.devices if d not in self.dead], stats)
        return self._record(rnd, stats, failed, agg_s)

    def _fails(self, ev: Step, rnd: int) -> bool:
        return (ev.device not in self.dead
                and tuple(self.job.config.faults.get(ev.device, (-1, -1))) == (rnd, ev.iteration))

    @staticmethod
    def _timed(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def _step(self, d: str, st: DeviceRound) -> None:
        dev, link = self.devices[d], self.links[d]
        if dev.mode == "fl":
            t0 = stamp()
            loss = dev.local_step()
            st.add_compute("device_compute_s", t0)
        else:
            t0 = stamp()
            acts, y = dev.forward()
            st.add_compute("device_compute_s", t0)
            t1 = stamp()
            grads, loss = self.server.step(d, acts, y)
            st.add_compute("server_compute_s", t1, share=self.phi[d])
            t2 = stamp()
            mine = dev.backward(grads)  # this side's gradients of weights tied across the cut
            st.add_compute("device_compute_s", t2)
            if mine:
                t3 = stamp()
                self.server.finish_tied(d, mine)
                st.add_compute("server_compute_s", t3, share=self.phi[d])
            up, down = nbytes(acts) + nbytes(mine), nbytes(grads)
            st.up_bytes += up
            st.down_bytes += down
            st.uplink_s += 8.0 * up / link.up_bps
            st.downlink_s += 8.0 * down / link.dn_bps
        st.iterations += 1
        st.samples += dev.batch_size
        st.loss_sum += loss * dev.batch_size

    def _sync(self, devices: list[str], stats: dict[str, DeviceRound]) -> None:
        for d in devices:
            part = self.server.device_part(d)
            self.devices[d].load_part(part)
            size = nbytes(part)
            stats[d].down_bytes += size
            stats[d].aggregation_s += 8.0 * size / self.links[d].dn_bps
        self.server.sync(devices)

    def _collect(self, devices: list[str], stats: dict[str, DeviceRound]) -> float:
        parts: dict[str, State] = {d: self.devices[d].part() for d in devices}
        average = self.mode.has_global
        if average:
            for d, p in parts.items():
                size = nbytes(p)
                stats[d].up_bytes += size
                stats[d].aggregation_s += 8.0 * size / self.links[d].up_bps
        return self._timed(lambda: self.server.collect(parts, average=average))

    def _record(self, rnd: int, stats: dict[str, DeviceRound], failed: list[str],
                agg_s: float) -> RoundRecord:
        latency = round_latency(stats, self.schedule, self.modes) + agg_s
        return RoundRecord(rnd, mean_loss(stats), float("nan"), float("nan"), 0.0, latency, agg_s,
                           stats, failed)

    def evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy of the current model(s)."""
        return evaluate_server(self.server, self.job, self.data.test)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, folder: Path, rnd: int, history: list[RoundRecord]) -> None:
        """Write every live device's state, then the server's, then the manifest."""
        from splitopt.execute.checkpoint import commit, save_participant

        alive = self.alive()
        for d in alive:
            save_participant(folder, d, rnd, {"device": self.devices[d].state_dict()})
        save_participant(folder, "server", rnd, server_checkpoint(self.server, history, self.dead))
        commit(folder, rnd, ["server", *alive])

    def load_checkpoint(self, folder: Path) -> tuple[int, list[RoundRecord]]:
        """Restore every participant; returns (next round, history so far)."""
        from splitopt.execute.checkpoint import open_checkpoint

        ck = open_checkpoint(folder)
        history, self.dead = restore_server(self.server, ck.load("server"))
        for d, w in self.devices.items():
            if d not in self.dead:
                w.load_state_dict(ck.load(d)["device"])
        return ck.round + 1, history


def server_checkpoint(server: ServerWorker, history: list[RoundRecord],
                      dead: list[str]) -> dict[str, Any]:
    """The server's checkpoint state: tensors and plain data only."""
    return {"server": server.state_dict(), "history": [r.to_dict() for r in history],
            "dead": list(dead)}


def restore_server(server: ServerWorker, state: dict[str, Any]) -> tuple[list[RoundRecord],
                                                                          list[str]]:
    """Load :func:`server_checkpoint` state; returns (history, failed devices)."""
    server.load_state_dict(state["server"])
    return [RoundRecord.from_dict(r) for r in state["history"]], list(state["dead"])


def train(job: Job, *, resume: str | Path | None = None,
          on_round: Callable[[RoundRecord], None] | None = None,
          trace: Any = None, adaptive: bool = True, planner: Any = None) -> RunResult:
    """Train ``job`` in this process; ``resume`` continues from a checkpoint folder.

    ``trace`` (a :class:`~splitopt.traces.FleetTrace`): the links follow it on the simulated
    clock; ``adaptive`` re-plans between rounds (``planner``, default SFL's) and re-splits
    the devices whose cut moved (:mod:`splitopt.execute.adaptive`), else the plan is kept.
    """
    adapt = None
    if trace is not None:
        from splitopt.execute.adaptive import Adaptation

        adapt = Adaptation(job, trace, adaptive=adaptive, planner=planner)
    runner = InProcessRunner(job)
    start, history = 0, list[RoundRecord]()
    initial = runner.evaluate()
    if resume is not None:
        start, history = runner.load_checkpoint(Path(resume))
    before = None if adapt is None else (lambda rnd, t: adapt.before_round(runner, rnd, t))
    history = run_rounds(job, runner, start=start, history=history, on_round=on_round,
                         before_round=before)
    return RunResult(history, final_state(runner.server, runner.mode.has_global), "in-process",
                     initial, list(runner.dead),
                     replans=[r.to_dict() for r in adapt.replans] if adapt else [])
