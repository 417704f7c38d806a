"""Emulated links: each device's connection shaped by the kernel to the plan's rates.

Design: the run creates one network namespace of its own (``splitopt-<pid>-<random>``), sets its
loopback to a 1500-byte MTU (and GSO size, so the queueing discipline sees real packet sizes),
and installs one ``htb`` qdisc on it with two classes per device, classified by the device's port:

    tc qdisc add dev lo root handle 1: htb default 1            # unshaped: start-up traffic
    tc class add dev lo parent 1: classid 1:<2k+2> htb rate <r_up,k>bit burst <b>  # uplink of k
    tc class add dev lo parent 1: classid 1:<2k+3> htb rate <r_dn,k>bit burst <b>  # downlink of k
    tc filter ... u32 match ip sport <port_k> flowid 1:<2k+2>   # device -> server
    tc filter ... u32 match ip dport <port_k> flowid 1:<2k+3>   # server -> device

Every process of the run is started inside the namespace (the launcher enters it with
``setns(2)`` just while it starts them), so all traffic stays on addresses inside it. The
namespace is deleted when the run ends, also on failure (``try/finally`` and ``atexit``);
deleting it removes its qdisc and classes with it. A launcher killed outright (``kill -9``) runs
neither: the next run sweeps namespaces whose launcher process no longer exists. The rate on the
wire includes TCP/IP headers (about 3.6% of a 1500-byte packet), as a real link's would. The
bucket ``<b>`` is small (:func:`burst_bytes`, ~50 us of the rate), so a message's first packet
is not let through for free.

Where this is not possible (not root, no ``ip``/``tc``, namespaces refused), the runner falls
back to pacing in user space (:mod:`splitopt.execute.wire`), and every result records which
(``links: "htb" | "paced" | "priced"``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from splitopt.errors import SplitoptError

CLONE_NEWNET = 0x40000000
MTU = 1500
BURST_S = 50e-6  #: token bucket depth of a shaped link, in seconds of its rate (burst_bytes)
MIN_BURST = 200  #: ... and at least this many bytes (about one header segment)
SERVER_PORT = 29400  #: the server's data port inside a run's namespace
DEVICE_PORT0 = 29500  #: device k (rank k) connects from DEVICE_PORT0 + k


class LinkError(SplitoptError):
    """Link emulation could not be set up."""


def _run(*cmd: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LinkError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.returncode}")


@functools.cache
def htb_unavailable() -> str | None:
    """None when namespaces and htb work here; else the reason (probed once per process)."""
    if os.geteuid() != 0:
        return "not root (network namespaces and tc need CAP_NET_ADMIN)"
    missing = [t for t in ("ip", "tc") if shutil.which(t) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    try:
        with Namespace() as ns:
            ns.shape({DEVICE_PORT0 + 1: (1e6, 1e6)})
    except (LinkError, OSError) as err:
        return str(err)
    return None


def sweep_stale() -> list[str]:
    """Delete namespaces left by killed runs: the launcher is gone and no process is inside."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    gone = []
    for line in listing.stdout.splitlines():
        m = re.fullmatch(r"splitopt-(\d+)-[0-9a-f]+", line.split(" ")[0])
        if m and not Path(f"/proc/{m.group(1)}").exists() and not _pids_in(m.group(0)):
            subprocess.run(["ip", "netns", "del", m.group(0)], capture_output=True, check=False)
            gone.append(m.group(0))
    return gone


def _pids_in(name: str) -> str:
    res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                         check=False)
    return res.stdout.strip()


def burst_bytes(bps: float) -> int:
    """The token bucket of one device direction: :data:`BURST_S` of the rate, >= MIN_BURST.

    htb releases a packet as soon as its class has tokens >= 0, so a bucket of one MTU (the
    usual choice) lets the first ~1500 bytes of a message pass at once: on the demo plan's
    0.2 ms messages (~1.6 KB at 53 Mbit/s) the measured link time was a fifth of the planned
    one and all of it jitter. A bucket of ~50 us of the rate keeps the planned rate for small
    messages and still makes up for the shaper's timer firing late on a loaded machine (with
    no bucket at all a 200 KB message ran 4% slower than the rate under load).
    """
    return max(MIN_BURST, int(bps * BURST_S / 8))


def _htb_class(cls: int, bps: float) -> tuple[str, ...]:
    """The arguments after ``tc class add|change`` of one device direction's htb class."""
    burst = str(burst_bytes(bps))
    return ("dev", "lo", "parent", "1:", "classid", f"1:{cls:x}", "htb",
            "rate", f"{max(int(bps), 8)}bit", "burst", burst, "cburst", burst,
            "quantum", str(MTU + 14))


def reshape(k: int, up_bps: float, dn_bps: float) -> None:
    """Change device ``k``'s (0-based, in port order) uplink and downlink rates.

    Run from a process inside the run's namespace (the multi-process server is, as root): an
    adaptive run changes a device's link between rounds as its trace does.
    """
    _run("tc", "class", "change", *_htb_class(2 * k + 2, up_bps))
    _run("tc", "class", "change", *_htb_class(2 * k + 3, dn_bps))


class Namespace:
    """A network namespace of this run; shaped by :meth:`shape`, removed on exit."""

    def __init__(self) -> None:
        self.name = f"splitopt-{os.getpid()}-{secrets.token_hex(3)}"
        self._open = False

    def __enter__(self) -> Namespace:
        sweep_stale()
        _run("ip", "netns", "add", self.name)
        self._open = True
        atexit.register(self.close)
        try:
            _run("ip", "-n", self.name, "link", "set", "lo", "up", "mtu", str(MTU))
            # without this the loopback hands the qdisc 64 KB segments, far coarser than a link
            with contextlib.suppress(LinkError):
                _run("ip", "-n", self.name, "link", "set", "lo", "gso_max_size", str(MTU))
            # a link that idles between messages keeps its congestion window, as a long-lived
            # transfer connection would (the default restarts slow start after every wait)
            with contextlib.suppress(LinkError):
                _run("ip", "netns", "exec", self.name, "sysctl", "-qw",
                     "net.ipv4.tcp_slow_start_after_idle=0")
            # autocorking would hold a message's last segment while earlier ones wait in the
            # shaper and merge the end marker into it (wire.py: the marker is a segment of its own)
            with contextlib.suppress(LinkError):
                _run("ip", "netns", "exec", self.name, "sysctl", "-qw",
                     "net.ipv4.tcp_autocorking=0")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the namespace (and with it its qdisc and classes); safe to call twice.

        ``ip netns del`` can fail while another process adds or deletes a namespace at the same
        moment (their bind mounts race), so it is retried; a namespace that still stands is left
        to the exit handler and to the next run's sweep.
        """
        if not self._open:
            return
        for attempt in range(6):
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
            if not (Path("/run/netns") / self.name).exists():
                self._open = False
                atexit.unregister(self.close)
                return
            time.sleep(0.05 * (attempt + 1))

    def tc(self, *args: str) -> None:
        """Run ``tc`` inside the namespace."""
        _run("ip", "netns", "exec", self.name, "tc", *args)

    def shape(self, rates: Mapping[int, tuple[float, float]]) -> None:
        """One uplink and one downlink htb class per device port: ``{port: (up_bps, dn_bps)}``."""
        self.tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1")
        self.tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb",
                "rate", "100gbit", "quantum", "60000")
        for k, (port, (up, dn)) in enumerate(sorted(rates.items())):
            for cls, bps, key in ((2 * k + 2, up, "sport"), (2 * k + 3, dn, "dport")):
                self.tc("class", "add", *_htb_class(cls, bps))
                self.tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio",
                        "1", "u32", "match", "ip", key, str(port), "0xffff",
                        "flowid", f"1:{cls:x}")

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body (e.g. starting processes) with this thread inside the namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net", "rb") as home, \
                open(Path("/run/netns") / self.name, "rb") as ns:
            if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                raise LinkError(f"setns into {self.name}: {os.strerror(ctypes.get_errno())}")
            try:
                yield
            finally:
                libc.setns(home.fileno(), CLONE_NEWNET)
