"""The multi-process runner: one server process for all devices, plus one process per device.

Rank 0 is the server: one real process holds the server model(s) and serves every device in the
order of the round's events, so devices contend for it for real and its compute time is measured,
not assumed. Ranks 1..N are the plan's selected devices in plan order. Boundary activations,
labels, gradients and model weights travel for real over one TCP connection per device
(:mod:`splitopt.execute.wire`); torch.distributed (gloo) is used only to meet and exchange the
server's address, so torchrun works unchanged. Every process walks the same round events as the
in-process runner and runs the same worker code, so with the same seed both runners reach the
same weights.

Links: with ``links="htb"`` every process runs in a network namespace of the run whose loopback
shapes each device's connection to its planned rates (:mod:`splitopt.execute.links`); with
``links="paced"`` the rates are enforced by pacing in user space. ``"auto"`` takes ``htb`` where
it works (root, ``ip`` and ``tc``) and ``paced`` elsewhere; the result records which.

Start it with :func:`launch` (``torch.multiprocessing`` spawn, one command), or with ``torchrun``
across machines: every process calls :func:`run_rank` with ``init_method="env://"``, e.g.
``torchrun --nproc-per-node 3 $(which splitopt) run plan.json --processes``.

Faults: a device whose process dies (the ``faults`` option calls ``os._exit``; a real crash or a
``kill -9`` does the same to its socket) surfaces as :class:`~splitopt.execute.wire.PeerGone` on the
server's next exchange with it; the server drops it and finishes the round with the others. A
device that stops answering for ``timeout_s`` is dropped the same way.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from splitopt.errors import InputError
from splitopt.execute import wire
from splitopt.execute.checkpoint import commit, open_checkpoint, save_participant
from splitopt.execute.job import Job
from splitopt.execute.loop import (
    PHASES,
    DeviceRound,
    RoundRecord,
    TrainingDiverged,
    mean_loss,
    run_rounds,
    stamp,
)
from splitopt.execute.modes import Collect, Event, ServerStep, Step, Sync
from splitopt.execute.runner import (
    RunResult,
    evaluate_server,
    final_state,
    restore_server,
    server_checkpoint,
)
from splitopt.execute.templates import install_templates, split_modules
from splitopt.execute.workers import DeviceWorker, ServerWorker
from splitopt.io import atomic_save
from splitopt.system import link_of

FAULT_EXIT = 3  #: exit status of a device process killed by fault injection
SERVER_GONE = 4  #: exit status of a device process whose server stopped (e.g. diverged)
LINKS = ("auto", "htb", "paced")
_REPORT = (*PHASES, "up_bytes", "down_bytes", "device_compute_cpu_s")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    listener = wire.listen("127.0.0.1")
    port = int(listener.getsockname()[1])
    listener.close()
    return port


class DistributedServer:
    """Rank 0: the loop backend that talks to the device processes."""

    def __init__(self, job: Job, peers: dict[str, wire.Peer], data: Any = None,
                 adapt: Any = None, links: str = "paced") -> None:
        self.job, self.mode = job, job.training_mode()
        self.adapt, self.links_kind = adapt, links
        self._rates: dict[str, tuple[float, float]] = {}
        self._between_s = 0.0  # re-planning and re-splitting before a round: part of its time
        model, ex = job.build_model()
        self.data = data or job.data()
        self.server = ServerWorker(job, model=model, example_inputs=ex, data=self.data)
        self.peers = peers
        self.modes = {d.device: self.mode.device_mode(d.mode) for d in job.devices()}
        self.batch = {d.device: job.batch_size(d) for d in job.devices()}
        self.dead: list[str] = [d.device for d in job.devices() if d.device not in peers]
        self._failed: list[str] = []

    def alive(self) -> list[str]:
        """Devices whose process is still running."""
        return [d.device for d in self.job.devices() if d.device not in self.dead]

    def run_round(self, rnd: int, events: list[Event]) -> RoundRecord:
        """Serve one round; the round latency is its measured wall time."""
        stats = {d: DeviceRound() for d in self.alive()}
        self._failed = []
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
                agg_s += self._collect(ev.devices, stats)
        latency, self._between_s = time.perf_counter() - t0 + self._between_s, 0.0
        return RoundRecord(rnd, mean_loss(stats), float("nan"), float("nan"), 0.0, latency, agg_s,
                           stats, self._failed)

    def before_round(self, rnd: int, elapsed_s: float) -> None:
        """Adaptive runs: every device gets its rates (and new cut) for the round's links.

        One control message per live device and round (rates; the new device side when its cut
        moved, then the moving layers' optimiser state both ways); with kernel-shaped links the
        server changes the device's htb classes itself (it runs inside the run's namespace).
        """
        t0 = time.perf_counter()
        moved = self.adapt.advance(rnd, elapsed_s)
        links = self.adapt.links(elapsed_s)
        names = [d.device for d in self.job.devices()]
        graph = self.job.scenario.graph
        sent: dict[str, tuple[frozenset[str], list[str]]] = {}
        for d in self.alive():  # every device first, so that the state transfers overlap
            rates = (links[d].up_bps, links[d].dn_bps)
            if self.links_kind == "htb" and self._rates.get(d) != rates:
                from splitopt.execute.links import reshape

                reshape(names.index(d), *rates)
            self._rates[d] = rates
            side = moved.get(d)
            idx = [graph.names.index(n) for n in sorted(side)] if side else []
            ctrl = [torch.tensor(rates, dtype=torch.float64), torch.tensor(idx, dtype=torch.int64)]
            self._guard(d, lambda d=d, c=ctrl, s=side: self._send_control(d, c, s, sent))
        for d, (side, to_srv) in sent.items():
            self._guard(d, lambda d=d, s=side, n=to_srv: self._recut(d, s, n))
        self._between_s = time.perf_counter() - t0

    def _send_control(self, d: str, ctrl: list[torch.Tensor], side: frozenset[str] | None,
                      sent: dict[str, tuple[frozenset[str], list[str]]]) -> None:
        from splitopt.execute.adaptive import opt_state, pack_state

        peer = self.peers[d]
        peer.send(ctrl)
        if side is None:
            return
        holder = self.server.holder(d)
        old = set(self.server.device_names[d])
        new = set(split_modules(holder.module, self.server.example_inputs, side,
                                self.job.scenario.graph).device.state_dict())
        peer.send(pack_state(self.job, opt_state(holder.opt, holder.module), sorted(new - old)))
        sent[d] = (side, sorted(old - new))

    def _recut(self, d: str, side: frozenset[str], to_srv: list[str]) -> None:
        from splitopt.execute.adaptive import recut_server, unpack_state

        tensors, _ = self.peers[d].recv()
        recut_server(self.job, self.server, d, side, unpack_state(self.job, tensors, to_srv))

    def _guard(self, device: str, exchange: Any) -> bool:
        """Run one exchange with a live device; False when it has failed (and is dropped)."""
        if device in self.dead:
            return False
        try:
            exchange()
        except wire.PeerGone:
            self.dead.append(device)
            self._failed.append(device)
            self.peers.pop(device).close()
            return False
        return True

    def _step(self, d: str, st: DeviceRound) -> None:
        peer = self.peers[d]
        if self.modes[d] == "fl":
            (loss_t,), _ = peer.recv()
            loss = float(loss_t)
        else:
            msg, up = peer.recv()  # the upload's link time: until the last byte arrived here
            st.uplink_s += up.seconds
            t = stamp()
            grads, loss = self.server.step(d, msg[:-1], msg[-1])
            st.add_compute("server_compute_s", t)
            peer.send(grads)
            if self.server.tied_names(d):  # the device's gradients of the tied weights
                mine, up = peer.recv()
                st.uplink_s += up.seconds
                t = stamp()
                self.server.finish_tied(d, mine)
                st.add_compute("server_compute_s", t)
        st.iterations += 1
        st.samples += self.batch[d]
        st.loss_sum += loss * self.batch[d]

    def _sync(self, devices: tuple[str, ...]) -> None:
        sent = []
        for d in devices:
            part = self.server.device_part(d)
            if self._guard(d, lambda d=d, p=part: self.peers[d].send([p[n] for n in sorted(p)])):
                sent.append(d)
        self.server.sync(sent)

    def _collect(self, devices: tuple[str, ...], stats: dict[str, DeviceRound]) -> float:
        parts: dict[str, dict[str, torch.Tensor]] = {}

        def receive(d: str) -> None:
            tensors, up = self.peers[d].recv()  # the model upload's link time, as uploads are
            parts[d] = dict(zip(sorted(self.server.device_names[d]), tensors, strict=True))
            if self.mode.has_global:  # parallel SL uploads for evaluation only: not priced
                stats[d].aggregation_s += up.seconds

        for d in devices:
            self._guard(d, lambda d=d: receive(d))
        t = time.perf_counter()
        self.server.collect(parts, average=self.mode.has_global)
        return time.perf_counter() - t

    def evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy of the current model(s)."""
        return evaluate_server(self.server, self.job, self.data.test)

    def save_checkpoint(self, folder: Path, rnd: int, history: list[RoundRecord]) -> None:
        """Each live device writes its file and says so; then the server's file and the manifest.

        A device that dies before saying so is dropped (listed as failed in the last round).
        """
        for d in self.alive():
            if not self._guard(d, lambda d=d: self.peers[d].recv()):
                history[-1].failed.append(d)
        save_participant(folder, "server", rnd, server_checkpoint(self.server, history, self.dead))
        commit(folder, rnd, ["server", *self.alive()])

    def collect_reports(self, history: list[RoundRecord]) -> None:
        """Receive every live device's per-round phase times and fill them into ``history``."""
        by_round = {r.round: r for r in history}
        for d in self.alive():
            try:
                (table,), _ = self.peers[d].recv()
            except wire.PeerGone:
                continue
            for row in table.tolist():
                rec = by_round.get(int(row[0]))
                if rec is not None and d in rec.devices:
                    mine = rec.devices[d]
                    for field, v in zip(_REPORT, row[1:], strict=True):
                        if field == "aggregation_s":  # the device timed the download, we the upload
                            mine.aggregation_s += v
                        elif field not in ("server_compute_s", "uplink_s"):  # measured here
                            setattr(mine, field, int(v) if "bytes" in field else v)


def _serve(job: Job, peers: dict[str, wire.Peer], state: Any, data: Any, links: str,
           trace: Any = None, adaptive: bool = True) -> RunResult:
    adapt = None
    if trace is not None:
        from splitopt.execute.adaptive import Adaptation

        adapt = Adaptation(job, trace, adaptive=adaptive)
    srv = DistributedServer(job, peers, data, adapt, links)
    initial = srv.evaluate()
    start, history = 0, list[RoundRecord]()
    if state is not None:
        history, srv.dead = restore_server(srv.server, state[1])
        start = state[0] + 1
    history = run_rounds(job, srv, start=start, history=history,
                         before_round=srv.before_round if adapt is not None else None)
    srv.collect_reports(history)
    return RunResult(history, final_state(srv.server, srv.mode.has_global), "multi-process",
                     initial, list(srv.dead), links,
                     [r.to_dict() for r in adapt.replans] if adapt is not None else [])


class DeviceProcess:
    """Ranks 1..N: walk the round events that concern this device."""

    def __init__(self, job: Job, name: str, peer: wire.Peer, links: str, data: Any = None,
                 follows_trace: bool = False) -> None:
        self.job, self.name, self.mode = job, name, job.training_mode()
        self.follows_trace = follows_trace  # a control message before every round
        self.worker = DeviceWorker(job, name, data=data)
        sc, plan = job.scenario, job.plan.device(name)
        link = link_of(sc.device(name), sc.channel, plan.bandwidth_share)
        # with kernel-shaped links nobody paces in user space
        self.up_bps: float | None = None if links == "htb" else link.up_bps
        self.dn_bps: float | None = None if links == "htb" else link.dn_bps
        self.peer = peer
        self.fault = tuple(job.config.faults.get(name, (-1, -1)))
        self.stats: dict[int, DeviceRound] = {}
        self.names = sorted(self.worker.part())

    def run(self, start: int) -> None:
        """Train rounds ``start..`` then report the phase times to the server."""
        cfg, everyone = self.job.config, [d.device for d in self.job.devices()]
        for rnd in range(start, cfg.rounds):
            st = self.stats.setdefault(rnd, DeviceRound())
            if self.follows_trace:
                self._control()
            for ev in self.mode.round_events(rnd, everyone, self.job.iters()):
                self._event(rnd, ev, st)
            if cfg.checkpoint_every and (rnd + 1) % cfg.checkpoint_every == 0:
                stats = {str(r): vars(s) for r, s in self.stats.items()}
                save_participant(Path(str(cfg.checkpoint_dir)), self.name, rnd,
                                 {"device": self.worker.state_dict(), "stats": stats})
                self.peer.send([torch.tensor(rnd)])  # "my file of this round is on disk"
        rows = [[r, *(float(getattr(s, f)) for f in _REPORT)] for r, s in self.stats.items()]
        self.peer.send([torch.tensor(rows, dtype=torch.float64).reshape(-1, 1 + len(_REPORT))])

    def _control(self) -> None:
        """The round's rates, and a new cut with the moving layers' optimiser state."""
        from splitopt.execute.adaptive import opt_state, pack_state, recut_device, unpack_state

        (rates, idx), _ = self.peer.recv()
        if self.up_bps is not None:  # paced: the new rates are enforced here
            self.up_bps, self.dn_bps = (float(r) for r in rates.tolist())
        if not idx.numel():
            return
        w, graph = self.worker, self.job.scenario.graph
        side = frozenset(graph.names[i] for i in idx.tolist())
        old = set(w.module.state_dict())
        new = set(split_modules(w.model, w.example_inputs, side, graph).device.state_dict())
        to_dev, to_srv = sorted(new - old), sorted(old - new)
        tensors, _ = self.peer.recv()
        self.peer.send(pack_state(self.job, opt_state(w.holder.opt, w.model), to_srv))
        recut_device(self.job, w, side, unpack_state(self.job, tensors, to_dev))
        self.names = sorted(w.part())

    def _event(self, rnd: int, ev: Event, st: DeviceRound) -> None:
        if isinstance(ev, Step) and ev.device == self.name:
            if self.fault == (rnd, ev.iteration):
                os._exit(FAULT_EXIT)  # the fault: this process dies mid-round
            self._step(st)
        elif isinstance(ev, Sync) and self.name in ev.devices:
            tensors, tr = self.peer.recv(rate_bps=self.dn_bps)
            self.worker.load_part(dict(zip(self.names, tensors, strict=True)))
            st.aggregation_s += tr.seconds
            st.down_bytes += tr.nbytes
        elif isinstance(ev, Collect) and self.name in ev.devices:
            part = self.worker.part()
            priced = self.mode.has_global  # parallel SL uploads for evaluation only
            tr = self.peer.send([part[n] for n in self.names],
                                rate_bps=self.up_bps if priced else None)
            if priced:  # its link time is measured by the server, which receives it
                st.up_bytes += tr.nbytes

    def _step(self, st: DeviceRound) -> None:
        w = self.worker
        t0 = stamp()
        if w.mode == "fl":
            loss = w.local_step()
            st.add_compute("device_compute_s", t0)
            self.peer.send([torch.tensor([loss], dtype=torch.float64)])
            return
        acts, y = w.forward()
        st.add_compute("device_compute_s", t0)
        up = self.peer.send([*acts, y], rate_bps=self.up_bps)
        grads, down = self.peer.recv(rate_bps=self.dn_bps)
        t1 = stamp()
        mine = w.backward(grads)
        st.add_compute("device_compute_s", t1)
        st.downlink_s += down.seconds
        st.up_bytes += up.nbytes - y.numel() * y.element_size()  # labels are not priced
        if mine:  # this side's gradients of the weights tied across the cut
            st.up_bytes += self.peer.send(mine, rate_bps=self.up_bps).nbytes
        st.down_bytes += down.nbytes


def batch_scheduling() -> None:
    """Run this process under ``SCHED_BATCH``: a process it wakes does not take its CPU at once.

    A message is written by its sender in one or a few system calls, and its receiver, blocked
    in ``recv``, wakes on the first bytes. Under the default policy the woken receiver takes
    the sender's CPU (wakeup preemption) before the sender has written the rest, and on a busy
    machine the sender waits milliseconds to finish a 0.2 ms message: the server's downloads
    measured +50% to +200% with 7 processes on 2 cores. Under ``SCHED_BATCH`` a woken process
    waits for the running one's time slice or its next block; measured transfers are kernel
    timestamps, so they lose nothing, and neither does compute (CPU time of the computing
    process). Any user may choose it; where the platform has none, nothing changes.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _meet(rank: int, world: int, init_method: str, timeout_s: float,
          address: tuple[str, int]) -> tuple[str, int]:
    """Rendezvous over gloo and learn the server's data address; gloo is not used afterwards."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))
    try:
        box: list[Any] = [address if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    finally:
        dist.destroy_process_group()


def run_rank(job: Job, rank: int, world_size: int, *, init_method: str = "env://",
             out: str | None = None, resume: str | None = None, threads: int = 1,
             timeout_s: float = 600.0, prepared: tuple[Any, Any] | None = None,
             links: str = "paced", server_port: int = 0, device_port0: int = 0,
             trace: Any = None, adaptive: bool = True) -> None:
    """Run one rank of a multi-process job (0: server, writes the RunResult to ``out``).

    ``prepared`` is ``(data, split templates)`` made once by :func:`launch`, so that spawned
    processes neither reload the data set nor capture the model again; without it (torchrun)
    every process makes its own, identically. Device ``k`` connects from port
    ``device_port0 + k`` (0: any port), which is what shaped links classify by.
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
    batch_scheduling()
    if trace is not None:
        from splitopt.execute.adaptive import warm_up

        warm_up(job)  # a re-split may build this process's first optimiser mid-run
    ck = open_checkpoint(resume) if resume is not None else None
    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    if init_method.startswith("tcp://"):
        host = init_method[len("tcp://"):].rsplit(":", 1)[0]
    # a run on one machine listens on loopback only; across machines on every interface
    local = host in ("localhost", "::1") or host.startswith("127.")
    listener = wire.listen("127.0.0.1" if local else "0.0.0.0", server_port) if rank == 0 else None
    address = (host, listener.getsockname()[1]) if listener is not None else (host, 0)
    address = _meet(rank, world_size, init_method, timeout_s, address)
    if rank == 0:
        assert listener is not None
        expected = [d for d in names if ck is None or ck.has(d)]
        by_rank = wire.accept(listener, len(expected), timeout_s)
        peers = {names[r - 1]: p for r, p in by_rank.items()}
        state = None if ck is None else (ck.round, ck.load("server"))
        try:
            result = _serve(job, peers, state, data, links, trace, adaptive)
            doc: dict[str, Any] = result.to_state()
        except TrainingDiverged as err:
            doc = {"error": str(err)}
        finally:
            for p in peers.values():
                p.close()
        if out is not None:
            atomic_save(out, lambda fh: torch.save(doc, fh))
        return
    name = names[rank - 1]
    if ck is not None and not ck.has(name):
        return  # the device had failed before the checkpoint: nothing to resume
    peer = wire.connect(address[0], address[1], rank, timeout_s=timeout_s,
                        source_port=device_port0 + rank if device_port0 else 0)
    proc = DeviceProcess(job, name, peer, links, data, follows_trace=trace is not None)
    start = 0
    if ck is not None:
        mine = ck.load(name)
        proc.worker.load_state_dict(mine["device"])
        proc.stats = {int(r): DeviceRound(**s) for r, s in mine["stats"].items()}
        start = ck.round + 1
    try:
        proc.run(start)
    except wire.PeerGone:
        os._exit(SERVER_GONE)  # the server stopped (it says why); nothing to add here
    finally:
        peer.close()



def result_of(doc: dict[str, Any]) -> RunResult:
    """The RunResult rank 0 wrote (``torch.load(..., weights_only=True)`` of it), or its error."""
    if "error" in doc:
        raise TrainingDiverged(doc["error"])
    return RunResult.from_state(doc)
