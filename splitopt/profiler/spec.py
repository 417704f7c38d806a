"""Profile a model named by a zoo name or a ``package.module:factory`` spec."""

from __future__ import annotations

import importlib
from typing import Any

from splitopt.errors import InputError
from splitopt.graph import LayerGraph

_SPEC_HELP = "a zoo name ({names}) or 'package.module:factory'"


def _allowed() -> str:
    from splitopt import zoo

    return _SPEC_HELP.format(names=", ".join(zoo.names()))


def load_model(spec: str, *, batch_size: int = 1, device: str = "cpu",
               example_inputs: Any = None, **config: Any) -> tuple[Any, tuple[Any, ...]]:
    """Build ``(model, example_inputs)`` from a zoo name or ``package.module:factory``.

    A factory is called with ``**config`` and returns a module or ``(module, example_inputs)``;
    a bare module needs ``example_inputs``. Zoo models are built by
    :func:`splitopt.zoo.build` with ``batch_size``, ``device`` and ``config``.

    Raises
    ------
    InputError
        Unknown zoo name (the message lists the zoo), a spec whose module cannot be imported or
        has no such factory, or a factory that returns something else.

    """
    if not isinstance(spec, str) or not spec:
        raise InputError("model", spec, _allowed())
    if ":" not in spec:
        from splitopt import zoo

        return zoo.build(spec, batch_size=batch_size, device=device, **config)
    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name or not mod_name.replace(".", "").replace("_", "").isalnum():
        raise InputError("model", spec, _allowed(), "Write it as package.module:factory.")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as err:
        raise InputError("model", spec, _allowed(),
                         f"Module {mod_name!r} cannot be imported ({err}).") from None
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        raise InputError("model", spec, _allowed(),
                         f"Module {mod_name!r} has no callable {fn_name!r}.")
    return _unpack(spec, factory(**config), example_inputs)


def _unpack(spec: str, made: Any, example_inputs: Any) -> tuple[Any, tuple[Any, ...]]:
    from torch import nn

    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        model, inputs = made
    elif isinstance(made, nn.Module):
        model, inputs = made, example_inputs
    else:
        raise InputError(f"result of {spec}", type(made).__name__,
                         "an nn.Module or a (module, example_inputs) pair")
    if inputs is None:
        raise InputError("example_inputs", None, "example inputs for the factory's module",
                         f"Return (module, example_inputs) from {spec}, or pass example_inputs.")
    return model, tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def profile_model(spec: str, *, batch_size: int = 1, measure: bool = False,
                  capture: str = "auto", times: str | None = None, device: str | None = None,
                  example_inputs: Any = None, **config: Any) -> LayerGraph:
    """Profile a zoo model or a ``package.module:factory`` model into a LayerGraph.

    Parameters
    ----------
    spec
        Zoo name (:func:`splitopt.zoo.names`) or ``package.module:factory``.
    batch_size
        Batch of the example inputs (numbers are per sample either way).
    measure
        Also time every node on this machine (device class ``"cpu"``).
    capture
        ``"auto"``, ``"export"`` or ``"fx"``.
    times
        Attach measured per-layer times of this device class (``"h100"``) by module name, from
        the measured profiles (see :func:`splitopt.profiler.attach_profile`); zoo models only.
    device
        Where zoo models are built: default ``"meta"`` (no weights allocated), or ``"cpu"`` when
        measuring.
    example_inputs
        Inputs for a factory that returns a bare module.
    **config
        Passed to the zoo builder or the factory.

    Graphs profiled without ``measure`` or ``example_inputs`` are kept for the life of the process
    and returned again for the same arguments (a ``LayerGraph`` is immutable).

    """
    key = None
    if not measure and example_inputs is None:  # deterministic: the same graph every time
        try:
            key = (spec, batch_size, capture, times, device, tuple(sorted(config.items())))
            hash(key)
        except TypeError:
            key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    graph = _profile_model(spec, batch_size, measure, capture, times, device, example_inputs,
                           config)
    if key is not None:
        _CACHE[key] = graph  # a LayerGraph is immutable, so sharing it is safe
    return graph


_CACHE: dict[Any, LayerGraph] = {}


def _profile_model(spec: str, batch_size: int, measure: bool, capture: str, times: str | None,
                   device: str | None, example_inputs: Any, config: dict[str, Any]) -> LayerGraph:
    from splitopt.profiler.core import profile

    dev = device or ("cpu" if measure else "meta")
    model, inputs = load_model(spec, batch_size=batch_size, device=dev,
                               example_inputs=example_inputs, **config)
    graph = profile(model, inputs, measure=measure, capture=capture, name=spec)
    if times:
        from splitopt.profiler.attach import attach_profile

        graph = attach_profile(graph, spec, device_class=times)
    return graph
