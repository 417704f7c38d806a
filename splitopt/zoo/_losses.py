"""Training losses of the zoo models (see :func:`splitopt.zoo.loss_fn`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from splitopt.errors import InputError


def classification_loss(logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy of ``(batch, classes)`` logits against ``(batch,)`` class indices."""
    if target is None:
        raise InputError("target", target, "a (batch,) tensor of class indices")
    return F.cross_entropy(logits, target)


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor | None) -> torch.Tensor:
    """Next-token cross-entropy: position ``t`` predicts token ``t + 1`` (as Hugging Face GPT-2)."""
    if input_ids is None:
        raise InputError("target", input_ids, "the (batch, seq) token ids")
    shifted = logits[:, :-1, :]
    return F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), input_ids[:, 1:].reshape(-1))


def pooled_loss(pooled: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Mean square of the pooled output: a head-free loss that still trains every layer."""
    return (pooled * pooled).mean()
