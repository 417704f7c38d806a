"""Per-message link overhead, learned from a calibration exchange on the run's kind of links.

The reference cost model (docs/cost_model.md) prices a message of ``B`` bytes on a link of rate
``r`` as ``8 * B / r``. A real link adds a fixed cost per message (the header and meta, the
system calls, the hand-off between processes, the TCP acknowledgements, and on ``htb`` the first
packets a token bucket lets through at once): the alpha-beta model

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
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from statistics import median

import numpy as np
import torch

from splitopt.costs import Phases
from splitopt.execute import wire
from splitopt.execute.job import Job
from splitopt.system import link_of

LINK_PHASES = ("uplink_s", "downlink_s", "aggregation_s")
SCALES = (1, 4)  #: message sizes of the exchange, in multiples of the plan's message
REPEATS = 7  #: messages per size and direction (the median is fitted)
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
    paced = links == "paced"
    fits: dict[str, dict[str, LinkFit]] = {}
    with _connections(len(devices), [(r.up_bps, r.dn_bps) for r in rates], links) as pairs:
        for (dev, srv), d, ln in zip(pairs, devices, rates, strict=True):
            ph = reference[d.device]
            sizes = {"uplink_s": int(ph.uplink_s * ln.up_bps / 8 / iters),
                     "downlink_s": int(ph.downlink_s * ln.dn_bps / 8 / iters),
                     "aggregation_s": int(ph.aggregation_s / (8 / ln.up_bps + 8 / ln.dn_bps))}
            link = _Link(dev, srv, ln.up_bps, ln.dn_bps, paced,
                         torch.zeros(job.batch_size(d), dtype=torch.int64))
            pts: dict[str, list[tuple[float, float]]] = {k: [] for k in LINK_PHASES}
            for s in SCALES:
                for _ in range(repeats):
                    if sizes["uplink_s"]:
                        pts["uplink_s"].append(link.uplink(sizes["uplink_s"] * s))
                    if sizes["downlink_s"]:
                        pts["downlink_s"].append(link.downlink(sizes["downlink_s"] * s))
                    if aggregate:
                        pts["aggregation_s"].append(link.aggregation(sizes["aggregation_s"] * s))
            fits[d.device] = {k: fit_alpha(p) for k, p in pts.items() if p}
    return fits


_POOL = ThreadPoolExecutor(1, thread_name_prefix="splitopt-linkcal")


@dataclass(frozen=True)
class _Link:
    """One device's connection in the exchange; each method: (reference s, measured s).

    As in the runners: an upload is timed by the server's receive, a download by the device's,
    a model upload by the device's drained send; ``paced`` links pace as the runners do.
    """

    dev: wire.Peer
    srv: wire.Peer
    up_bps: float
    dn_bps: float
    paced: bool
    labels: torch.Tensor

    def uplink(self, n: int) -> tuple[float, float]:
        rate = self.up_bps if self.paced else None
        return 8 * n / self.up_bps, _timed(
            lambda: self.dev.send([_bytes(n), self.labels], rate_bps=rate),
            lambda: self.srv.recv()[1].seconds)

    def downlink(self, n: int) -> tuple[float, float]:
        rate = self.dn_bps if self.paced else None
        return 8 * n / self.dn_bps, _timed(lambda: self.srv.send([_bytes(n)]),
                                           lambda: self.dev.recv(rate_bps=rate)[1].seconds)

    def aggregation(self, n: int) -> tuple[float, float]:
        down = self.downlink(n)
        rate = self.up_bps if self.paced else None
        up = _timed(self.srv.recv,
                    lambda: self.dev.send([_bytes(n)], rate_bps=rate, drain=True).seconds)
        return down[0] + 8 * n / self.up_bps, down[1] + up


def _bytes(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.uint8)


def _timed(other: Callable[[], object], timed: Callable[[], float]) -> float:
    """Run ``other`` in a helper thread while this one runs ``timed``; ``timed``'s seconds."""
    time.sleep(GAP_S)
    fut = _POOL.submit(other)
    seconds = float(timed())
    fut.result()
    return seconds


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
