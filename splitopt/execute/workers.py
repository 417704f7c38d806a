"""The computations of one device and of the server, shared by every runner.

A runner only moves tensors between a :class:`DeviceWorker` and the :class:`ServerWorker`
(directly in one process, over torch.distributed between processes); the arithmetic lives here
once, so both runners do the same operations in the same order.

Every model holder owns an RNG stream (dropout and friends) that is swapped in around its own
compute, so the random numbers a device draws do not depend on which process it runs in, and are
saved with checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from splitopt.execute.data import DeviceData
from splitopt.execute.holder import Holder, draws_random
from splitopt.execute.job import Job
from splitopt.execute.modes import check_tied
from splitopt.execute.split_parts import add_tied_grads, tied_grads
from splitopt.execute.templates import split_modules

State = dict[str, torch.Tensor]
EMPTY = torch.empty(0)


def tied_aliases(module: nn.Module) -> dict[str, str]:
    """``{alias: first name}`` of each tensor that ``module``'s state_dict names more than once.

    GPT-2 names its one embedding/output weight ``transformer.wte.weight`` and (later)
    ``lm_head.weight``. The first name in state_dict order is the one sent.
    """
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, t in module.state_dict(keep_vars=True).items():
        if id(t) in first:
            out[name] = first[id(t)]
        else:
            first[id(t)] = name
    return out


def sent_once(state: Mapping[str, torch.Tensor], aliases: Mapping[str, str]) -> State:
    """``state`` without the names of tensors it already holds under their first name.

    A tied weight is one tensor: it is sent (and priced, costs.CutTable.param_bytes) once; the
    receiver's module shares it under every name, so loading the first name loads them all.
    """
    return {n: t for n, t in state.items() if aliases.get(n) not in state}


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into the module's tensors in place (optimisers keep their references)."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name in state:
                t.copy_(state[name])


class DeviceWorker:
    """One device: its model (device side, or the whole model in FL mode), data and optimiser."""

    def __init__(self, job: Job, name: str, *, model: nn.Module | None = None,
                 example_inputs: tuple[torch.Tensor, ...] | None = None, data: Any = None) -> None:
        plan = job.plan.device(name)
        index = [d.device for d in job.devices()].index(name)
        self.name, self.batch_size = name, job.batch_size(plan)
        self.mode = job.training_mode().device_mode(plan.mode)
        if model is None:
            model, example_inputs = job.build_model()
        if example_inputs is None:
            example_inputs = job.build_model()[1]
        self.loss_fn = job.loss_fn()
        #: the full model copy the split views share parameters with (re-splits re-cut it)
        self.model, self.example_inputs = model, example_inputs
        shard = (data or job.data()).shards[name]
        self.data = DeviceData(shard, seed=job.config.seed * 7919 + index)
        if self.mode == "split":
            self.split = split_modules(model, example_inputs, plan.device_side, job.scenario.graph)
            self.module: nn.Module = self.split.device
        else:
            self.split, self.module = None, model
        self.holder = Holder(self.module, list(self.module.parameters()), job,
                             seed=job.config.seed * 104729 + index + 1)
        self.aliases = tied_aliases(model)
        self._acts: tuple[torch.Tensor, ...] = ()

    def forward(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Draw a batch and run the device side: (boundary tensors, labels)."""
        x, y = self.data.next(self.batch_size)
        with self.holder.rng_scope():
            out = self.module(*x)
        self._acts = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return self._acts, y

    @property
    def tied_names(self) -> list[str]:
        """Device-side names of the weights tied across this device's cut (SplitModel.tied)."""
        return [d for d, _ in self.split.tied] if self.split is not None else []

    def backward(self, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Back-propagate the server's boundary gradients and step the device optimiser.

        With weights tied across the cut, ``grads`` ends with the server's gradients of its
        copies (:meth:`ServerWorker.step`): they are added to this side's before the step, and
        this side's own gradients are returned for the server (:meth:`ServerWorker.finish_tied`);
        otherwise the result is empty.
        """
        names = self.tied_names
        theirs = list(grads[len(grads) - len(names):]) if names else []
        grads = grads[:len(grads) - len(names)]
        pairs = [(a, g) for a, g in zip(self._acts, grads)
                 if a.requires_grad and g.numel()]
        mine: list[torch.Tensor] = []
        with self.holder.rng_scope():
            if pairs:
                torch.autograd.backward([a for a, _ in pairs], [g for _, g in pairs])
            if names:
                mine = tied_grads(self.module, names)
                add_tied_grads(self.module, names, theirs)
            self.holder.step()
        self._acts = ()
        return mine

    def local_step(self) -> float:
        """One FL-mode iteration on the whole model; returns the batch loss."""
        x, y = self.data.next(self.batch_size)
        with self.holder.rng_scope():
            loss = self.loss_fn(self.module(*x), y)
            loss.backward()
            self.holder.step()
        return float(loss.detach())

    def part(self) -> State:
        """The device's model state (the part it uploads for aggregation), each tensor once."""
        return sent_once(self.module.state_dict(), self.aliases)

    def load_part(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load the global model's device part."""
        load_into(self.module, state)

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint needs to resume this device."""
        return {"holder": self.holder.state_dict(), "data": self.data.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.holder.load_state_dict(state["holder"])
        self.data.load_state_dict(state["data"])


class ServerWorker:
    """The server: the global model, the server model(s) and FedAvg.

    With a shared server (SL, SFL-V2, parallel SL) one full model copy serves every device through
    the server module of that device's cut; otherwise each split device has its own copy.
    """

    def __init__(self, job: Job, *, model: nn.Module | None = None,
                 example_inputs: tuple[torch.Tensor, ...] | None = None, data: Any = None) -> None:
        mode = job.training_mode()
        self.shared, self.accumulate = mode.shared_server, mode.accumulate_server
        if model is None:
            model, example_inputs = job.build_model()
        if example_inputs is None:
            example_inputs = job.build_model()[1]
        self.global_model, self.loss_fn = model, job.loss_fn()
        self.example_inputs = example_inputs
        sizes = (data or job.data()).sizes()
        self.devices = [d.device for d in job.devices()]
        self.weights = {d: float(sizes[d]) for d in self.devices}
        self.batch = {d.device: job.batch_size(d) for d in job.devices()}
        self.split_devices = [d.device for d in job.devices()
                              if mode.device_mode(d.mode) == "split"]
        self.weights = mode.collect_weights(self.weights, self.split_devices)
        self.holders: dict[str, Holder] = {}
        self.views: dict[str, nn.Module] = {}
        self.device_names: dict[str, list[str]] = {}
        self._tied: dict[str, tuple[nn.Module, list[str]]] = {}  # tied_names, by view
        self.aliases = tied_aliases(model)
        self._build(job, example_inputs)
        check_tied(job, [d for d in self.split_devices if self.tied_names(d)])
        self.parts: dict[str, State] = {}
        self._acc = 0.0

    def _build(self, job: Job, ex: tuple[torch.Tensor, ...]) -> None:
        shared = copy.deepcopy(self.global_model) if self.shared else None
        cache: dict[tuple[int, frozenset[str]], Any] = {}
        served: dict[str, list[tuple[int, nn.Module]]] = {}
        for i, d in enumerate(job.devices()):
            if d.device not in self.split_devices:
                self.device_names[d.device] = list(self.part_of(self.global_model))
                continue
            full = shared if shared is not None else copy.deepcopy(self.global_model)
            key = (id(full), d.device_side)
            if key not in cache:
                cache[key] = split_modules(full, ex, d.device_side, job.scenario.graph)
            sp = cache[key]
            self.views[d.device] = sp.server
            self.device_names[d.device] = list(self.part_of(sp.device))
            served.setdefault("shared" if shared is not None else d.device, []).append((i, full))
        for hkey, users in served.items():
            i, full = users[0]
            views = [self.views[d] for d in self.split_devices
                     if ("shared" if shared is not None else d) == hkey]
            # the optimiser holds only server-side parameters (fewer to step), and the views
            # decide whether the server draws random numbers
            params = list({id(p): p for v in views for p in v.parameters()}.values())
            h = Holder(full, params, job, seed=job.config.seed * 15485863 + i + 1)
            h.random = any(draws_random(v) for v in views)
            self.holders[hkey] = h

    def part_of(self, module: nn.Module) -> State:
        """What a device holding ``module`` sends and receives: its state, each tensor once."""
        return sent_once(module.state_dict(), self.aliases)

    def holder(self, device: str) -> Holder:
        """The server model holder that serves ``device``."""
        return self.holders["shared" if self.shared else device]

    def tied_names(self, device: str) -> list[str]:
        """Server-side names of the weights tied across ``device``'s cut.

        In the order of the device's :attr:`DeviceWorker.tied_names` (pairs sorted by device-side
        name, as ``SplitModel.tied``); read from the current views, so a re-split is followed.
        """
        view = self.views.get(device)
        if view is None:
            return []
        cached = self._tied.get(device)
        if cached is not None and cached[0] is view:  # asked every step: walk the model once
            return cached[1]
        full = dict(self.holder(device).module.named_parameters(remove_duplicate=False))
        on_device = {id(full[n]): n for n in self.device_names[device] if n in full}
        pairs = sorted((on_device[id(p)], k) for k, p in view.named_parameters()
                       if id(p) in on_device)
        names = [k for _, k in pairs]
        self._tied[device] = (view, names)  # a re-split sets a new view (and device names)
        return names

    def step(self, device: str, acts: Sequence[torch.Tensor],
             labels: torch.Tensor) -> tuple[list[torch.Tensor], float]:
        """Server forward/backward for one device batch: (boundary gradients, loss).

        With weights tied across the cut the server does not step yet: the gradients of its
        copies follow the boundary gradients, and :meth:`finish_tied` steps once the device's
        own gradients of them have come back.
        """
        h, b = self.holder(device), float(self.batch[device])
        tied = self.tied_names(device)
        ins = [a.detach().requires_grad_(a.is_floating_point()) for a in acts]
        with h.rng_scope():
            loss = self.loss_fn(self.views[device](*ins), labels)
            if self.accumulate:
                # gradient of the mean loss over every sample of the iteration: weight by batch
                (loss * b).backward()
                self._acc += b
            else:
                loss.backward()
                if not tied:
                    h.step()
        grads = [EMPTY if i.grad is None else i.grad for i in ins]
        if self.accumulate:
            grads = [g / b if g.numel() else g for g in grads]
        return grads + tied_grads(self.views[device], tied), float(loss.detach())

    def finish_tied(self, device: str, grads: Sequence[torch.Tensor]) -> None:
        """Add the device's gradients of the tied weights to the server's copies, then step."""
        add_tied_grads(self.views[device], self.tied_names(device), grads)
        self.holder(device).step()

    def server_step(self) -> None:
        """Parallel SL: apply the accumulated server gradient (mean over the iteration)."""
        h = self.holders.get("shared")
        if h is None or self._acc == 0:
            return
        with torch.no_grad():
            for p in h.module.parameters():
                if p.grad is not None:
                    p.grad.div_(self._acc)
        h.step()
        self._acc = 0.0

    def device_part(self, device: str) -> State:
        """The global model's part that ``device`` holds (what a Sync sends)."""
        g = self.global_model.state_dict()
        return {n: g[n] for n in self.device_names[device]}  # names already sent once (part_of)

    def sync(self, devices: Sequence[str]) -> None:
        """Load the global model into the server model(s) serving ``devices``."""
        for h in {id(self.holder(d)): self.holder(d) for d in devices
                  if d in self.split_devices}.values():
            load_into(h.module, self.global_model.state_dict())

    def merged(self, device: str, part: Mapping[str, torch.Tensor]) -> State:
        """The full model as ``device`` sees it: its own part plus its server model's rest.

        Every name of a tied weight the device sent once (:func:`sent_once`) maps to that tensor.
        """
        rest = (self.holder(device).module if device in self.split_devices
                else self.global_model).state_dict()
        own = {n: part[n] if n in part else part.get(self.aliases.get(n, n)) for n in rest}
        if device not in self.split_devices:
            return {n: t for n, t in own.items() if t is not None}
        return {n: t if own[n] is None else own[n] for n, t in rest.items()}

    def collect(self, parts: Mapping[str, State], average: bool = True) -> None:
        """FedAvg the devices' models (weights = samples) into the global model."""
        self.parts.update({d: {n: t.clone() for n, t in p.items()} for d, p in parts.items()})
        if not average or not parts:
            return
        merged = {d: self.merged(d, p) for d, p in parts.items()}
        load_into(self.global_model, fedavg(merged, {d: self.weights[d] for d in parts}))

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint needs to resume the server."""
        return {"global": self.global_model.state_dict(), "parts": self.parts,
                "holders": {k: h.state_dict() for k, h in self.holders.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        load_into(self.global_model, state["global"])
        self.parts = {d: dict(p) for d, p in state["parts"].items()}
        for k, h in self.holders.items():
            h.load_state_dict(state["holders"][k])


def fedavg(states: Mapping[str, Mapping[str, torch.Tensor]],
           weights: Mapping[str, float]) -> State:
    """Weighted average of state dicts, in the given device order (deterministic).

    Non-float tensors (counters) are taken from the first device; a tensor that every device
    shares (the shared server model) is taken as it is, not averaged, so it is not perturbed by
    rounding.
    """
    keys = list(states)
    total = sum(weights[k] for k in keys)
    out: State = {}
    for name, first in states[keys[0]].items():
        ts = [states[k][name] for k in keys]
        if not first.is_floating_point() or all(t.data_ptr() == first.data_ptr() for t in ts):
            out[name] = first.clone()
            continue
        acc = torch.zeros_like(first)
        for k, t in zip(keys, ts):
            acc.add_(t, alpha=weights[k] / total)
        out[name] = acc
    return out


def evaluate(model: nn.Module, test: tuple[tuple[torch.Tensor, ...], torch.Tensor],
             loss_fn: Callable[[Any, Any], torch.Tensor], batch: int = 512) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on a test set (accuracy: argmax over the last dim)."""
    xs, y = test
    was = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            xb, yb = tuple(x[i:i + batch] for x in xs), y[i:i + batch]
            out = model(*xb)
            loss_sum += float(loss_fn(out, yb)) * len(yb)
            if out.shape[:-1] == yb.shape:
                correct += int((out.argmax(-1) == yb).sum())
            n += len(yb)
    model.train(was)
    return loss_sum / max(n, 1), correct / max(n, 1) if n else 0.0
