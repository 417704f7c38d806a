"""A trained module with its optimiser and its own RNG stream.

One holder per device part and per server copy: the random numbers a participant draws do not
depend on the process it runs in, and are saved with checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from splitopt.execute.job import Job

_RANDOM_OPS = ("dropout", "rand", "bernoulli", "normal", "uniform", "multinomial", "poisson",
               "exponential", "cauchy", "geometric", "rrelu")


def draws_random(module: nn.Module) -> bool:
    """Whether running ``module`` may draw from torch's default generator.

    False only when every submodule is either a traced GraphModule whose operations are all
    deterministic by name, or a deterministic built-in ``torch.nn`` layer; any other module class
    (its forward is opaque Python) counts as random, so the answer errs on the safe side.
    """
    for m in module.modules():
        if isinstance(m, fx.GraphModule):
            for node in m.graph.nodes:
                if node.op in ("call_function", "call_method") and any(
                        op in str(node.target).lower() for op in _RANDOM_OPS):
                    return True
        elif not type(m).__module__.startswith("torch.nn.modules") or any(
                op in type(m).__name__.lower() for op in _RANDOM_OPS):
            return True
    return False


def make_optimizer(params: Sequence[nn.Parameter], job: Job) -> torch.optim.Optimizer | None:
    """The run's optimiser over ``params`` (None when there is nothing to train).

    ``sgd``: SGD with the run's momentum; ``adam``: Adam with torch's default betas.
    """
    params = list(params)
    if not params:
        return None
    cfg = job.config
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


class Holder:
    """A module with its optimiser and its own RNG stream.

    The stream is swapped in around the module's compute only when the module may draw random
    numbers (:func:`draws_random`), which saves two state copies per call on deterministic parts.
    """

    def __init__(self, module: nn.Module, params: Sequence[nn.Parameter], job: Job,
                 seed: int) -> None:
        self.module = module
        params = list(params)
        # a device that runs only the input (server-only cut) has nothing to train
        self.opt = make_optimizer(params, job)
        gen = torch.Generator().manual_seed(seed)
        self.rng = gen.get_state()
        self.random = draws_random(module)

    @contextmanager
    def rng_scope(self) -> Iterator[None]:
        """Run with this holder's RNG stream as torch's default CPU generator."""
        if not self.random:
            yield
            return
        saved = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = torch.get_rng_state()
            torch.set_rng_state(saved)

    def step(self) -> None:
        """Apply and clear the gradients."""
        if self.opt is not None:
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser state and RNG state."""
        opt = self.opt.state_dict() if self.opt is not None else None
        return {"module": self.module.state_dict(), "opt": opt, "rng": self.rng}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore weights, optimiser state and RNG state."""
        self.module.load_state_dict(state["module"])
        if self.opt is not None:
            self.opt.load_state_dict(state["opt"])
        self.rng = state["rng"].clone()
