"""BERT (Devlin et al., 2019, arXiv:1810.04805) with Hugging Face ``BertModel``'s module names.

Names: ``embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm,
dropout}``, ``encoder.layer.N`` with ``attention.self.{query, key, value, dropout}``,
``attention.output.{dense, LayerNorm, dropout}``, ``intermediate.{dense, intermediate_act_fn}``,
``output.{dense, LayerNorm, dropout}``, then ``pooler.{dense, activation}``. Attention is written
as matmul, softmax, matmul so that FLOP counters see it. ``forward`` returns the pooled output
(``(batch, hidden)``); :meth:`BertModel.encode` returns the sequence output as well.
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
class BertConfig:
    """Sizes of a BERT encoder (defaults: ``bert-base-uncased``)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    @property
    def max_positions(self) -> int:
        """Longest sequence the position embedding covers."""
        return self.max_position_embeddings


class GELUActivation(nn.Module):
    """Exact (erf) GELU, Hugging Face's ``GELUActivation``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation."""
        return F.gelu(x)


class BertEmbeddings(nn.Module):
    """Sum of word, position and token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """Embed ``(batch, seq)`` ids."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(positions))
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention with separate query/key/value projections."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.num_attention_heads = cfg.num_attention_heads
        self.attention_head_size = cfg.hidden_size // cfg.num_attention_heads
        self.scale = 1.0 / math.sqrt(self.attention_head_size)
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_attention_heads, self.attention_head_size)).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor | None) -> torch.Tensor:
        """Attend over ``(batch, seq, hidden)``; ``mask_bias`` is added to the scores."""
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        if isinstance(mask_bias, torch.Tensor):
            scores = scores + mask_bias
        probs = self.dropout(torch.softmax(scores, dim=-1))
        return torch.matmul(probs, v).transpose(1, 2).flatten(2)


class BertResidualOutput(nn.Module):
    """``LayerNorm(dropout(dense(h)) + residual)``: Hugging Face's BertSelfOutput / BertOutput."""

    def __init__(self, cfg: BertConfig, in_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Project, drop out, add the residual and normalise."""
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertSelfOutput(BertResidualOutput):
    """Projection after self-attention (Hugging Face's name)."""


class BertOutput(BertResidualOutput):
    """Projection after the intermediate layer (Hugging Face's name)."""


class BertAttention(nn.Module):
    """``self`` (attention) and ``output`` (projection, residual, LayerNorm)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor | None) -> torch.Tensor:
        """Apply post-norm self-attention."""
        return self.output(self.self(x, mask_bias), x)


class BertIntermediate(nn.Module):
    """``dense`` (hidden -> intermediate) and ``intermediate_act_fn`` (GELU)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.intermediate_act_fn = GELUActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand and activate."""
        return self.intermediate_act_fn(self.dense(x))


class BertLayer(nn.Module):
    """One encoder layer: ``attention``, ``intermediate``, ``output``."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor | None) -> torch.Tensor:
        """Apply the layer."""
        a = self.attention(x, mask_bias)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    """``layer``: a list of :class:`BertLayer`."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor | None) -> torch.Tensor:
        """Apply every layer in turn."""
        for layer in self.layer:
            x = layer(x, mask_bias)
        return x


class BertPooler(nn.Module):
    """``tanh(dense(h[:, 0]))``: the first token's pooled representation."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Pool the sequence."""
        return self.activation(self.dense(h[:, 0]))


class BertModel(nn.Module):
    """BERT encoder with pooler.

    Parameters
    ----------
    config
        Sizes; see :class:`BertConfig`.

    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self._init_weights()

    def _init_weights(self) -> None:
        # Hugging Face's scheme
        if on_meta(self):
            return
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=self.config.initializer_range)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        """Return the token embedding (Hugging Face API)."""
        return self.embeddings.word_embeddings

    def encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(sequence_output, pooled_output)``.

        ``token_type_ids`` default to zeros; ``attention_mask`` (1 = attend, 0 = padding) defaults
        to all ones. ``isinstance`` tests (not ``is not None``) keep torch.fx on the plain path.
        """
        if not isinstance(token_type_ids, torch.Tensor):
            token_type_ids = torch.zeros_like(input_ids)
        mask_bias = None
        if isinstance(attention_mask, torch.Tensor):
            # BERT's additive mask: -10000 on padded keys, broadcast over heads and queries
            mask_bias = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        h = self.encoder(self.embeddings(input_ids, token_type_ids), mask_bias)
        return h, self.pooler(h)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return the ``(batch, hidden)`` pooled output (see :meth:`encode`)."""
        return self.encode(input_ids, token_type_ids, attention_mask)[1]


def bert_base(num_hidden_layers: int = 12, hidden_size: int = 768, num_attention_heads: int = 12,
              intermediate_size: int = 3072, vocab_size: int = 30522,
              max_position_embeddings: int = 512, dropout: float = 0.1) -> BertModel:
    """Build a BERT encoder; defaults give ``bert-base-uncased`` (109,482,240 parameters)."""
    positive_ints(num_hidden_layers=num_hidden_layers, hidden_size=hidden_size,
                  num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                  vocab_size=vocab_size, max_position_embeddings=max_position_embeddings)
    divisible("hidden_size", hidden_size, "num_attention_heads", num_attention_heads)
    return BertModel(BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        max_position_embeddings=max_position_embeddings))
