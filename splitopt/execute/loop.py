"""The round loop, owned by the library: every runner and every mode go through it.

A *backend* (the in-process runner, or the server process of the multi-process runner) executes
the events of one round and evaluates the model; the loop asks the mode for each round's events,
logs the round, evaluates, and writes checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from splitopt.errors import SplitoptError
from splitopt.execute.job import Job
from splitopt.execute.modes import Event

PHASES = ("device_compute_s", "server_compute_s", "uplink_s", "downlink_s", "aggregation_s")


@dataclass
class DeviceRound:
    """What one device did in one round: seconds per phase, iterations, samples, loss sum."""

    device_compute_s: float = 0.0
    server_compute_s: float = 0.0
    uplink_s: float = 0.0
    downlink_s: float = 0.0
    aggregation_s: float = 0.0
    iterations: int = 0
    samples: int = 0
    loss_sum: float = 0.0
    up_bytes: int = 0
    down_bytes: int = 0
    #: CPU seconds of the computing process (time.process_time) beside the wall seconds above:
    #: load from other jobs on a shared machine stretches wall time, hardly CPU time
    device_compute_cpu_s: float = 0.0
    server_compute_cpu_s: float = 0.0

    def add_compute(self, phase: str, since: tuple[float, float], share: float = 1.0) -> None:
        """Add the wall and CPU seconds since ``since`` (a :func:`stamp`) to a compute phase.

        ``phase`` is ``device_compute_s`` or ``server_compute_s``; both are divided by ``share``.
        """
        wall, cpu = stamp()
        cpu_phase = phase.replace("_s", "_cpu_s")
        setattr(self, phase, getattr(self, phase) + (wall - since[0]) / share)
        setattr(self, cpu_phase, getattr(self, cpu_phase) + (cpu - since[1]) / share)

    @property
    def total_s(self) -> float:
        """Sum of the phases (no overlap, as in the reference cost model)."""
        return sum(getattr(self, p) for p in PHASES)


@dataclass
class RoundRecord:
    """One round of a run."""

    round: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    wall_s: float
    latency_s: float
    aggregate_compute_s: float
    devices: dict[str, DeviceRound]
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["devices"] = {k: {**asdict(v), "total_s": v.total_s} for k, v in self.devices.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundRecord:
        """The inverse of :meth:`to_dict` (checkpoints store records as plain data)."""
        fields = set(DeviceRound.__dataclass_fields__)
        devices = {k: DeviceRound(**{f: v for f, v in st.items() if f in fields})
                   for k, st in d["devices"].items()}
        return cls(int(d["round"]), float(d["train_loss"]), float(d["test_loss"]),
                   float(d["test_accuracy"]), float(d["wall_s"]), float(d["latency_s"]),
                   float(d["aggregate_compute_s"]), devices, list(d["failed"]))


def mean_loss(stats: Mapping[str, DeviceRound]) -> float:
    """A round's training loss: the devices' losses weighted by samples (NaN when none)."""
    samples = sum(s.samples for s in stats.values())
    return sum(s.loss_sum for s in stats.values()) / samples if samples else float("nan")


def stamp() -> tuple[float, float]:
    """(wall, CPU) seconds now: ``time.perf_counter()`` and this process's ``process_time()``."""
    return time.perf_counter(), time.process_time()


class TrainingDiverged(SplitoptError):
    """The training loss stopped being a finite number; the run is stopped."""

    @classmethod
    def at(cls, rnd: int, loss: float, lr: float) -> TrainingDiverged:
        """The error for round ``rnd`` (0-based) whose training loss was ``loss``."""
        return cls(f"round {rnd}: the training loss is {loss} (not finite), so training "
                   f"diverged and was stopped. Lower the learning rate (--lr {lr:g}).")


class Backend(Protocol):
    """What the loop needs from a runner."""

    def alive(self) -> list[str]:
        """Devices still running."""

    def run_round(self, rnd: int, events: list[Event]) -> RoundRecord:
        """Execute one round's events; test fields are filled by the loop."""

    def evaluate(self) -> tuple[float, float]:
        """(test loss, test accuracy) of the current model(s)."""

    def save_checkpoint(self, folder: Path, rnd: int, history: list[RoundRecord]) -> None:
        """Write all state after round ``rnd`` into ``folder``."""


def round_latency(devices: dict[str, DeviceRound], schedule: str, modes: dict[str, str]) -> float:
    """Round latency from per-device times (as :func:`splitopt.costs.combine_rounds`).

    Split devices in turn (sum) or in parallel (max); FL-mode devices in parallel.
    """
    from splitopt.costs import combine_rounds

    if not devices:
        return 0.0
    names = list(devices)
    return combine_rounds([devices[d].total_s for d in names], [modes[d] for d in names], schedule)


def run_rounds(job: Job, backend: Backend, *, start: int = 0,
               history: list[RoundRecord] | None = None,
               on_round: Callable[[RoundRecord], None] | None = None,
               before_round: Callable[[int, float], None] | None = None) -> list[RoundRecord]:
    """Run rounds ``start .. job.config.rounds - 1``; returns the full history.

    ``before_round(round, elapsed_s)`` is called between rounds (and before the first) with the
    run's elapsed time so far, the sum of the rounds' latencies (an adaptive run re-plans there).
    """
    mode, cfg = job.training_mode(), job.config
    history = list(history or [])
    for rnd in range(start, cfg.rounds):
        if before_round is not None:
            before_round(rnd, sum(r.latency_s for r in history))
        t0 = time.perf_counter()
        events = mode.round_events(rnd, backend.alive(), job.iters())
        rec = backend.run_round(rnd, events)
        if any(st.samples for st in rec.devices.values()) and not math.isfinite(rec.train_loss):
            raise TrainingDiverged.at(rnd, rec.train_loss, cfg.lr)
        rec.test_loss, rec.test_accuracy = backend.evaluate()
        rec.wall_s = time.perf_counter() - t0
        history.append(rec)
        if cfg.checkpoint_every and (rnd + 1) % cfg.checkpoint_every == 0:
            backend.save_checkpoint(Path(str(cfg.checkpoint_dir)), rnd, history)
        if on_round is not None:
            on_round(rec)
    return history
