"""Small hand-made models with the DAG shapes that matter for profiling and splitting.

Used by the tests and the examples of docs/profiler.md: two branches joined by a concatenation, a
tensor consumed three times, a residual block, tied weights, two inputs, and models that tracing
cannot handle (wholly, or in one submodule only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class Branches(nn.Module):
    """Two convolution branches concatenated along channels, then a classifier."""

    def __init__(self, c: int = 3, w: int = 8, classes: int = 5):
        super().__init__()
        self.left = nn.Conv2d(c, 4, 3, padding=1)
        self.right = nn.Sequential(nn.Conv2d(c, 4, 1), nn.ReLU())
        self.mix = nn.Conv2d(8, 6, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the branches, mix, pool, classify."""
        h = torch.cat([self.left(x), self.right(x)], dim=1)
        return self.fc(torch.flatten(self.pool(self.mix(h)), 1))


class ThreeUses(nn.Module):
    """A tensor (``inp``'s output) consumed by three nodes: two layers and a sum."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.a = nn.Linear(d, d)
        self.b = nn.Sequential(nn.Tanh(), nn.Linear(d, d))
        self.out = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Use ``inp``'s output three times."""
        h = self.inp(x)
        return self.out(self.a(h) + self.b(h) + h)


class ResBlock(nn.Module):
    """A ResNet basic block (one ReLU module called twice, in-place) and a linear head."""

    def __init__(self, c: int = 4, w: int = 6, classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c * w * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BasicBlock, then the head."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu(out + x)
        return self.fc(torch.flatten(out, 1))


class TiedLM(nn.Module):
    """Embedding, a block, and an output layer whose weight is the embedding's (GPT-2 style)."""

    def __init__(self, vocab: int = 11, d: int = 8):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary."""
        h = self.wte(ids)
        h = h + self.mlp(self.ln(h))
        return self.lm_head(h)


class TwoInputs(nn.Module):
    """An image and a feature vector, each with its own encoder, joined before the head."""

    def __init__(self, c: int = 2, w: int = 4, d: int = 5):
        super().__init__()
        self.img = nn.Sequential(nn.Conv2d(c, 3, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.vec = nn.Linear(d, 7)
        self.head = nn.Linear(3 * w * w + 7, 2)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Encode both inputs, concatenate, classify."""
        return self.head(torch.cat([self.img(image), self.vec(features)], dim=1))


class _Gate(nn.Module):
    """Branches on a tensor's value: neither torch.export nor torch.fx can trace it."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Branch on the sign of the sum."""
        if x.sum() > 0:
            return self.lin(x)
        return -self.lin(x)


class GatedInside(nn.Module):
    """Traceable except for one submodule (``gate``), which tracing must keep as a single node."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.pre = nn.Linear(d, d)
        self.gate = _Gate(d)
        self.post = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre, gate, residual, post."""
        return self.post(self.gate(self.pre(x)) + x)


class GatedTop(nn.Module):
    """Branches on a tensor's value in its own forward: it cannot be traced at all."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Branch on the sign of the sum."""
        h = self.lin(x)
        if h.sum() > 0:
            return h
        return -h


class RandomDAGNet(nn.Module):
    """A random DAG of ``Linear + tanh`` layers: layer ``i`` sums the outputs it consumes.

    ``preds[i]`` lists what layer ``i`` consumes: ``-1`` is the input, ``j >= 0`` layer ``j < i``.
    Every layer nobody consumes feeds the head, so all of them reach the output.
    """

    def __init__(self, preds: list[list[int]], d: int = 3):
        super().__init__()
        self.preds = [sorted(set(p)) for p in preds]
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in preds)
        used = {j for p in self.preds for j in p}
        self.sinks = [i for i in range(len(preds)) if i not in used]
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers in index order."""
        outs: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            srcs = [x if j < 0 else outs[j] for j in self.preds[i]]
            h = srcs[0]
            for extra in srcs[1:]:
                h = h + extra
            outs.append(torch.tanh(layer(h)))
        out = outs[self.sinks[0]]
        for i in self.sinks[1:]:
            out = out + outs[i]
        return self.head(out)


def examples(batch: int = 2) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """Each traceable toy model with example inputs of ``batch`` samples (seeded)."""
    g = torch.Generator().manual_seed(0)
    return {
        "branches": (Branches(), (torch.randn(batch, 3, 8, 8, generator=g),)),
        "three_uses": (ThreeUses(), (torch.randn(batch, 6, generator=g),)),
        "resblock": (ResBlock(), (torch.randn(batch, 4, 6, 6, generator=g),)),
        "tied": (TiedLM(), (torch.randint(0, 11, (batch, 5), generator=g),)),
        "two_inputs": (TwoInputs(), (torch.randn(batch, 2, 4, 4, generator=g),
                                     torch.randn(batch, 5, generator=g))),
        "gated_inside": (GatedInside(), (torch.randn(batch, 4, generator=g),)),
    }


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (tiny tensors on a shared machine: far faster)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


#: Small configurations of the zoo models (same module names, fewer/narrower layers) for fast
#: tests of profiling and splitting: ``splitopt.zoo.build(name, **ZOO_TINY[name])``.
ZOO_TINY: dict[str, dict[str, object]] = {
    "digits_cnn": {},
    "resnet18": {"width": 8, "image_size": 32, "num_classes": 10},
    "resnet50": {"width": 4, "image_size": 32, "num_classes": 10},
    "vgg16": {"image_size": 32, "num_classes": 10},
    "mobilenet_v2": {"width_mult": 0.25, "image_size": 32, "num_classes": 10},
    "efficientnet_b0": {"width_mult": 0.25, "image_size": 32, "num_classes": 10},
    "vit_b_16": {"image_size": 32, "num_layers": 2, "num_heads": 2, "hidden_dim": 16,
                 "mlp_dim": 32, "num_classes": 10},
    "gpt2": {"n_layer": 2, "n_embd": 16, "n_head": 2, "vocab_size": 50, "n_positions": 16,
             "seq_len": 8},
    "bert_base": {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2,
                  "intermediate_size": 32, "vocab_size": 50, "max_position_embeddings": 16,
                  "seq_len": 8},
}
