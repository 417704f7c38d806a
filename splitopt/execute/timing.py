"""Predicted versus measured: per device and per phase, with the cost model calibrated here.

Calibration (:func:`calibrate`) measures two things on this machine:

* per-node forward and backward seconds per sample (``splitopt.profile(..., measure=True)``), given
  to every device and the server as one device class: the planner's model, ``b * sum t(v)``;
* per-iteration seconds of each device's two parts *as the executor runs them*
  (:func:`time_parts`): the device's batch draw and forward, the server's forward, loss, backward
  and optimiser step, and the device's second autograd pass (from the boundary gradients) and
  optimiser step, by the same worker code the runners use, on scratch workers, before the run.

Compute predictions use the part times (``I * t_part``), which include what the per-node sum
leaves out: the optimiser steps, the second autograd pass of split training, the loss and the
per-call overhead of the split modules. Transfers are predicted as ``8 * bytes / rate``. In the
in-process runner they are priced with the same formula (so their error is 0 by construction: it
checks byte accounting only); in the multi-process runner they travel for real over paced or
kernel-shaped links and are measured (:mod:`splitopt.execute.wire`); there the per-message
overhead a calibration exchange measured (:mod:`splitopt.execute.linkcal`,
``t = alpha + 8 * bytes / (eta * rate)``) gives the calibrated link prediction, and
:func:`compare` reports the reference (``8 * bytes / rate``) beside it.

Server compute: the in-process runner divides a device's measured server compute by its server
share phi (the planner's contention model); the multi-process runner has one real server process
that serves the devices in turn and measures each device's server work, and its contention shows
in the measured round time. :func:`predict` prices each as its runner measures it
(``server_work=True`` for the multi-process runner).

The relative error is ``(measured - predicted) / predicted``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any

from splitopt.costs import Phases, combine_rounds, device_phases
from splitopt.execute.forked import Forked
from splitopt.execute.job import Job
from splitopt.execute.loop import DeviceRound, RoundRecord, stamp
from splitopt.execute.modes import priced_server_shares, server_schedule
from splitopt.scenario import Scenario
from splitopt.system import link_of

CALIBRATION_CLASS = "local-cpu"
COMPARED = ("device_compute_s", "uplink_s", "downlink_s", "server_compute_s", "aggregation_s")
#: compute measured as CPU seconds of the computing process, against the same prediction
CPU_COMPARED = {"device_compute_cpu_s": "device_compute_s",
                "server_compute_cpu_s": "server_compute_s"}


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` measured: per-node times, and per-iteration part times per device."""

    scenario: Scenario
    #: per device: (device seconds, server seconds) of one iteration as the executor runs it, in
    #: CPU seconds of this process (load from other jobs hardly changes them)
    parts: dict[str, tuple[float, float]] = field(default_factory=dict)


#: the multi-process runner's parts are timed after the idle gaps its schedule implies
#: (:func:`schedule_gaps`); a float times every part that follows a transfer after that gap
TRANSFER_GAP_S: float | str = "schedule"
MAX_GAP_S = 0.05  #: longest gap timed: after 50 ms idle a part is as cold as after seconds
APART_PASSES = 5  #: device parts timed apart: children per device, at different moments


def calibrate(job: Job, *, device_class: str = CALIBRATION_CLASS, repeats: int = 5,
              iterations: int = 30, gap_s: float | str = 0.0) -> Calibration:
    """Per-node times and per-iteration part times measured on this machine (module docstring).

    ``gap_s``: idle seconds before the parts that follow a transfer (the server step after the
    upload, the device backward after the download), or ``"schedule"``: per device the gaps
    the multi-process schedule implies (:func:`schedule_gaps`). A part's CPU time depends on
    how long its process idled before it (caches, branch predictors, frequency): on digits_cnn
    a part costs 2-3x after 50 ms idle what it costs back to back. The in-process runner runs
    parts back to back (``gap_s=0``).
    """
    gaps: float | dict[str, tuple[float, float]] = 0.0
    if gap_s == "schedule":
        gaps = schedule_gaps(job, time_parts(job, iterations))
    elif isinstance(gap_s, (int, float)):
        gaps = float(gap_s)
    else:
        raise ValueError(f"gap_s: got {gap_s!r}; allowed: seconds or 'schedule'")
    return Calibration(node_times(job, device_class=device_class, repeats=repeats),
                       time_parts(job, iterations, gap_s=gaps, devices_apart=gap_s == "schedule"))


def schedule_gaps(job: Job, parts: dict[str, tuple[float, float]],
                  ) -> dict[str, tuple[float, float]]:
    """Per device: idle seconds before its server step and before its backward, in a run.

    With devices served in turn (``sl``, or one split device) the server idles while the
    upload travels, and the device while the server computes its step and the gradients travel
    back. With several devices in parallel the server has other devices' uploads queued (no
    idle gap), and a device waits for the server's pass over every device's step of the
    iteration. Link times are the reference ``8 * bytes / r`` of one message; server times are
    ``parts`` (timed back to back first). Each gap is capped at :data:`MAX_GAP_S`.
    """
    ref, _ = predict(job)
    mode = job.training_mode()
    split = [d.device for d in job.devices() if mode.device_mode(d.mode) != "fl"]
    serial = job.config.mode == "sl" or len(split) <= 1
    everyone = sum(parts[d][1] for d in split if d in parts)
    out = {}
    for d in split:
        up, dn = (getattr(ref[d], k) / job.iters() for k in ("uplink_s", "downlink_s"))
        wait = up + dn + (parts[d][1] if serial else everyone)
        out[d] = (min(MAX_GAP_S, up) if serial else 0.0, min(MAX_GAP_S, wait))
    return out


def node_times(job: Job, *, device_class: str = CALIBRATION_CLASS, repeats: int = 5) -> Scenario:
    """The job's scenario with per-node times measured on this machine.

    Every device and the server get the measured class; the batch is the largest planned batch
    (real samples of the first device).
    """
    import torch

    import splitopt

    model, _ = job.build_model()
    b = max(job.batch_size(d) for d in job.devices())
    xs, _ = job.data().shards[job.devices()[0].device]
    reps = -(-b // len(xs[0]))
    inputs = tuple(torch.cat([x] * reps)[:b] for x in xs)
    measured = splitopt.profile(model, inputs, measure=True, device_class=device_class,
                                repeats=repeats)
    times = {n.name: (n.times[device_class].fwd_s, n.times[device_class].bwd_s)
             for n in measured.nodes if device_class in n.times}
    sc = job.scenario
    return sc.replace(
        graph=sc.graph.with_times(device_class, times),
        devices=tuple(d.model_copy(update={"device_class": device_class}) for d in sc.devices),
        server=sc.server.model_copy(update={"device_class": device_class}),
        training=sc.training.model_copy(update={"local_iters": job.iters()}))


def time_parts(job: Job, iterations: int = 30, warmup: int = 2,
               gap_s: float | dict[str, tuple[float, float]] = 0.0, *,
               devices_apart: bool = False) -> dict[str, tuple[float, float]]:
    """Median per-iteration (device, server) CPU seconds of each device, by the executor's workers.

    Scratch workers of the in-process runner (nothing of the run is touched) execute the same
    calls a runner makes per iteration, timed the way the runners time them. ``gap_s``: idle
    seconds before the server step and before the device backward (one for all, or per device
    ``(before the server step, before the backward)``). ``devices_apart``: the device parts are
    timed again in a process of their own (:func:`_device_parts_apart`), as a multi-process run
    computes them (where this process computes on one torch thread, as the run's do by default).
    """
    from splitopt.execute.runner import InProcessRunner

    runner = InProcessRunner(job.with_config(checkpoint_every=0, checkpoint_dir=None, faults={}))
    out: dict[str, tuple[float, float]] = {}
    last_grads: dict[str, list[Any]] = {}
    gaps: dict[str, tuple[float, float]] = {}
    for d in job.devices():
        w = runner.devices[d.device]
        st = [DeviceRound() for _ in range(warmup + iterations)]
        gap_srv, gap_bwd = gaps[d.device] = (
            (float(gap_s), float(gap_s)) if isinstance(gap_s, (int, float))
            else gap_s.get(d.device, (0.0, 0.0)))
        for one in st:
            # as in a run: the forward follows the previous backward at once, while the server
            # step and the device backward each follow a wait for a transfer
            if w.mode == "fl":
                t0 = stamp()
                w.local_step()
                one.add_compute("device_compute_s", t0)
                continue
            t0 = stamp()
            acts, y = w.forward()
            one.add_compute("device_compute_s", t0)
            time.sleep(gap_srv)
            t1 = stamp()
            grads, _ = runner.server.step(d.device, acts, y)
            one.add_compute("server_compute_s", t1)
            time.sleep(gap_bwd)
            t2 = stamp()
            w.backward(grads)
            one.add_compute("device_compute_s", t2)
            last_grads[d.device] = grads
        out[d.device] = (median(s.device_compute_cpu_s for s in st[warmup:]),
                         median(s.server_compute_cpu_s for s in st[warmup:]))
    import torch

    # a forked child may only compute on one thread (OpenMP's pool does not survive a fork)
    if devices_apart and torch.get_num_threads() == 1:
        apart = _device_parts_apart(runner, last_grads, gaps, warmup + iterations, warmup)
        out = {d: (apart[d], srv) for d, (_, srv) in out.items()}
    return out


def _device_parts_apart(runner: Any, grads: dict[str, list[Any]],
                        gaps: dict[str, tuple[float, float]], n: int, warmup: int,
                        timeout_s: float = 120.0) -> dict[str, float]:
    """Each device's per-iteration CPU seconds, timed in a forked process of its own.

    In a multi-process run a device's process runs nothing but its own parts: its forward right
    after its backward, its backward after waiting for the gradients. Timed in the calibrating
    process between the server's steps and the other devices' parts, the demo plan's device
    parts of 0.14 ms (a batch draw and an empty backward) took twice their CPU time in the run;
    timed one device after another in one child, the second of two identical devices came out
    at a third (warm from the first). The server's gradients of the last timed iteration are
    reused (their values do not change the work). Each device is timed in
    :data:`APART_PASSES` children at different moments and the median taken: on the shared
    box one pass of ~0.5 s came out anywhere from 0.3x to 1.5x of the run's part time. A child
    that fails or takes longer than ``timeout_s`` is an error.
    """
    passes: dict[str, list[float]] = {d: [] for d in runner.devices}
    for _ in range(APART_PASSES):  # spread over time: the machine's load changes second by second
        for d, w in runner.devices.items():
            passes[d].append(_in_child(lambda w=w, d=d: _device_loop(
                w, grads.get(d), gaps.get(d, (0.0, 0.0)), n, warmup), timeout_s))
    return {d: median(v) for d, v in passes.items()}


def _device_loop(w: Any, grads: list[Any] | None, gap: tuple[float, float], n: int,
                 warmup: int) -> float:
    st = [DeviceRound() for _ in range(n)]
    for one in st:
        t0 = stamp()
        if w.mode == "fl":
            w.local_step()
            one.add_compute("device_compute_s", t0)
            continue
        w.forward()
        one.add_compute("device_compute_s", t0)
        time.sleep(gap[1])  # the device waits for its gradients
        t1 = stamp()
        w.backward(grads)
        one.add_compute("device_compute_s", t1)
    return median(s.device_compute_cpu_s for s in st[warmup:])


def _in_child(fn: Any, timeout_s: float) -> float:
    """``fn()`` (a float) computed in a forked child process."""
    child = Forked(lambda: float(fn()))
    got = child.join(timeout_s)
    if got is None:
        raise RuntimeError(f"timing the device parts in a process of their own failed (status "
                           f"{child.status}{', timed out' if not child.answered else ''})")
    return float(got)


def predict(job: Job, calibration: Scenario | Calibration | None = None, *,
            server_work: bool = False) -> tuple[dict[str, Phases], float]:
    """Per-device predicted phases of one round and the predicted round latency.

    Priced for the job's training mode: its schedule and whether it aggregates. With a
    :class:`Calibration`, compute phases are its part times; ``server_work`` prices a device's
    server compute as its work (phi = 1), as the multi-process runner measures it.
    """
    cal = calibration if isinstance(calibration, Calibration) else None
    sc: Scenario = (cal.scenario if cal is not None
                    else calibration if isinstance(calibration, Scenario) else job.scenario)
    mode = job.training_mode()
    tr = sc.training.model_copy(update={"local_iters": job.iters()})
    g = sc.graph
    out: dict[str, Phases] = {}
    modes: list[str] = []
    rounds: list[float] = []
    phis = priced_server_shares(sc, job.devices(), mode)
    for d in job.devices():
        dmode = mode.device_mode(d.mode)
        side = frozenset(g.names) if dmode == "fl" else d.device_side
        dev = sc.device(d.device)
        ph = device_phases(g, side, dev, sc.server, link_of(dev, sc.channel, d.bandwidth_share),
                           tr, batch=job.batch_size(d), server_share=phis[d.device],
                           aggregate=mode.has_global)
        it = float(job.iters())
        if cal is not None and d.device in cal.parts:
            dev_s, srv_s = cal.parts[d.device]
            ph = replace(ph, device_compute_s=it * dev_s,
                         server_compute_s=it * srv_s / phis[d.device])
            t_iter = (ph.device_compute_s + ph.server_compute_s + ph.uplink_s
                      + ph.downlink_s) / it
            ph = replace(ph, iteration_s=t_iter, round_s=it * t_iter + ph.aggregation_s)
        rounds.append(ph.round_s)  # the round is priced with contention (the shares) either way
        if server_work:
            ph = replace(ph, server_compute_s=ph.server_compute_s * phis[d.device])
        out[d.device] = ph
        modes.append(dmode)
    latency = combine_rounds(rounds, modes, server_schedule(sc.server.serving, mode))
    return out, latency


def _measured(rec: RoundRecord, device: str) -> dict[str, float]:
    st = rec.devices[device]
    return {k: float(getattr(st, k)) for k in COMPARED}


def _predicted(p: Phases) -> dict[str, float]:
    return {k: float(getattr(p, k)) for k in COMPARED}


def rel_error(measured: float, predicted: float) -> float | None:
    """``(measured - predicted) / predicted``; None when nothing is predicted."""
    return None if predicted <= 0 else (measured - predicted) / predicted


def compare(history: Sequence[RoundRecord], predicted: dict[str, Phases], latency: float, *,
            skip_first: bool = True, reference: dict[str, Phases] | None = None,
            ) -> dict[str, Any]:
    """Measured beside predicted, per round and per phase, with the relative error per phase.

    Rounds in which a device failed are left out of the summary (they are shorter); the first
    round is left out of it too when there are others (one-time warm-up), but every round is
    listed under ``rounds``. ``reference``: the uncalibrated prediction (links ``8 * bytes /
    r``), reported beside ``predicted`` (links calibrated by :mod:`splitopt.execute.linkcal`)
    as ``reference_predicted`` and ``reference_rel_error``.
    """
    out = _compare(history, predicted, latency, skip_first)
    if reference is not None:
        ref = _compare(history, reference, latency, skip_first)
        for mine, theirs in [(out["phases"], ref["phases"]),
                             *((out["per_device"][d], ref["per_device"][d])
                               for d in out["per_device"])]:
            for k, v in mine.items():
                v["reference_predicted"] = theirs[k]["predicted"]
                v["reference_rel_error"] = theirs[k]["rel_error"]
    return out


def _compare(history: Sequence[RoundRecord], predicted: dict[str, Phases], latency: float,
             skip_first: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for rec in history:
        devs = [d for d in rec.devices if d in predicted]
        meas = {k: sum(_measured(rec, d)[k] for d in devs) for k in COMPARED}
        pred = {k: sum(_predicted(predicted[d])[k] for d in devs) for k in COMPARED}
        rows.append({"round": rec.round, "measured": {**meas, "round_s": rec.latency_s},
                     "predicted": {**pred, "round_s": latency}, "complete": not rec.failed})
    pool = [r for r in rows if r["complete"]]
    if skip_first and len(pool) > 1 and pool[0]["round"] == history[0].round:
        pool = pool[1:]
    summary = {}
    for k in (*COMPARED, "round_s"):
        if not pool:
            break
        m = median(r["measured"][k] for r in pool)
        p = pool[0]["predicted"][k]
        summary[k] = {"measured": m, "predicted": p, "rel_error": rel_error(m, p)}
    return {"phases": summary, "rounds": rows,
            "per_device": _per_device(history, predicted, {r["round"] for r in pool})}


def _per_device(history: Sequence[RoundRecord], predicted: dict[str, Phases],
                rounds: set[int]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per device and phase: median (and range) of the measured seconds over ``rounds``; error."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for d, p in predicted.items():
        recs = [r for r in history if r.round in rounds and d in r.devices]
        if not recs:
            continue
        pred = _predicted(p)
        out[d] = {}
        for k, basis in [*((k, k) for k in COMPARED), *CPU_COMPARED.items()]:
            vals = [float(getattr(r.devices[d], k)) for r in recs]
            m = median(vals)
            out[d][k] = {"measured": m, "predicted": pred[basis],
                         "rel_error": rel_error(m, pred[basis]),
                         "measured_min": min(vals), "measured_max": max(vals)}
    return out
