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
* HSFL (arXiv:2511.19851, as planned by :mod:`splitopt.formulations.hsfl`): each device trains
  in the mode its plan gives. FL-mode devices receive the global model, train it locally in
  parallel and upload it; SL-mode devices take turns through one shared server model, as in
  vanilla SL (each receives the device part the previous one handed on, runs all its iterations,
  hands it on). At the end of the round the FL models and the SL chain's model are FedAvg'd, the
  SL chain weighted by all the SL devices' samples. Each device sends and receives its model
  once per round, as the cost model prices it.
* FL (McMahan et al. 2017): every device trains the whole model; FedAvg each round.

Optimisers live as long as the run: aggregation overwrites parameters in place, so the momentum of
each device's and each server model's optimiser carries across rounds and is never rebuilt per
batch (a known defect of public SplitFed code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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

    def for_plan(self, devices: Sequence[Any]) -> TrainingMode:
        """The mode for a plan's devices (a mode that depends on the plan's modes overrides)."""
        return self

    def collect_weights(self, weights: dict[str, float], split: Sequence[str]
                        ) -> dict[str, float]:
        """FedAvg weight of each device (default: its samples)."""
        return weights


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
    """Hybrid split/federated learning (see the module docstring).

    FL devices in parallel, SL devices in turn through one server model, one global model.
    """

    name = "hsfl"
    shared_server = True
    schedule = "sequential"

    def __init__(self, fl_devices: Sequence[str] = ()) -> None:
        self.fl_devices = frozenset(fl_devices)

    def for_plan(self, devices: Sequence[Any]) -> HSFL:
        """The mode knowing which of the plan's devices train in FL mode."""
        return HSFL([d.device for d in devices if d.mode == "fl"])

    def device_mode(self, planned: str) -> str:
        """The plan's mode, as given."""
        return planned

    def round_events(self, rnd: int, devices: Sequence[str], iters: int) -> list[Event]:
        """FL devices: sync, iterate, collect; SL devices: a vanilla-SL chain; one FedAvg."""
        fl = tuple(d for d in devices if d in self.fl_devices)
        sl = [d for d in devices if d not in self.fl_devices]
        out: list[Event] = [Sync(fl)] if fl else []
        out += [Step(d, t) for t in range(iters) for d in fl]
        for i, d in enumerate(sl):  # each hands its device part on; the last one to the FedAvg
            out += [Sync((d,)), *(Step(d, t) for t in range(iters))]
            if i < len(sl) - 1:
                out.append(Collect((d,)))
        return [*out, Collect(fl + tuple(sl[-1:]))]

    def collect_weights(self, weights: dict[str, float], split: Sequence[str]
                        ) -> dict[str, float]:
        """The SL chain's model stands for every SL device's samples in the FedAvg."""
        total = sum(weights[d] for d in split)
        return {d: (total if d in split else w) for d, w in weights.items()}


class FL(TrainingMode):
    """Federated averaging of whole models, the reference."""

    name = "fl"

    def device_mode(self, planned: str) -> str:
        """Always the whole model on the device."""
        return "fl"


#: modes in which each server copy of a weight tied across the cut pairs with one device copy
TIED_MODES = ("sl", "sflv1", "hsfl")


def check_tied(job: Any, tied_devices: Sequence[str]) -> None:
    """Refuse a run whose weights tied across the cut could not stay equal on both sides.

    Each side holds a copy of a tied weight and both copies step with the sum of the two sides'
    gradients (docs/executors.md, "Weights tied across the cut"). That keeps them equal when a
    server copy serves one device copy at a time with the same optimiser state: SL and HSFL's SL
    chain (devices in turn) and SFL-V1 (a server copy per device). SFL-V2 and parallel SL step
    one server copy with several devices' gradients while each device copy sees only its own, so
    the copies would part. With several devices in turn through one server copy, the server's
    optimiser state sees every device's steps and each device's only its own: only a stateless
    optimiser (SGD without momentum) keeps the copies equal there.
    """
    if not tied_devices:
        return
    mode, cfg = job.training_mode(), job.config
    if mode.name not in TIED_MODES:
        raise InputError("mode", mode.name, f"one of {list(TIED_MODES)} for cuts with weights "
                         f"tied across them (devices {list(tied_devices)[:3]})",
                         "Run with --mode sl, sflv1 or hsfl, or move the cut so that the tied "
                         "layers sit on one side.")
    split = [d.device for d in job.devices() if mode.device_mode(d.mode) == "split"]
    if mode.shared_server and len(split) > 1 and (cfg.optimizer != "sgd" or cfg.momentum):
        opt = cfg.optimizer if cfg.optimizer != "sgd" else f"sgd with momentum {cfg.momentum}"
        raise InputError("optimizer", opt, "sgd with momentum 0 when several split devices take "
                         f"turns through one server copy of a tied weight (mode {mode.name})",
                         "Pass --momentum 0, or run --mode sflv1 (a server copy per device).")


MODES: dict[str, type[TrainingMode]] = {m.name: m for m in (SL, SFLV1, SFLV2, ParallelSL, HSFL, FL)}


def get_mode(name: str | TrainingMode) -> TrainingMode:
    """A mode instance from its name (``sl``, ``sflv1``, ``sflv2``, ``psl``, ``hsfl``, ``fl``)."""
    if isinstance(name, TrainingMode):
        return name
    if name not in MODES:
        raise InputError("mode", name, f"one of {sorted(MODES)}")
    return MODES[name]()


def server_schedule(serving: str, mode: TrainingMode) -> str:
    """How split devices share a round under ``mode`` on a server that serves as ``serving``.

    ``sequential`` when they take turns (the mode's own schedule, or a sequential server),
    else ``parallel`` (costs.takes_turns).
    """
    from splitopt.costs import takes_turns

    return "sequential" if takes_turns(mode.schedule, serving) else "parallel"


def priced_server_shares(scenario: Any, devices: Sequence[Any], mode: TrainingMode
                         ) -> dict[str, float]:
    """The server share phi_k each planned device runs with (costs.server_shares).

    The in-process runner's simulated clock divides a device's measured server compute by it and
    :func:`splitopt.execute.timing.predict` prices with it: planner and executor use one rule.
    """
    from splitopt.costs import server_shares

    modes = [mode.device_mode(d.mode) for d in devices]
    phis = server_shares(scenario.server.serving, mode.schedule,
                         [d.server_share for d in devices], modes)
    # a planner gives a device with no priced server work (e.g. only the 0-FLOP loss left on the
    # server) a sliver of the server (~1e-12); the loss it still computes runs at an equal share
    # instead of inflating the simulated clock a trillion-fold (its priced time is 0 either way)
    fair = 1.0 / max(len(devices), 1)
    return {d.device: (phi if phi >= SLIVER else fair) for d, phi in zip(devices, phis)}


#: server shares below this are a planner's placeholder for "needs no server time"
SLIVER = 1e-9
