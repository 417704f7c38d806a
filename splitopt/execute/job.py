"""What a training run is: a plan, its scenario, a runnable model, and the run settings.

A :class:`Job` is plain picklable data, so the multi-process runner hands the same job to every
process and each process rebuilds the model, the data and its own workers from it
deterministically (same seed, same initial weights, same shards).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from splitopt.errors import InputError
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario


@dataclass(frozen=True)
class RunConfig:
    """Settings of a training run (the plan gives cuts, batch sizes, shares and modes).

    Attributes
    ----------
    mode
        ``sl``, ``sflv1``, ``sflv2``, ``psl``, ``hsfl`` or ``fl``
        (see :mod:`splitopt.execute.modes`).
    rounds
        Rounds to train.
    local_iters
        Iterations per device per round (None: the scenario's ``training.local_iters``).
    optimizer, lr, momentum
        The optimiser of every model holder (device models, server models): ``sgd`` (with
        ``momentum``) or ``adam`` (torch's default betas); its learning rate.
    seed
        Seeds the initial weights, the data split, the batch order and every RNG stream.
    iid, alpha
        IID shards, or non-IID shards with Dirichlet(alpha) class proportions.
    data
        ``"auto"`` (digits for ``digits_cnn``, synthetic otherwise), ``"digits"`` or
        ``"synthetic"``.
    samples_per_device
        Shard size of synthetic data.
    checkpoint_every, checkpoint_dir
        Write a checkpoint every N rounds (0: never) into this folder.
    faults
        ``{device: (round, iteration)}``: the device fails just before that iteration (0-based).
        In the multi-process runner its process is killed (``os._exit``); in-process it is dropped.

    """

    mode: str = "sflv1"
    rounds: int = 3
    local_iters: int | None = None
    lr: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    iid: bool = True
    alpha: float = 0.5
    data: str = "auto"
    samples_per_device: int = 64
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    faults: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        for name, low in (("rounds", 1), ("checkpoint_every", 0), ("samples_per_device", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(name, v, f"an integer >= {low}")
        if self.local_iters is not None and (not isinstance(self.local_iters, int)
                                             or self.local_iters < 1):
            raise InputError("local_iters", self.local_iters, "an integer >= 1 or None")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise InputError("lr", self.lr, "a number > 0")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise InputError("momentum", self.momentum, "a number in [0, 1)")
        if self.optimizer not in ("sgd", "adam"):
            raise InputError("optimizer", self.optimizer, "'sgd' or 'adam'")
        if self.data not in ("auto", "digits", "synthetic"):
            raise InputError("data", self.data, "'auto', 'digits' or 'synthetic'")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise InputError("checkpoint_dir", None, "a folder when checkpoint_every > 0")
        from splitopt.execute.modes import get_mode

        get_mode(self.mode)


#: plan features the builder can plan but the executors cannot run (planned == executed: refused)
UNRUNNABLE = {"recompute": "recomputed activations (Problem(recompute=True))",
              "relays": "relay tiers (Problem(relays=...))"}


@dataclass(frozen=True)
class Job:
    """A plan made runnable: the plan, its scenario, the model to build and the run settings.

    ``model`` is a zoo name (``digits_cnn``) or ``package.module:factory`` where the factory
    returns ``(module, example_inputs)``; ``model_config`` goes to the factory.
    """

    plan: Plan
    scenario: Scenario
    model: str
    config: RunConfig = RunConfig()
    model_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        devs = self.devices()
        if not devs:
            raise InputError("plan devices", [], "at least one selected device")
        for key, what in UNRUNNABLE.items():
            if self.plan.meta.get(key):
                raise InputError(f"plan.meta[{key!r}]", self.plan.meta[key],
                                 "nothing: the executors train two tiers keeping every activation",
                                 f"The plan uses {what}, which the executors do not run; solve "
                                 f"it without that option to get a plan that trains as priced.")
        mode = self.training_mode()
        g = self.scenario.graph
        for d in devs:
            self.scenario.device(d.device)
            if mode.device_mode(d.mode) == "split":
                g.check_split(d.device_side)
        for name, (rnd, it) in self.config.faults.items():
            if name not in [d.device for d in devs]:
                raise InputError("faults device", name, f"one of {[d.device for d in devs]}")
            if rnd < 0 or it < 0:
                raise InputError(f"faults[{name!r}]", (rnd, it), "a (round, iteration) pair >= 0")

    def with_config(self, **changes: Any) -> Job:
        """A copy with some run settings changed."""
        return replace(self, config=replace(self.config, **changes))

    def training_mode(self) -> Any:
        """The :class:`~splitopt.execute.modes.TrainingMode` of this run."""
        from splitopt.execute.modes import get_mode

        return get_mode(self.config.mode).for_plan(self.devices())

    def devices(self) -> list[DevicePlan]:
        """The selected devices, in plan order (rank 1.. in the multi-process runner)."""
        return [d for d in self.plan.devices if d.selected]

    def batch_size(self, d: DevicePlan) -> int:
        """The device's batch size: the plan's, else the scenario's."""
        return int(d.batch_size or self.scenario.training.batch_size)

    def iters(self) -> int:
        """Local iterations per round."""
        return int(self.config.local_iters or self.scenario.training.local_iters)

    def build_model(self) -> tuple[Any, tuple[Any, ...]]:
        """A freshly initialised model (seeded) and example inputs of batch size 1."""
        import torch

        if ":" not in self.model:
            from splitopt import zoo

            model, ex = zoo.build(self.model, batch_size=1,
                                  **{"seed": self.config.seed, **self.model_config})
            return model, tuple(ex)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            built = _factory(self.model)(**self.model_config)
        if not (isinstance(built, tuple) and len(built) == 2):
            raise InputError("model factory result", type(built).__name__,
                             "a (module, example_inputs) pair")
        model, ex = built
        return model, tuple(ex) if isinstance(ex, (tuple, list)) else (ex,)

    def data(self) -> Any:
        """The devices' shards and the test set (:mod:`splitopt.execute.data`)."""
        import torch

        from splitopt.execute.data import digits_data, synthetic_data

        c, names = self.config, [d.device for d in self.devices()]
        kind = c.data if c.data != "auto" else ("digits" if self.model == "digits_cnn"
                                                else "synthetic")
        if kind == "digits":
            return digits_data(names, iid=c.iid, alpha=c.alpha, seed=c.seed)
        model, ex = self.build_model()
        with torch.no_grad():
            out = model(*ex)
        task = "classification"
        if ":" not in self.model:
            from splitopt import zoo

            task = zoo.entry(self.model).task
        return synthetic_data(ex, tuple(out.shape), names, samples_per_device=c.samples_per_device,
                              iid=c.iid, alpha=c.alpha, seed=c.seed, task=task)

    def loss_fn(self) -> Callable[[Any, Any], Any]:
        """The training loss: the zoo's for zoo models, else cross-entropy over the last dim."""
        if ":" not in self.model:
            from splitopt import zoo

            return zoo.loss_fn(self.model)
        return cross_entropy


def cross_entropy(out: Any, target: Any) -> Any:
    """Cross-entropy of logits ``(..., classes)`` against class indices ``(...)``."""
    import torch.nn.functional as F

    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def _factory(spec: str) -> Callable[..., Any]:
    mod, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as err:
        raise InputError("model", spec, "a zoo name or an importable 'package.module:factory'",
                         str(err)) from None
