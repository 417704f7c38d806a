"""The multi-process runner: one process per device plus the server, over torch.distributed (gloo).

Rank 0 is the server; ranks 1..N are the plan's selected devices in plan order. Boundary
activations, labels, gradients and model weights travel for real between processes
(:mod:`splitopt.execute.wire`), with the plan's link rates enforced by pacing. Every process walks
the same round events as the in-process runner and runs the same worker code, so with the same
seed both runners reach the same weights.

Start it with :func:`launch` (``torch.multiprocessing`` spawn, one command, free port on
127.0.0.1), or with ``torchrun`` across machines: every process calls :func:`run_rank` with
``init_method="env://"`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), e.g.
``torchrun --nproc-per-node 3 $(which splitopt) run plan.json --processes``.

A device that fails (its process dies, e.g. by the ``faults`` option, which calls ``os._exit``)
breaks its connection; the server notices on its next exchange with it, drops it, and finishes
the round with the others.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from splitopt.errors import InputError, SplitoptError
from splitopt.execute import wire
from splitopt.execute.checkpoint import load_participant, participant_file, save_participant
from splitopt.execute.job import Job
from splitopt.execute.loop import PHASES, DeviceRound, RoundRecord, run_rounds
from splitopt.execute.modes import Collect, Event, ServerStep, Step, Sync
from splitopt.execute.runner import RunResult, evaluate_server, final_state
from splitopt.execute.workers import (
    DeviceWorker,
    ServerWorker,
    install_templates,
    split_templates,
)
from splitopt.system import link_of

FAULT_EXIT = 3  #: exit status of a device process killed by fault injection
_REPORT = (*PHASES, "up_bytes", "down_bytes")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DistributedServer:
    """Rank 0: the loop backend that talks to the device processes."""

    def __init__(self, job: Job, data: Any = None) -> None:
        self.job, self.mode = job, job.training_mode()
        model, ex = job.build_model()
        self.data = data or job.data()
        self.server = ServerWorker(job, model=model, example_inputs=ex, data=self.data)
        names = [d.device for d in job.devices()]
        self.rank = {d: i + 1 for i, d in enumerate(names)}
        self.modes = {d.device: self.mode.device_mode(d.mode) for d in job.devices()}
        self.batch = {d.device: job.batch_size(d) for d in job.devices()}
        self.dead: list[str] = []

    def alive(self) -> list[str]:
        """Devices whose process is still running."""
        return [d for d in self.rank if d not in self.dead]

    def run_round(self, rnd: int, events: list[Event]) -> RoundRecord:
        """Serve one round; the round latency is its measured wall time."""
        stats = {d: DeviceRound() for d in self.alive()}
        self._failed: list[str] = []
        agg_s, t0 = 0.0, time.perf_counter()
        for ev in events:
            if isinstance(ev, ServerStep):
                t = time.perf_counter()
                self.server.server_step()
                agg_s += time.perf_counter() - t
            elif isinstance(ev, Step):
                self._guard(ev.device, lambda d=ev.device: self._step(d, stats[d]))
            elif isinstance(ev, Sync):
                self._sync(ev.devices)
            elif isinstance(ev, Collect):
                agg_s += self._collect(ev.devices)
        samples = sum(s.samples for s in stats.values())
        loss = sum(s.loss_sum for s in stats.values()) / samples if samples else float("nan")
        return RoundRecord(rnd, loss, float("nan"), float("nan"), 0.0,
                           time.perf_counter() - t0, agg_s, stats, self._failed)

    def _guard(self, device: str, exchange: Any) -> bool:
        """Run one exchange with a live device; False when it has failed (and is dropped)."""
        if device in self.dead:
            return False
        try:
            exchange()
        except RuntimeError as err:  # gloo: "Connection closed by peer" from a dead device
            if not _peer_closed(err):
                raise
            self.dead.append(device)
            self._failed.append(device)
            return False
        return True

    def _step(self, d: str, st: DeviceRound) -> None:
        r = self.rank[d]
        if self.modes[d] == "fl":
            (loss_t,), _ = wire.recv(r)
            loss = float(loss_t)
        else:
            msg, _ = wire.recv(r)
            t = time.perf_counter()
            grads, loss = self.server.step(d, msg[:-1], msg[-1])
            st.server_compute_s += time.perf_counter() - t
            wire.send(grads, r)
        st.iterations += 1
        st.samples += self.batch[d]
        st.loss_sum += loss * self.batch[d]

    def _sync(self, devices: tuple[str, ...]) -> None:
        sent = []
        for d in devices:
            part = self.server.device_part(d)
            if self._guard(d, lambda d=d, p=part: wire.send([p[n] for n in sorted(p)],
                                                            self.rank[d])):
                sent.append(d)
        self.server.sync(sent)

    def _collect(self, devices: tuple[str, ...]) -> float:
        parts: dict[str, dict[str, torch.Tensor]] = {}

        def receive(d: str) -> None:
            tensors, _ = wire.recv(self.rank[d])
            parts[d] = dict(zip(sorted(self.server.device_names[d]), tensors, strict=True))

        for d in devices:
            self._guard(d, lambda d=d: receive(d))
        t = time.perf_counter()
        self.server.collect(parts, average=self.mode.has_global)
        return time.perf_counter() - t

    def evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy of the current model(s)."""
        return evaluate_server(self.server, self.job, self.data.test)

    def save_checkpoint(self, folder: Path, rnd: int, history: list[RoundRecord]) -> None:
        """Write the server's state (each device process writes its own)."""
        save_participant(folder, "server", {"server": self.server.state_dict(), "round": rnd,
                                            "history": history, "dead": list(self.dead)})

    def collect_reports(self, history: list[RoundRecord]) -> None:
        """Receive every live device's per-round phase times and fill them into ``history``."""
        by_round = {r.round: r for r in history}
        for d in self.alive():
            try:
                (table,), _ = wire.recv(self.rank[d])
            except RuntimeError:
                continue
            for row in table.tolist():
                rec = by_round.get(int(row[0]))
                if rec is not None and d in rec.devices:
                    for field, v in zip(_REPORT, row[1:], strict=True):
                        if field != "server_compute_s":
                            setattr(rec.devices[d], field, int(v) if "bytes" in field else v)


def _peer_closed(err: RuntimeError) -> bool:
    text = str(err).lower()
    return "closed" in text or "connection reset" in text or "broken pipe" in text


def _serve(job: Job, resume: str | None, data: Any) -> RunResult:
    srv = DistributedServer(job, data)
    initial = srv.evaluate()
    start, history = 0, list[RoundRecord]()
    if resume is not None:
        state = load_participant(Path(resume), "server")
        srv.server.load_state_dict(state["server"])
        srv.dead = list(state["dead"])
        start, history = int(state["round"]) + 1, list(state["history"])
    history = run_rounds(job, srv, start=start, history=history)
    srv.collect_reports(history)
    return RunResult(history, final_state(srv.server, srv.mode.has_global), "multi-process",
                     initial, list(srv.dead))


class DeviceProcess:
    """Ranks 1..N: walk the round events that concern this device."""

    def __init__(self, job: Job, name: str, data: Any = None) -> None:
        self.job, self.name, self.mode = job, name, job.training_mode()
        self.worker = DeviceWorker(job, name, data=data)
        sc, plan = job.scenario, job.plan.device(name)
        self.link = link_of(sc.device(name), sc.channel, plan.bandwidth_share)
        self.fault = tuple(job.config.faults.get(name, (-1, -1)))
        self.stats: dict[int, DeviceRound] = {}
        self.names = sorted(self.worker.part())

    def run(self, start: int) -> None:
        """Train rounds ``start..`` then report the phase times to the server."""
        cfg, everyone = self.job.config, [d.device for d in self.job.devices()]
        for rnd in range(start, cfg.rounds):
            st = self.stats.setdefault(rnd, DeviceRound())
            for ev in self.mode.round_events(rnd, everyone, self.job.iters()):
                self._event(rnd, ev, st)
            if cfg.checkpoint_every and (rnd + 1) % cfg.checkpoint_every == 0:
                save_participant(Path(str(cfg.checkpoint_dir)), self.name,
                                 {"device": self.worker.state_dict(), "round": rnd,
                                  "stats": self.stats})
        rows = [[r, *(float(getattr(s, f)) for f in _REPORT)] for r, s in self.stats.items()]
        wire.send([torch.tensor(rows, dtype=torch.float64).reshape(-1, 1 + len(_REPORT))], 0)

    def _event(self, rnd: int, ev: Event, st: DeviceRound) -> None:
        if isinstance(ev, Step) and ev.device == self.name:
            if self.fault == (rnd, ev.iteration):
                os._exit(FAULT_EXIT)  # the fault: this process dies mid-round
            self._step(st)
        elif isinstance(ev, Sync) and self.name in ev.devices:
            tensors, tr = wire.recv(0, rate_bps=self.link.dn_bps)
            self.worker.load_part(dict(zip(self.names, tensors, strict=True)))
            st.aggregation_s += tr.seconds
            st.down_bytes += tr.nbytes
        elif isinstance(ev, Collect) and self.name in ev.devices:
            part = self.worker.part()
            priced = self.mode.has_global  # parallel SL uploads for evaluation only
            tr = wire.send([part[n] for n in self.names], 0,
                           rate_bps=self.link.up_bps if priced else None)
            if priced:
                st.aggregation_s += tr.seconds
                st.up_bytes += tr.nbytes

    def _step(self, st: DeviceRound) -> None:
        w = self.worker
        t0 = time.perf_counter()
        if w.mode == "fl":
            loss = w.local_step()
            st.device_compute_s += time.perf_counter() - t0
            wire.send([torch.tensor([loss], dtype=torch.float64)], 0)
            return
        acts, y = w.forward()
        st.device_compute_s += time.perf_counter() - t0
        up = wire.send([*acts, y], 0, rate_bps=self.link.up_bps)
        grads, down = wire.recv(0, rate_bps=self.link.dn_bps)
        t1 = time.perf_counter()
        w.backward(grads)
        st.device_compute_s += time.perf_counter() - t1
        st.uplink_s += up.seconds
        st.downlink_s += down.seconds
        st.up_bytes += up.nbytes - y.numel() * y.element_size()  # labels are not priced
        st.down_bytes += down.nbytes


def run_rank(job: Job, rank: int, world_size: int, *, init_method: str = "env://",
             out: str | None = None, resume: str | None = None, threads: int = 1,
             timeout_s: float = 600.0, prepared: tuple[Any, Any] | None = None) -> None:
    """Run one rank of a multi-process job (0: server, writes the RunResult to ``out``).

    ``prepared`` is ``(data, split templates)`` made once by :func:`launch`, so that spawned
    processes neither reload the data set nor capture the model again; without it (torchrun)
    every process makes its own, identically.
    """
    names = [d.device for d in job.devices()]
    data = None
    if prepared is not None:
        data, templates = prepared
        install_templates(job, templates)
    if world_size != len(names) + 1:
        raise InputError("world size", world_size, f"{len(names) + 1} (the server plus one "
                         "process per selected device)")
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    try:
        if rank == 0:
            result = _serve(job, resume, data)
            if out is not None:
                torch.save(result, out)
            return
        name = names[rank - 1]
        start = 0
        if resume is not None and not participant_file(Path(resume), name).is_file():
            return  # the device had failed before the checkpoint: nothing to resume
        proc = DeviceProcess(job, name, data)
        if resume is not None:
            state = load_participant(Path(resume), name)
            proc.worker.load_state_dict(state["device"])
            proc.stats, start = dict(state["stats"]), int(state["round"]) + 1
        proc.run(start)
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, job: Job, world: int, kwargs: dict[str, Any]) -> None:
    run_rank(job, rank, world, **kwargs)


def launch(job: Job, *, resume: str | Path | None = None, threads: int = 1,
           timeout_s: float = 600.0) -> RunResult:
    """Run ``job`` with one process per device plus the server on 127.0.0.1; one call."""
    world = len(job.devices()) + 1
    ctx = torch.multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="splitopt-run-") as tmp:
        out = str(Path(tmp) / "result.pt")
        kwargs = {"init_method": f"tcp://127.0.0.1:{free_port()}", "out": out,
                  "resume": None if resume is None else str(resume), "threads": threads,
                  "timeout_s": timeout_s, "prepared": (job.data(), split_templates(job))}
        procs = [ctx.Process(target=_spawned, args=(r, job, world, kwargs)) for r in range(world)]
        for p in procs:
            p.start()
        _join(procs, job, timeout_s)
        return torch.load(out, weights_only=False)


def _join(procs: list[Any], job: Job, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, p in enumerate(procs) if p.is_alive()]
    for i in hung:
        procs[i].kill()
        procs[i].join()
    names = ["server", *(d.device for d in job.devices())]
    faulty = set(job.config.faults)
    bad = [(names[i], p.exitcode) for i, p in enumerate(procs)
           if p.exitcode != 0 and not (names[i] in faulty and p.exitcode == FAULT_EXIT)]
    if hung or bad:
        raise SplitoptError(f"multi-process run failed: processes {bad} exited badly"
                            + (f"; {[names[i] for i in hung]} hung and were killed" if hung
                               else ""))
