"""Predicted versus measured: per round and per phase, with the cost model calibrated here.

Calibration: the model is profiled on this machine with ``splitopt.profile(..., measure=True)``,
which attaches per-node forward and backward seconds per sample under a device class; every
device and the server of the scenario are then given that class, so the reference cost model
prices compute with times measured on this CPU (the in-process runner runs every role here).
Transfers are priced as ``8 * bytes / rate`` both in the prediction and, in the in-process runner,
on the simulated clock; in the multi-process runner they are paced for real.

Phases compared (seconds per round, summed over devices): device compute, transfer (uplink +
downlink of boundary tensors), server compute, aggregation (model download + upload); and the
round latency. The relative error is ``(measured - predicted) / predicted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Any

from splitopt.costs import Phases, combine_rounds, device_phases
from splitopt.execute.job import Job
from splitopt.execute.loop import RoundRecord
from splitopt.execute.modes import priced_server_shares, server_schedule
from splitopt.scenario import Scenario
from splitopt.system import link_of

CALIBRATION_CLASS = "local-cpu"
COMPARED = ("device_compute_s", "uplink_s", "downlink_s", "server_compute_s", "aggregation_s")


def calibrate(job: Job, *, device_class: str = CALIBRATION_CLASS, repeats: int = 5) -> Scenario:
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


def predict(job: Job, scenario: Scenario | None = None) -> tuple[dict[str, Phases], float]:
    """Per-device predicted phases of one round and the predicted round latency.

    Priced for the job's training mode: its schedule and whether it aggregates.
    """
    sc = scenario or job.scenario
    mode = job.training_mode()
    tr = sc.training.model_copy(update={"local_iters": job.iters()})
    g = sc.graph
    out: dict[str, Phases] = {}
    modes: list[str] = []
    phis = priced_server_shares(sc, job.devices(), mode)
    for d in job.devices():
        dmode = mode.device_mode(d.mode)
        side = frozenset(g.names) if dmode == "fl" else d.device_side
        dev = sc.device(d.device)
        out[d.device] = device_phases(g, side, dev, sc.server,
                                      link_of(dev, sc.channel, d.bandwidth_share), tr,
                                      batch=job.batch_size(d), server_share=phis[d.device],
                                      aggregate=mode.has_global)
        modes.append(dmode)
    latency = combine_rounds([p.round_s for p in out.values()], modes,
                             server_schedule(sc.server.serving, mode))
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
            skip_first: bool = True) -> dict[str, Any]:
    """Measured beside predicted, per round and per phase, with the relative error per phase.

    Rounds in which a device failed are left out of the summary (they are shorter); the first
    round is left out of it too when there are others (one-time warm-up), but every round is
    listed under ``rounds``.
    """
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
    """Per device and phase: the median measured seconds over ``rounds``, predicted, rel. error."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for d, p in predicted.items():
        recs = [r for r in history if r.round in rounds and d in r.devices]
        if not recs:
            continue
        pred = _predicted(p)
        out[d] = {}
        for k in COMPARED:
            m = median(_measured(r, d)[k] for r in recs)
            out[d][k] = {"measured": m, "predicted": pred[k], "rel_error": rel_error(m, pred[k])}
    return out
