"""Vision Transformer (Dosovitskiy et al., 2021, arXiv:2010.11929) in torchvision's layout.

Names follow ``torchvision.models.vit_b_16``: ``conv_proj`` (patch embedding), ``class_token``,
``encoder.pos_embedding``, ``encoder.dropout``, ``encoder.layers.encoder_layer_N`` with ``ln_1``,
``self_attention`` (``nn.MultiheadAttention``, so its state dict has ``in_proj_weight`` and
``out_proj``), ``dropout``, ``ln_2``, ``mlp.0`` ... ``mlp.4`` (Linear, GELU, Dropout, Linear,
Dropout), then ``encoder.ln`` and ``heads.head``. torchvision's shape assertions are left out so
that torch.fx can trace the model; the image size is fixed at construction instead.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from splitopt.errors import InputError
from splitopt.zoo._checks import divisible, positive_ints
from splitopt.zoo._init import on_meta


class MLPBlock(nn.Sequential):
    """Linear, GELU, Dropout, Linear, Dropout (children ``0`` ... ``4``)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(in_dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(mlp_dim, in_dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-norm transformer layer: ``x + attn(ln_1(x))``, then ``+ mlp(ln_2(.))``."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float,
                 attention_dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads,
                                                    dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Apply the layer to ``(batch, seq, hidden)`` tokens."""
        x = self.ln_1(inputs)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + inputs
        y = self.mlp(self.ln_2(x))
        return x + y


class Encoder(nn.Module):
    """Positional embedding, dropout, ``num_layers`` encoder blocks, final LayerNorm."""

    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}",
             EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout))
            for i in range(num_layers)))
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``(batch, seq, hidden)`` tokens."""
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """ViT classifier for ``(batch, 3, image_size, image_size)`` images.

    Parameters
    ----------
    image_size, patch_size
        Input side and patch side in pixels; ``image_size`` must be a multiple of ``patch_size``.
    num_layers, num_heads, hidden_dim, mlp_dim
        Transformer depth, heads, width and MLP width (ViT-B/16: 12, 12, 768, 3072).
    dropout, attention_dropout
        Dropout probabilities (0 in torchvision's ViT-B/16).
    num_classes
        Outputs of ``heads.head``.

    """

    def __init__(self, image_size: int = 224, patch_size: int = 16, num_layers: int = 12,
                 num_heads: int = 12, hidden_dim: int = 768, mlp_dim: int = 3072,
                 dropout: float = 0.0, attention_dropout: float = 0.0,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout,
                               attention_dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's scheme: LeCun-normal-like patch embedding, zero-initialised head
        if on_meta(self):
            return
        fan_in = self.conv_proj.in_channels * self.patch_size ** 2
        nn.init.trunc_normal_(self.conv_proj.weight, std=(1.0 / fan_in) ** 0.5)
        nn.init.normal_(self.encoder.pos_embedding, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and name.startswith("heads"):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and ".mlp." in name:
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images to ``(batch, num_classes)`` logits (classification token)."""
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (batch, patches, hidden)
        cls = self.class_token.expand(x.shape[0], -1, -1)
        x = self.encoder(torch.cat([cls, x], dim=1))
        return self.heads(x[:, 0])


def vit_b_16(image_size: int = 224, num_classes: int = 1000, num_layers: int = 12,
             num_heads: int = 12, hidden_dim: int = 768, mlp_dim: int = 3072,
             dropout: float = 0.0) -> VisionTransformer:
    """Torchvision ``vit_b_16``: 86,567,656 parameters with the defaults (patch size 16)."""
    if not isinstance(image_size, int) or image_size < 16 or image_size % 16:
        raise InputError("image_size", image_size, "a positive multiple of the patch size 16")
    positive_ints(num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
                  mlp_dim=mlp_dim)
    divisible("hidden_dim", hidden_dim, "num_heads", num_heads)
    return VisionTransformer(image_size=image_size, patch_size=16, num_layers=num_layers,
                             num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                             dropout=dropout, num_classes=num_classes)
