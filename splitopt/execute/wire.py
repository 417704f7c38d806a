"""Tensor messages between processes over torch.distributed point-to-point (gloo), with pacing.

A message is a list of tensors of any dtypes and shapes. It travels as three sends: a fixed
header (meta length, payload bytes, the sender's wall clock in ns), the meta (dtype, shape and
size of each tensor) and one byte payload, so a state dict of many tensors costs three sends.

Link rates are enforced by pacing: a device's upload takes at least ``8 * bytes / up_bps`` (the
sender sleeps the remainder), and a download to a device completes no earlier than the server's
send time plus ``8 * bytes / dn_bps`` (the receiving device sleeps the remainder), so the server
never sleeps on behalf of one device while others wait. ``bytes`` counts tensor data only. The
send time travels in the header; both ends read ``time.time_ns()``, which is the same clock on one
machine (on several machines it assumes synchronised clocks, e.g. NTP).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool]
_ALIGN = 8


@dataclass(frozen=True)
class Transfer:
    """One message: tensor bytes, seconds it took (pacing included), sender's start (ns)."""

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


def send(tensors: Sequence[torch.Tensor], dst: int, *, rate_bps: float | None = None) -> Transfer:
    """Send a tensor list to rank ``dst``; with ``rate_bps`` take at least ``8*bytes/rate``."""
    t0, sent_ns = time.perf_counter(), time.time_ns()
    meta, payload, nbytes = _pack(tensors)
    dist.send(torch.tensor([meta.numel(), payload.numel(), sent_ns], dtype=torch.int64), dst)
    dist.send(meta, dst)
    if payload.numel():
        dist.send(payload, dst)
    if rate_bps:
        _sleep_until(t0 + 8.0 * nbytes / rate_bps)
    return Transfer(nbytes, time.perf_counter() - t0, sent_ns)


def recv(src: int, *, rate_bps: float | None = None) -> tuple[list[torch.Tensor], Transfer]:
    """Receive a tensor list from rank ``src``.

    With ``rate_bps`` the call returns no earlier than the sender's start plus ``8*bytes/rate``;
    the Transfer's seconds then run from the sender's start (the link time, not the wait for the
    sender to start sending).
    """
    head = torch.zeros(3, dtype=torch.int64)
    dist.recv(head, src)
    n_meta, n_payload, sent_ns = (int(v) for v in head.tolist())
    meta = torch.zeros(n_meta, dtype=torch.int64)
    dist.recv(meta, src)
    payload = torch.zeros(n_payload, dtype=torch.uint8)
    if n_payload:
        dist.recv(payload, src)
    tensors = _unpack(meta, payload)
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    if rate_bps:
        wait = sent_ns / 1e9 + 8.0 * nbytes / rate_bps - time.time_ns() / 1e9
        if wait > 0:
            time.sleep(wait)
    return tensors, Transfer(nbytes, time.time_ns() / 1e9 - sent_ns / 1e9, sent_ns)


def _sleep_until(deadline: float) -> None:
    left = deadline - time.perf_counter()
    if left > 0:
        time.sleep(left)
