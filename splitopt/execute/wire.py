"""Tensor messages between the server and a device over one TCP connection per device.

A message is a list of tensors of any dtypes and shapes. It travels as one header (meta length,
payload bytes, the sender's wall clock in ns), the meta (dtype, shape and size of each tensor),
one byte payload and a one-byte end marker written on its own after the payload. Each device
owns one connection to the server, bound to a port of its own, so a kernel queueing discipline
can shape each device's link by port (:mod:`splitopt.execute.links`).

How a link's rate is enforced, and how its time is measured:

* ``htb``: the kernel shapes the connection; nobody sleeps.
* ``paced`` (no kernel shaping available): an upload is sent in chunks, each released when the
  link would have carried it (the last at ``t0 + 8 * bytes / up_bps``); a download to a device
  completes no earlier than the server's send time plus ``8 * bytes / dn_bps`` (the receiving
  device sleeps the remainder), so the server never sleeps on behalf of one device while others
  wait.

A transfer's time runs from the sender's start (its wall clock just before its first write,
carried in the header; one clock on one machine, NTP-synchronised across machines) until the end
marker arrived at the receiver, by the kernel's receive timestamp (``SO_TIMESTAMPNS``), so
neither the receiver's wake-up nor the server being busy with another device counts as link time
(model uploads included: an earlier version timed them at the sender by waiting until the
receiving kernel had acknowledged every byte, which a delayed ACK stretched by up to 40 ms).
Why the marker: a shaper (htb, a token bucket) releases a packet when the bucket allows its
*start*, so the last data packet's own serialisation time is never seen by the receiver; on a
message of one or two packets that is most of the link time. The marker, a packet of its own, is
released only once every byte before it has been paid for at the link's rate: its arrival is when
a serial link would have delivered the message's last byte. That holds only while the marker
stays a segment of its own: Linux appends a write to the last segment still waiting in the
socket (not yet handed to the shaper: held back by TCP small queues while earlier segments sit
in the shaper, or by BBR's pacing, BBR being this machine's default), so the marker often rode
in the message's last data packet, and the message arrived one packet-time early (an 8 KB message at
53 Mbit/s measured 1.14 ms, median, against the 1.24 ms of its payload alone: 6 packets instead of 7
for 38 of 40 messages under cubic). So every write ends its segment (``MSG_EOR``: Linux never
appends to such a segment), and connections use ``cubic``, which does not pace (BBR's pacing gain
below 1 would also slow a message below the link's rate). ``bytes`` counts tensor data.
A peer whose process died surfaces as :class:`PeerGone` on the next exchange with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import socket
import struct
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool]
_ALIGN = 8
_HEAD = struct.Struct("<qqq")
_SENT_AT = 16  #: offset of the sender's clock (ns) in the header
_CHUNK_S = 0.005  #: pacing granularity: one chunk per 5 ms of link time
_SO_TIMESTAMPNS = 35  #: Linux SOL_SOCKET option: kernel receive time of each segment (ns)
_END = b"\x00"  #: the end marker after each message's payload (module docstring)
_EOR = getattr(socket, "MSG_EOR", 0)  #: ends the write's last TCP segment: nothing is appended
_CONGESTION = b"cubic"  #: a congestion control that does not pace (module docstring)


class PeerGone(ConnectionError):
    """The other end of a connection closed it (its process died) or stopped answering."""


@dataclass(frozen=True)
class Transfer:
    """One message: tensor bytes, seconds it took on the link, sender's start (ns)."""

    nbytes: int
    seconds: float
    sent_ns: int


def _pack(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    meta: list[int] = [len(tensors)]
    chunks: list[torch.Tensor] = []
    data_bytes = 0
    for t in tensors:
        t = t.detach().contiguous()
        raw = t.reshape(-1).view(torch.uint8)
        meta += [_DTYPES.index(t.dtype), t.dim(), *t.shape, raw.numel()]
        data_bytes += raw.numel()
        chunks.append(raw)
        pad = -raw.numel() % _ALIGN
        if pad:
            chunks.append(torch.zeros(pad, dtype=torch.uint8))
    payload = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.uint8)
    return torch.tensor(meta, dtype=torch.int64), payload, data_bytes


def _unpack(meta: torch.Tensor, payload: torch.Tensor) -> list[torch.Tensor]:
    m = meta.tolist()
    out, i, off = [], 1, 0
    for _ in range(m[0]):
        dtype, ndim = _DTYPES[m[i]], m[i + 1]
        shape, size = m[i + 2:i + 2 + ndim], m[i + 2 + ndim]
        i += 3 + ndim
        raw = payload[off:off + size]
        out.append(raw.view(dtype).reshape(shape).clone())
        off += size + (-size % _ALIGN)
    return out


class Peer:
    """One end of a server-device connection."""

    def __init__(self, sock: socket.socket, timeout_s: float | None = None) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError, AttributeError):  # module docstring: no TCP pacing
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, _CONGESTION)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < _SNDBUF:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        sock.settimeout(timeout_s)
        self.sock = sock
        try:  # when the last byte arrived, by the kernel's clock (not when this process woke up)
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self._stamped = True
        except OSError:
            self._stamped = False
        self._arrived_ns = 0

    def send(self, tensors: Sequence[torch.Tensor], *, rate_bps: float | None = None) -> Transfer:
        """Send a tensor list; ``rate_bps`` paces it."""
        meta, payload, nbytes = _pack(tensors)
        body = payload.numpy().data.cast("B")
        head = bytearray(_HEAD.pack(meta.numel(), payload.numel(), 0)) + meta.numpy().tobytes()
        try:
            at_once = None if rate_bps else _prepare_at_once(self.sock, head, body)
            # the clock starts as late as possible: a sender that loses its CPU between its
            # clock and its write lengthens the measured transfer (packing is not link time)
            t0, sent_ns = time.perf_counter(), time.time_ns()
            if at_once is not None and at_once(sent_ns):
                return Transfer(nbytes, time.perf_counter() - t0, sent_ns)
            struct.pack_into("<q", head, _SENT_AT, sent_ns)
            self.sock.sendall(head)
            if rate_bps:
                # a chunk leaves when the link would have carried it: the last one at t0 + 8*B/r
                step = max(1, int(rate_bps / 8 * _CHUNK_S))
                for off in range(0, len(body), step):
                    _sleep_until(t0 + 8.0 * min(off + step, nbytes) / rate_bps)
                    self.sock.sendall(body[off:off + step], _EOR)
            else:
                self.sock.sendall(body, _EOR)
            self.sock.sendall(_END, _EOR)  # a segment of its own: arrives when the link carried all
        except (OSError, TimeoutError) as err:
            raise PeerGone(str(err)) from None
        return Transfer(nbytes, time.perf_counter() - t0, sent_ns)

    def recv(self, *, rate_bps: float | None = None) -> tuple[list[torch.Tensor], Transfer]:
        """Receive a tensor list.

        With ``rate_bps`` the call returns no earlier than the sender's start plus
        ``8*bytes/rate``. The Transfer's seconds run from the sender's start until the end marker
        arrived (the kernel's receive time where available) or, paced, until that deadline.
        """
        n_meta, n_payload, sent_ns = _HEAD.unpack(self._read(_HEAD.size))
        meta = torch.frombuffer(bytearray(self._read(8 * n_meta)), dtype=torch.int64)
        payload = torch.empty(n_payload, dtype=torch.uint8)
        if n_payload:
            self._read_into(payload.numpy().data.cast("B"))
        self._read(len(_END))  # its kernel receive time is the message's end (module docstring)
        tensors = _unpack(meta, payload)
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        end_ns = self._arrived_ns or time.time_ns()
        if rate_bps:
            end_ns = max(end_ns, sent_ns + int(8e9 * nbytes / rate_bps))
            wait = (end_ns - time.time_ns()) / 1e9
            if wait > 0:
                time.sleep(wait)
        return tensors, Transfer(nbytes, (end_ns - sent_ns) / 1e9, sent_ns)

    def _read(self, n: int) -> bytes:
        buf = bytearray(n)
        self._read_into(memoryview(buf))
        return bytes(buf)

    def _read_into(self, view: memoryview) -> None:
        got = 0
        self._arrived_ns = 0
        try:
            while got < len(view):
                if self._stamped:
                    k, anc, _, _ = self.sock.recvmsg_into([view[got:]], socket.CMSG_SPACE(16))
                    for level, kind, data in anc:
                        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                            sec, nsec = struct.unpack("qq", data[:16])
                            self._arrived_ns = sec * 1_000_000_000 + nsec
                else:
                    k = self.sock.recv_into(view[got:])
                if k == 0:
                    raise PeerGone("connection closed by peer")
                got += k
        except (OSError, TimeoutError) as err:
            if isinstance(err, PeerGone):
                raise
            raise PeerGone(str(err)) from None

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def listen(host: str, port: int = 0) -> socket.socket:
    """The server's listening socket for device connections."""
    return socket.create_server((host, port), backlog=1024)


def accept(listener: socket.socket, n: int, timeout_s: float) -> dict[int, Peer]:
    """Accept up to ``n`` device connections within ``timeout_s``; each says its rank first.

    Returns ``{rank: Peer}``; a device that never connects is missing (it is treated as failed).
    """
    deadline = time.monotonic() + timeout_s
    peers: dict[int, Peer] = {}
    while len(peers) < n and time.monotonic() < deadline:
        listener.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock, _ = listener.accept()
            peer = Peer(sock, timeout_s)
            (rank,), _ = peer.recv()
        except (OSError, PeerGone):
            continue  # a device that died before saying who it is, or the deadline
        peers[int(rank)] = peer
    listener.close()
    return peers


def connect(host: str, port: int, rank: int, *, source_port: int = 0,
            timeout_s: float | None = None) -> Peer:
    """A device's connection to the server, from ``source_port`` (0: any), announcing ``rank``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", source_port))
    sock.settimeout(timeout_s)
    sock.connect((host, port))
    peer = Peer(sock, timeout_s)
    peer.send([torch.tensor(rank)])
    return peer


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_IOVec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


_AT_ONCE = 65536  #: messages up to this size are written with their end marker in one call
_SNDBUF = 4 * _AT_ONCE  #: send buffer of a connection: room for such a message at any time


def _prepare_at_once(sock: socket.socket, head: bytearray, body: memoryview,
                     ) -> Callable[[int], bool] | None:
    """A message and its end marker made ready for one system call (``sendmmsg``), or None.

    Written as separate calls, the first write wakes the receiver, which on a busy machine can
    take the sender's CPU before its next write: a small message then measured several times its
    link time (the demo plan's 0.2 ms downloads: +130%). One ``sendmmsg`` of two messages (the
    data, then the marker, still two TCP segments) leaves no gap between them. Only done when
    the send buffer surely holds both (else a partly written first message would be followed by
    the marker). The returned call stamps the sender's clock into the header and writes; False:
    nothing was written (the caller writes it the usual way).
    """
    total = len(head) + len(body)
    if total > _AT_ONCE or _SENDMMSG is None:
        return None
    queued = bytearray(4)
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued)
    room = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - int.from_bytes(queued, "little")
    if 2 * (total + len(_END)) > room:  # buffer space is counted with per-packet overhead
        return None
    data = head + body
    keep = [(ctypes.c_char * len(b)).from_buffer(b) for b in (data, bytearray(_END))]
    iovs = [_IOVec(ctypes.addressof(k), len(k)) for k in keep]
    msgs = (_MMsgHdr * 2)(*(_MMsgHdr(_MsgHdr(None, 0, ctypes.pointer(v), 1, None, 0, 0), 0)
                            for v in iovs))

    def write(sent_ns: int, _buffers: list[Any] = keep) -> bool:  # the iovecs point into them
        struct.pack_into("<q", data, _SENT_AT, sent_ns)
        sent = _SENDMMSG(sock.fileno(), msgs, 2, _EOR)
        if sent == 2 and msgs[0].len == len(data):
            return True
        if sent <= 0:
            return False  # nothing written (e.g. EAGAIN)
        raise PeerGone(f"sendmmsg wrote {msgs[0].len} of {len(data)} bytes of a message")

    return write


def _libc_sendmmsg() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sendmmsg
    except (OSError, AttributeError):
        return None  # not Linux: separate writes
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SENDMMSG = _libc_sendmmsg()


def _sleep_until(deadline: float) -> None:
    left = deadline - time.perf_counter()
    if left > 0:
        time.sleep(left)
