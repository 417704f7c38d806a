"""Reference model zoo in plain torch, keeping torchvision's and Hugging Face's module names.

``build(name)`` returns a model and example inputs; ``loss_fn(name)`` and
``make_targets(name, ...)`` say how that model is trained. Module names equal those of torchvision
and transformers, so measured per-layer profiles keyed by module name
(``data/profiles/h100_layer_profiles.json``) attach to the layer graphs of these models. Importing
this package does not import torch; :func:`build` does. See docs/zoo.md.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from splitopt.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["ZooEntry", "build", "entry", "loss_fn", "make_targets", "names"]


@dataclass(frozen=True)
class ZooEntry:
    """What the registry knows about one zoo model.

    Attributes
    ----------
    name
        Registry name, e.g. ``"resnet18"``.
    module, factory
        ``splitopt.zoo.<module>.<factory>`` builds the model; its keyword arguments are the config.
    inputs
        ``"image"`` (``3 x 224 x 224``), ``"tokens"`` (128 token ids) or ``"digits"``
        (``1 x 8 x 8``).
    task
        ``"classification"`` (cross-entropy on logits), ``"lm"`` (next-token cross-entropy) or
        ``"pooled"`` (mean square of the pooled output; a head-free stand-in loss).
    params
        Exact parameter count with the default config (tied weights counted once).
    source
        The architecture this model reproduces.

    """

    name: str
    module: str
    factory: str
    inputs: str
    task: str
    params: int
    source: str


_ENTRIES = (
    ZooEntry("digits_cnn", "digits", "digits_cnn", "digits", "classification", 38_282,
             "small CNN for scikit-learn's 8x8 digits (this project)"),
    ZooEntry("resnet18", "resnets", "resnet18", "image", "classification", 11_689_512,
             "torchvision.models.resnet18"),
    ZooEntry("resnet50", "resnets", "resnet50", "image", "classification", 25_557_032,
             "torchvision.models.resnet50"),
    ZooEntry("vgg16", "vgg", "vgg16", "image", "classification", 138_357_544,
             "torchvision.models.vgg16"),
    ZooEntry("mobilenet_v2", "mobilenet", "mobilenet_v2", "image", "classification", 3_504_872,
             "torchvision.models.mobilenet_v2"),
    ZooEntry("efficientnet_b0", "efficientnet", "efficientnet_b0", "image", "classification",
             5_288_548, "torchvision.models.efficientnet_b0"),
    ZooEntry("vit_b_16", "vit", "vit_b_16", "image", "classification", 86_567_656,
             "torchvision.models.vit_b_16"),
    ZooEntry("gpt2", "gpt", "gpt2", "tokens", "lm", 124_439_808,
             "transformers GPT2LMHeadModel (gpt2, 124M)"),
    ZooEntry("bert_base", "bert", "bert_base", "tokens", "pooled", 109_482_240,
             "transformers BertModel (bert-base-uncased, with pooler)"),
)
_BY_NAME = {e.name: e for e in _ENTRIES}

# factories importable as splitopt.zoo.<name> without importing torch up front
_LAZY = {"resnet": "resnets", "resnet18": "resnets", "resnet50": "resnets",
         "vgg16": "vgg",
         "mobilenet_v2": "mobilenet", "efficientnet_b0": "efficientnet", "vit_b_16": "vit",
         "gpt2": "gpt", "bert_base": "bert", "digits_cnn": "digits",
         "load_digits_tensors": "digits"}

# keys of **config that shape the example inputs rather than (only) the model
_INPUT_KEYS = {"image": ("image_size",), "tokens": ("seq_len",), "digits": ()}
_DEFAULT_SEQ_LEN = 128
_DEFAULT_IMAGE_SIZE = 224


def __getattr__(attr: str) -> Any:
    if attr in _LAZY:
        return getattr(importlib.import_module(f"splitopt.zoo.{_LAZY[attr]}"), attr)
    raise AttributeError(f"module 'splitopt.zoo' has no attribute {attr!r}")


def names() -> list[str]:
    """Names of the zoo models, in registry order."""
    return [e.name for e in _ENTRIES]


def entry(name: str) -> ZooEntry:
    """Return the registry entry of ``name``; an unknown name raises :class:`InputError`."""
    if name not in _BY_NAME:
        raise InputError("model name", name, f"one of {', '.join(names())}",
                         "Use splitopt.zoo.names() to list the zoo.")
    return _BY_NAME[name]


def _factory(e: ZooEntry) -> Callable[..., Any]:
    return getattr(importlib.import_module(f"splitopt.zoo.{e.module}"), e.factory)


def _split_config(e: ZooEntry, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``config`` into factory keyword arguments and input-shape settings; reject the rest."""
    accepted = list(inspect.signature(_factory(e)).parameters)
    shape_keys = _INPUT_KEYS[e.inputs]
    allowed = sorted(set(accepted) | set(shape_keys) | {"seed"})
    for key in config:
        if key not in allowed:
            raise InputError(f"config of {e.name!r}", key, f"one of {', '.join(allowed)}")
    model_kw = {k: v for k, v in config.items() if k in accepted}
    shape_kw = {k: v for k, v in config.items() if k in shape_keys or k == "seed"}
    return model_kw, shape_kw


def build(name: str, *, batch_size: int = 1, device: str | torch.device = "cpu",
          **config: Any) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """Build a zoo model and example inputs.

    Parameters
    ----------
    name
        One of :func:`names`.
    batch_size
        Leading dimension of the example inputs.
    device
        Where model and inputs live. On ``"meta"`` no weights are allocated (a 1.5e9-parameter
        GPT-2 builds in well under a second), which is what shape and FLOP profiling need.
    **config
        Keyword arguments of the model's factory (e.g. ``n_layer=48`` for ``gpt2``, ``num_classes``
        for classifiers; other ResNet depths come from :func:`splitopt.zoo.resnet`), plus
        ``seed`` (default 0) for weights and inputs, ``image_size`` (vision models, default 224) or
        ``seq_len`` (gpt2/bert, default 128, capped at the model's number of positions).

    Returns
    -------
    (model, inputs)
        The model (in training mode, randomly initialised from ``seed``) and a tuple of example
        inputs: ``(batch, 3, 224, 224)`` float images, ``(batch, 128)`` int64 token ids or
        ``(batch, 1, 8, 8)`` digits images.

    """
    import torch

    e = entry(name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("batch_size", batch_size, "an integer >= 1")
    dev = _device(device)
    model_kw, shape_kw = _split_config(e, config)
    seed = shape_kw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError("seed", seed, "an integer >= 0")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if dev.type == "meta":
            with torch.device("meta"):
                model = _factory(e)(**model_kw)
        else:
            model = _factory(e)(**model_kw).to(dev)
        inputs = _example_inputs(e, model, batch_size, dev, shape_kw)
    return model, inputs


def _device(device: Any) -> torch.device:
    """Parse ``device`` and check that torch can place tensors there."""
    import torch

    allowed = "a torch device such as 'cpu', 'cuda:0' or 'meta' that this torch can use"
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, TypeError, AssertionError) as err:
        raise InputError("device", device, allowed, f"torch says: {err}") from None
    return dev


def _example_inputs(e: ZooEntry, model: Any, batch: int, dev: torch.device,
                    shape_kw: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    import torch

    meta = dev.type == "meta"
    if e.inputs == "tokens":
        vocab, max_len = model.config.vocab_size, model.config.max_positions
        seq = shape_kw.get("seq_len", min(_DEFAULT_SEQ_LEN, max_len))
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= max_len:
            raise InputError("seq_len", seq, f"an integer in 1..{max_len} (the model's positions)")
        if meta:
            return (torch.empty(batch, seq, dtype=torch.int64, device=dev),)
        return (torch.randint(0, vocab, (batch, seq), dtype=torch.int64).to(dev),)
    if e.inputs == "digits":
        shape = (batch, 1, 8, 8)
    else:
        size = shape_kw.get("image_size", _DEFAULT_IMAGE_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise InputError("image_size", size, "an integer >= 32")
        shape = (batch, 3, size, size)
    if meta:
        return (torch.empty(shape, device=dev),)
    return (torch.randn(shape).to(dev),)


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """Return the training loss of a zoo model: ``loss(output, target) -> scalar``.

    - classification (vision models, ``digits_cnn``): ``cross_entropy(logits, class_indices)``;
    - ``gpt2``: next-token cross-entropy; ``target`` is the token ids themselves (the loss shifts);
    - ``bert_base``: ``mean(pooled_output ** 2)``, a head-free stand-in; ``target`` is ignored.

    :func:`make_targets` returns a matching ``target`` for example inputs.
    """
    from splitopt.zoo import _losses

    losses: dict[str, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
        "classification": _losses.classification_loss, "lm": _losses.lm_loss,
        "pooled": _losses.pooled_loss}
    return losses[entry(name).task]


def make_targets(name: str, inputs: tuple[torch.Tensor, ...], *, num_classes: int | None = None,
                 seed: int = 0) -> torch.Tensor | None:
    """Targets for ``inputs`` that :func:`loss_fn` accepts.

    Random class indices (``num_classes`` defaults to 10 for ``digits_cnn``, 1000 otherwise) for
    classifiers, the token ids for ``gpt2``, ``None`` for ``bert_base``.
    """
    import torch

    e = entry(name)
    if e.task == "lm":
        return inputs[0]
    if e.task == "pooled":
        return None
    k = num_classes if num_classes is not None else (10 if e.inputs == "digits" else 1000)
    x = inputs[0]
    if x.device.type == "meta":
        return torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, k, (x.shape[0],), generator=gen).to(x.device)
