"""Per-message link overhead, learned from a calibration exchange on the run's kind of links.

The reference cost model (docs/cost_model.md) prices a message of ``B`` bytes on a link of rate
``r`` as ``8 * B / r``. A real link adds a fixed cost per message (the header and meta, the
system calls, the hand-off between processes, and on ``htb`` the end marker and the bucket of
~50 us the shaper lets through at once, :mod:`splitopt.execute.links`): the alpha-beta model

    t = alpha + 8 * B / (eta * r)

with ``alpha`` seconds per message and a bandwidth efficiency ``eta`` (TCP/IP headers cost
about 3.6% of a 1500-byte packet). :func:`exchange` measures it: before the run, for every
device, messages of the plan's sizes (and of ``SCALES`` times them) travel over links of the
same kind and the same rates (an ``htb``-shaped namespace of its own, or user-space pacing), by
the same :mod:`splitopt.execute.wire` calls and timed the way the runners time them. Per device
and direction (uplink, downlink, and the aggregation pair: one model download and one upload)
:func:`fit_alpha` fits ``alpha`` and, where the message sizes differ enough to tell, ``eta``.

The calibrated prediction (:func:`calibrated`) prices ``I * alpha + t_ref / eta`` per phase
(``alpha + t_ref / eta`` for aggregation, whose alpha is per round); the run's measured seconds
are never touched: they come from the run itself.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from statistics import median
from typing import Any

import numpy as np
import torch

from splitopt.costs import Phases
from splitopt.execute import wire
from splitopt.execute.forked import Forked
from splitopt.execute.job import Job
from splitopt.system import link_of

LINK_PHASES = ("uplink_s", "downlink_s", "aggregation_s")
SCALES = (1, 4)  #: message sizes of the exchange, in multiples of the plan's message
REPEATS = 7  #: messages per size and direction, in passes over all devices (median fitted)
GAP_S = 0.01  #: idle time before each message, as compute separates them in a run


@dataclass(frozen=True)
class LinkFit:
    """``t = messages * alpha_s + reference_s / efficiency`` for one device and phase."""

    alpha_s: float
    efficiency: float = 1.0

    def seconds(self, reference_s: float, messages: float) -> float:
        """Calibrated seconds of ``messages`` messages whose reference time sums to this."""
        return messages * self.alpha_s + reference_s / self.efficiency


def fit_alpha(points: Sequence[tuple[float, float]], *, min_spread: float = 1.5) -> LinkFit:
    """Fit ``measured = alpha + reference / eta`` to ``(reference_s, measured_s)`` messages.

    The median measured time per message size is fitted; ``eta`` only when the sizes span at
    least ``min_spread`` times (else it is 1 and alpha is the median excess over the reference).
    """
    if not points:
        raise ValueError("fit_alpha needs at least one (reference, measured) message")
    sizes: dict[float, list[float]] = {}
    for ref, meas in points:
        sizes.setdefault(float(ref), []).append(float(meas))
    refs = np.array(sorted(sizes))
    meds = np.array([median(sizes[r]) for r in refs])
    if len(refs) >= 2 and refs[0] >= 0 and refs[-1] >= min_spread * max(refs[0], 1e-12):
        (alpha, slope), *_ = np.linalg.lstsq(np.stack([np.ones_like(refs), refs], 1), meds,
                                             rcond=None)
        if slope > 0:
            return LinkFit(float(alpha), float(1.0 / slope))
    return LinkFit(float(median(m - r for r, ms in sizes.items() for m in ms)))


def calibrated(reference: dict[str, Phases], fits: dict[str, dict[str, LinkFit]],
               iters: int, *, aggregate: bool) -> dict[str, Phases]:
    """The reference phases with each device's link phases priced by its fitted overhead.

    ``aggregate``: the mode exchanges models every round (then even a device with no weights
    on its side pays the aggregation pair's alpha for its empty messages).
    """
    out = {}
    for d, ph in reference.items():
        if d not in fits:
            out[d] = ph
            continue
        f = fits[d]
        new = {k: f[k].seconds(getattr(ph, k), iters if k != "aggregation_s" else 1)
               for k in LINK_PHASES if k in f and (k != "aggregation_s" or aggregate)}
        ph = replace(ph, **new)
        t_iter = (ph.device_compute_s + ph.server_compute_s + ph.uplink_s + ph.downlink_s) / iters
        out[d] = replace(ph, iteration_s=t_iter, round_s=iters * t_iter + ph.aggregation_s)
    return out


def exchange(job: Job, links: str, reference: dict[str, Phases], *, repeats: int = REPEATS,
             aggregate: bool = True) -> dict[str, dict[str, LinkFit]]:
    """Measure each device's messages on links of kind ``links`` (``htb`` or ``paced``); fit.

    ``reference``: the uncalibrated per-device phases (message sizes are read back from them);
    ``aggregate``: the mode exchanges models every round.
    """
    sc, iters = job.scenario, job.iters()
    devices = [d for d in job.devices() if d.device in reference]
    rates = [link_of(sc.device(d.device), sc.channel, d.bandwidth_share) for d in devices]
    one_pass: list[_Message] = []
    for k, (d, ln) in enumerate(zip(devices, rates, strict=True)):
        ph = reference[d.device]
        sizes = {"uplink_s": int(ph.uplink_s * ln.up_bps / 8 / iters),
                 "downlink_s": int(ph.downlink_s * ln.dn_bps / 8 / iters),
                 "aggregation_s": int(ph.aggregation_s / (8 / ln.up_bps + 8 / ln.dn_bps))}
        for s in SCALES:
            one_pass += [_Message(k, p, sizes[p] * s, job.batch_size(d)) for p in LINK_PHASES
                         if (sizes[p] if p != "aggregation_s" else aggregate)]
    # the repeats are passes over every device, not one device's messages in a row: a moment
    # when other jobs load the machine then touches one of a device's messages per size, not
    # all of them (one device's 0.2 ms downloads measured +20% in all 7 back-to-back repeats)
    script = one_pass * repeats
    with _connections(len(devices), [(r.up_bps, r.dn_bps) for r in rates], links) as pairs:
        seconds = _play(script, pairs, rates, paced=links == "paced")
    pts: dict[str, dict[str, list[tuple[float, float]]]] = {d.device: {} for d in devices}
    for m, sec in zip(script, seconds, strict=True):
        ln = rates[m.device]
        ref = 8 * m.nbytes * {"uplink_s": 1 / ln.up_bps, "downlink_s": 1 / ln.dn_bps,
                              "aggregation_s": 1 / ln.up_bps + 1 / ln.dn_bps}[m.phase]
        pts[devices[m.device].device].setdefault(m.phase, []).append((ref, sec))
    return {d: {k: fit_alpha(p) for k, p in ps.items()} for d, ps in pts.items()}


@dataclass(frozen=True)
class _Message:
    """One step of the exchange: device index, phase (a :data:`LINK_PHASES`), payload bytes."""

    device: int
    phase: str
    nbytes: int
    batch: int  #: labels travel with an upload, as in the runners


def _play(script: Sequence[_Message], pairs: Sequence[tuple[wire.Peer, wire.Peer]],
          rates: Sequence[Any], *, paced: bool) -> list[float]:
    """Send ``script`` between the server ends (this process) and the device ends (a child).

    The device ends live in a forked process, as in a run, where device and server are separate
    processes: with both ends as threads of one process, each end's Python work waits for the
    other's to let go of the GIL, which added ~70 us to a 0.28 ms message. Each message is timed
    where a run times it (by the receiver: uploads here, downloads in the child, which sends its
    seconds back through a pipe); a message follows :data:`GAP_S` of idle time, as compute
    separates messages in a run, and its receiver answers it before the next one is sent (in a
    run, too, a device's next message follows the server's answer), so that none queues behind
    the previous one still on the link. Returns the seconds per message (an aggregation:
    download + upload).
    """
    from splitopt.execute.distributed import batch_scheduling

    def device_ends() -> list[float]:
        for _, srv in pairs:
            srv.sock.close()
        batch_scheduling()  # as the run's processes
        return _device_side(script, [dev for dev, _ in pairs], rates, paced)

    child = Forked(device_ends)
    for dev, _ in pairs:
        dev.sock.close()
    policy = os.sched_getscheduler(0)
    try:
        batch_scheduling()
        mine = _server_side(script, [srv for _, srv in pairs])
    except BaseException:
        child.kill()  # a child stuck on its end must not hang us
        raise
    finally:
        os.sched_setscheduler(0, policy, os.sched_param(0))
        theirs = child.join()
    if theirs is None:
        raise wire.PeerGone(f"the link calibration's device process failed (status "
                            f"{child.status})")
    return [mine[i] + theirs[i] for i in range(len(script))]


def _device_side(script: Sequence[_Message], devs: Sequence[wire.Peer], rates: Sequence[Any],
                 paced: bool) -> list[float]:
    torch.set_num_threads(1)
    out = []
    for m in script:
        dev, ln = devs[m.device], rates[m.device]
        up, dn = (ln.up_bps, ln.dn_bps) if paced else (None, None)
        sec = 0.0
        if m.phase != "uplink_s":  # a download: the downlink, or the aggregation's model
            sec = dev.recv(rate_bps=dn)[1].seconds
            dev.send([])  # received whole: the next download does not queue behind this one
        if m.phase != "downlink_s":  # an upload: the uplink (with labels), or the model
            time.sleep(GAP_S)
            extra = [torch.zeros(m.batch, dtype=torch.int64)] if m.phase == "uplink_s" else []
            dev.send([_bytes(m.nbytes), *extra], rate_bps=up)
            dev.recv()  # as in a run, a device's next message follows the server's answer
        out.append(sec)
    return out


def _server_side(script: Sequence[_Message], srvs: Sequence[wire.Peer]) -> list[float]:
    out = []
    for m in script:
        srv, sec = srvs[m.device], 0.0
        if m.phase != "uplink_s":
            time.sleep(GAP_S)
            srv.send([_bytes(m.nbytes)])
            srv.recv()
        if m.phase != "downlink_s":
            sec = srv.recv()[1].seconds
            srv.send([])  # received whole: the next upload does not queue behind this one
        out.append(sec)
    return out


def _bytes(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.uint8)


@contextlib.contextmanager
def _connections(n: int, rates: list[tuple[float, float]], links: str,
                 ) -> Iterator[list[tuple[wire.Peer, wire.Peer]]]:
    """``n`` (device, server) connection pairs, on an htb-shaped namespace or plain loopback."""
    from splitopt.execute.links import DEVICE_PORT0, SERVER_PORT, Namespace

    with contextlib.ExitStack() as st:
        inside: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        port, src = 0, [0] * n
        if links == "htb":
            ns = st.enter_context(Namespace())  # removed when the exchange ends
            ns.shape({DEVICE_PORT0 + k + 1: r for k, r in enumerate(rates)})
            inside = ns.entered()  # sockets made inside stay in the namespace
            port, src = SERVER_PORT, [DEVICE_PORT0 + k + 1 for k in range(n)]
        with inside:
            listener = wire.listen("127.0.0.1", port)
            devs = [wire.connect("127.0.0.1", listener.getsockname()[1], k,
                                 source_port=src[k], timeout_s=30.0) for k in range(n)]
            srvs = wire.accept(listener, n, timeout_s=30.0)
        try:
            yield [(devs[k], srvs[k]) for k in range(n)]
        finally:
            for p in [*devs, *srvs.values()]:
                p.close()
