"""GPT-2 (Radford et al., 2019) with Hugging Face ``GPT2LMHeadModel``'s module names.

Names: ``transformer.wte``, ``transformer.wpe``, ``transformer.drop``, ``transformer.h.N`` with
``ln_1``, ``attn.{c_attn, c_proj, attn_dropout, resid_dropout}``, ``ln_2``,
``mlp.{c_fc, act, c_proj, dropout}``, then ``transformer.ln_f`` and ``lm_head`` whose weight *is*
``transformer.wte.weight`` (tied, counted once). ``Conv1D`` stores its weight as ``(in, out)`` as in
transformers, so Hugging Face state dicts load unchanged. Attention is written out as matmul,
causal mask, softmax, matmul (no fused kernel), so FLOP counters see both attention matmuls; the
causal mask is built from the scores' shape, so there is no data-dependent control flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from splitopt.zoo._checks import divisible, positive_ints
from splitopt.zoo._init import on_meta


@dataclass(frozen=True)
class GPT2Config:
    """Sizes of a GPT-2 (defaults: the 124M ``gpt2`` checkpoint's)."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    dropout: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02

    @property
    def max_positions(self) -> int:
        """Longest sequence the position embedding covers."""
        return self.n_positions


class Conv1D(nn.Module):
    """Hugging Face's ``Conv1D``: a linear layer with weight of shape ``(in, out)``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x @ weight + bias`` over the last dimension."""
        return torch.matmul(x, self.weight) + self.bias


class NewGELUActivation(nn.Module):
    """GELU, tanh approximation (GPT-2's ``gelu_new``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation."""
        return F.gelu(x, approximate="tanh")


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention with fused q/k/v projection ``c_attn``."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.embed_dim, self.num_heads = cfg.n_embd, cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.c_attn = Conv1D(3 * cfg.n_embd, cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over ``(batch, seq, n_embd)``; position ``t`` sees positions ``<= t``."""
        q, k, v = self.c_attn(x).split(self.embed_dim, dim=2)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        causal = torch.ones_like(scores[0, 0], dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        out = torch.matmul(probs, v).transpose(1, 2).flatten(2)
        return self.resid_dropout(self.c_proj(out))


class GPT2MLP(nn.Module):
    """``c_fc`` (n_embd -> 4 n_embd), ``act``, ``c_proj`` (back), ``dropout``."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        inner = cfg.n_inner or 4 * cfg.n_embd
        self.c_fc = Conv1D(inner, cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, inner)
        self.act = NewGELUActivation()
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward network."""
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    """Pre-norm transformer block with out-of-place residual adds."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = GPT2MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply attention then MLP, each with a skip connection."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    """Embeddings, ``n_layer`` blocks and the final LayerNorm (``transformer`` in the LM)."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, seq)`` token ids to ``(batch, seq, n_embd)`` hidden states."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    """GPT-2 language model; ``lm_head.weight`` is ``transformer.wte.weight``.

    Parameters
    ----------
    config
        Sizes; see :class:`GPT2Config`.

    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self._init_weights()
        self.lm_head.weight = self.transformer.wte.weight

    def _init_weights(self) -> None:
        # Hugging Face's scheme, with GPT-2's 1/sqrt(2 n_layer) scaling of residual projections
        if on_meta(self):
            return
        std = self.config.initializer_range
        for name, m in self.named_modules():
            if isinstance(m, (nn.Linear, nn.Embedding, Conv1D)):
                scaled = name.endswith("c_proj")
                nn.init.normal_(m.weight, std=std / math.sqrt(2 * self.config.n_layer)
                                if scaled else std)
            if isinstance(m, (nn.Linear, Conv1D)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        """Return the token embedding (Hugging Face API)."""
        return self.transformer.wte

    def forward(self, input_ids: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Return ``(batch, seq, vocab)`` logits, or ``(loss, logits)`` when ``labels`` is given.

        ``labels`` are token ids; position ``t`` is scored on token ``t + 1`` (no shift needed).
        The test is ``isinstance`` rather than ``is not None`` so that torch.fx, which passes a
        proxy for every argument, traces the plain logits path.
        """
        logits = self.lm_head(self.transformer(input_ids))
        if isinstance(labels, torch.Tensor):
            from splitopt.zoo._losses import lm_loss

            return lm_loss(logits, labels), logits
        return logits


def gpt2(n_layer: int = 12, n_embd: int = 768, n_head: int = 12, vocab_size: int = 50257,
         n_positions: int = 1024, n_inner: int | None = None,
         dropout: float = 0.1) -> GPT2LMHeadModel:
    """Build a GPT-2 LM; defaults give Hugging Face ``gpt2`` (124,439,808 parameters).

    GPT-2-XL is ``gpt2(n_layer=48, n_embd=1600, n_head=25)`` (1,557,611,200 parameters); build it
    under ``with torch.device("meta"):`` (or ``splitopt.zoo.build("gpt2", device="meta", ...)``) to
    get shapes without allocating weights.
    """
    positive_ints(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size,
                  n_positions=n_positions)
    divisible("n_embd", n_embd, "n_head", n_head)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                     n_layer=n_layer, n_head=n_head, n_inner=n_inner, dropout=dropout)
    return GPT2LMHeadModel(cfg)
