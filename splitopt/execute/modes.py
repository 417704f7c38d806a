"""Training modes as small hooks on one library-owned round loop (Flower ``Strategy`` style).

A round is a list of *events* that every runner walks in the same order: the in-process runner
executes each event whole; in the multi-process runner the server and each device process execute
their own half of the events that concern them. A mode only says which events make up a round and
how the server treats the devices (one shared server model or one copy per device; a server step
per device iteration or one accumulated step per iteration). Same events, same order, same
arithmetic: the two runners reach the same weights.

Events
------
``Sync(devices)``
    the server sends the global model's device part to each device (and loads the global model
    into the server model(s) that serve them);
``Step(device, iteration)``
    one local iteration: split devices run device forward, server forward/backward, device
    backward; FL-mode devices train the whole model locally;
``ServerStep(iteration)``
    the server applies the gradient it accumulated over the devices' iteration (parallel SL);
``Collect(devices)``
    the devices upload their device part and the global model becomes their FedAvg (weights =
    samples per device); with one device this is the hand-over of vanilla SL.

Readings of the papers where they leave room
--------------------------------------------
* SL (Gupta & Raskar 2018): devices in turn, each runs all its local iterations against one
  server model, then hands its device-side weights on (through the server).
* SFL-V1 / SFL-V2 (Thapa et al., SplitFed, AAAI 2022): V1 gives each device its own server copy
  and FedAvgs server copies and device models each round; V2 keeps one server model that processes
  the devices' batches in turn (device order, iteration by iteration) and FedAvgs device models.
* Parallel SL as in EdgeSplit (Zhang et al., arXiv 2403.15815): per-device device-side models that
  are never aggregated, one shared server model. Our reading: in each iteration the server
  back-propagates every device's batch, accumulates the gradients weighted by batch size, and takes
  one step (the "server aggregates the gradients" variant of parallel SL).
* HSFL: each device trains in the mode its plan gives (``fl``: whole model local; ``split``: with
  its own server copy, as SFL-V1); everything is FedAvg'd into one global model each round.
* FL (McMahan et al. 2017): every device trains the whole model; FedAvg each round.

Optimisers live as long as the run: aggregation overwrites parameters in place, so the momentum of
each device's and each server model's optimiser carries across rounds and is never rebuilt per
batch (a known defect of public SplitFed code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from splitopt.errors import InputError


@dataclass(frozen=True)
class Sync:
    """Send the global device part to ``devices``."""

    devices: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One local iteration of ``device``."""

    device: str
    iteration: int


@dataclass(frozen=True)
class ServerStep:
    """Apply the server gradient accumulated over one iteration of every device."""

    iteration: int


@dataclass(frozen=True)
class Collect:
    """FedAvg the devices' models into the global model."""

    devices: tuple[str, ...]


Event = Sync | Step | ServerStep | Collect


class TrainingMode:
    """Base class: parallel devices, per-device server copies, FedAvg each round (SFL-V1).

    Subclasses change the class flags or override :meth:`round_events` / :meth:`device_mode`.
    """

    name: ClassVar[str] = "sflv1"
    shared_server: ClassVar[bool] = False
    accumulate_server: ClassVar[bool] = False
    schedule: ClassVar[Literal["parallel", "sequential"]] = "parallel"
    has_global: ClassVar[bool] = True

    def device_mode(self, planned: str) -> str:
        """The mode a device trains in, given the plan's mode for it."""
        if planned == "fl":
            raise InputError("plan device mode", "fl", f"'split' in mode {self.name!r}",
                             "Run the plan with --mode hsfl (or fl).")
        return "split"

    def round_events(self, rnd: int, devices: Sequence[str], iters: int) -> list[Event]:
        """The events of round ``rnd`` (0-based) for the alive ``devices``."""
        ds = tuple(devices)
        steps: list[Event] = [Step(d, t) for t in range(iters) for d in ds]
        return [Sync(ds), *steps, Collect(ds)]


class SFLV1(TrainingMode):
    """SplitFed V1: per-device server copies, server copies and device models FedAvg'd."""


class SFLV2(TrainingMode):
    """SplitFed V2: one server model updated in turn; device models FedAvg'd."""

    name = "sflv2"
    shared_server = True


class SL(TrainingMode):
    """Vanilla split learning: devices in turn through one server model."""

    name = "sl"
    shared_server = True
    schedule = "sequential"

    def round_events(self, rnd: int, devices: Sequence[str], iters: int) -> list[Event]:
        """Each device: receive the weights, run all its iterations, hand the weights on."""
        out: list[Event] = []
        for d in devices:
            out += [Sync((d,)), *(Step(d, t) for t in range(iters)), Collect((d,))]
        return out


class ParallelSL(TrainingMode):
    """Parallel SL (EdgeSplit).

    Own device models, never averaged; one server, one step per
    iteration.
    """

    name = "psl"
    shared_server = True
    accumulate_server = True
    has_global = False

    def round_events(self, rnd: int, devices: Sequence[str], iters: int) -> list[Event]:
        """Devices start from the same initial model; afterwards only server steps join them."""
        ds = tuple(devices)
        out: list[Event] = [Sync(ds)] if rnd == 0 else []
        for t in range(iters):
            out += [*(Step(d, t) for d in ds), ServerStep(t)]
        # devices upload their models for evaluation only: nothing is averaged or sent back
        return [*out, Collect(ds)]


class HSFL(TrainingMode):
    """Hybrid split/federated learning: each device in its planned mode, one global model."""

    name = "hsfl"

    def device_mode(self, planned: str) -> str:
        """The plan's mode, as given."""
        return planned


class FL(TrainingMode):
    """Federated averaging of whole models, the reference."""

    name = "fl"

    def device_mode(self, planned: str) -> str:
        """Always the whole model on the device."""
        return "fl"


MODES: dict[str, type[TrainingMode]] = {m.name: m for m in (SL, SFLV1, SFLV2, ParallelSL, HSFL, FL)}


def get_mode(name: str | TrainingMode) -> TrainingMode:
    """A mode instance from its name (``sl``, ``sflv1``, ``sflv2``, ``psl``, ``hsfl``, ``fl``)."""
    if isinstance(name, TrainingMode):
        return name
    if name not in MODES:
        raise InputError("mode", name, f"one of {sorted(MODES)}")
    return MODES[name]()
