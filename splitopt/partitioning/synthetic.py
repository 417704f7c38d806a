"""Synthetic ResNet-like layer DAGs for benchmarks and tests (4.75 edges per node by default).

A graph is ``stages`` stages of repeated residual blocks; block ``layer{s}.{b}`` has ``ops``
operators ``layer{s}.{b}.op{j}``, each consuming the previous one and up to ``fan_in - 1`` earlier
tensors of the same block (the block input included: skip connections, multi-consumer tensors).
Only the last operator leaves the block, and every operator that reads the block input reads only
that tensor, so each block satisfies the structural condition of the block-wise method. Blocks of
one stage share one random template (same structure and costs), as repeated layers do in real
models; the stem and head are single nodes.
"""

from __future__ import annotations

import numpy as np

from splitopt.graph import LayerGraph, Node


def resnet_like(n: int, *, seed: int = 0, ops: int = 12, stages: int = 4,
                fan_in: int = 6) -> LayerGraph:
    """A ResNet-like DAG of about ``n`` nodes (inputs ``x``, output ``loss``)."""
    rng = np.random.default_rng(seed)
    blocks = max(1, (n - 3) // (ops * stages))
    nodes = [Node("x", 0.0, 0.0, 3 * 224 * 224 * 4.0, 0.0, "input"),
             Node("stem", 2e8, None, 64 * 56 * 56 * 4.0, 4e4, "Conv2d")]
    edges: list[tuple[str, str]] = [("x", "stem")]
    prev = "stem"
    for s in range(stages):
        tmpl = _template(rng, ops, fan_in, s)
        for b in range(blocks):
            names = [f"layer{s + 1}.{b}.op{j}" for j in range(ops)]
            for j, (fl, ob, pb, srcs) in enumerate(tmpl):
                nodes.append(Node(names[j], fl, None, ob, pb, "op"))
                edges += [(prev if k < 0 else names[k], names[j]) for k in srcs]
            prev = names[-1]
    nodes.append(Node("loss", 1e6, None, 4.0, 2e6, "output"))
    edges.append((prev, "loss"))
    return LayerGraph(nodes, edges, ["x"], "loss", name=f"resnet_like{len(nodes)}")


def _template(rng: np.random.Generator, ops: int, fan_in: int,
              stage: int) -> list[tuple[float, float, float, list[int]]]:
    """Per operator: (fwd FLOPs, out bytes, param bytes, sources; -1 = the block input)."""
    width = 2.0**stage
    out = []
    for j in range(ops):
        srcs = {j - 1}
        if j:
            extra = rng.choice(np.arange(-1, j - 1), size=min(fan_in - 1, j), replace=False)
            srcs.update(int(k) for k in extra)
        flops = float(rng.uniform(0.5, 2.0) * 1e8 * width)
        obytes = float(rng.uniform(0.5, 2.0) * 8e5 / width)
        pbytes = float(rng.uniform(0, 2.0) * 1e5 * width * width)
        out.append((flops, obytes, pbytes, sorted(srcs)))
    return out


def wide_range_dag(rng: np.random.Generator, n: int, *, n_inputs: int = 1,
                   skip_prob: float = 0.5, zero_prob: float = 0.0,
                   decades: float = 12.0) -> LayerGraph:
    """Build a random DAG whose node costs span ``decades`` decades (for exactness tests).

    :func:`splitopt.testing.random_dag` with every node's costs multiplied by its own log-uniform
    factor.
    """
    from splitopt.testing import random_dag

    g = random_dag(rng, n, n_inputs=n_inputs, skip_prob=skip_prob, zero_prob=zero_prob)
    nodes = []
    for node in g.nodes:
        f = float(10.0 ** rng.uniform(-decades / 2, decades / 2))
        nodes.append(Node(node.name, node.fwd_flops * f, node.bwd_flops * f,  # type: ignore[operator]
                          node.out_bytes * float(10.0 ** rng.uniform(-decades / 2, decades / 2)),
                          node.param_bytes * f, node.kind))
    return LayerGraph(nodes, g.edges, g.inputs, g.output, name=g.name)


def random_block_dag(rng: np.random.Generator, blocks: int, *, size: tuple[int, int] = (2, 4),
                     repeat: float = 0.5, leak: float = 0.2, decades: float = 6.0) -> LayerGraph:
    """A small random chain of named blocks ``b{i}.0.op{j}`` for block-wise tests.

    Each block is a random DAG of ``size`` operators whose entries read the previous block's exit;
    with probability ``repeat`` a block copies the previous block's structure and costs (a repeated
    layer), with probability ``leak`` an operator also reads an older tensor from outside the block
    (which breaks the block's structural condition), and costs span ``decades`` decades.
    """
    nodes = [Node("x", 0.0, 0.0, float(10 ** rng.uniform(3, 6)), 0.0, "input")]
    edges: list[tuple[str, str]] = []
    prev, older, tmpl = "x", ["x"], None
    for i in range(blocks):
        if tmpl is None or rng.random() >= repeat:
            tmpl = _random_block(rng, int(rng.integers(size[0], size[1] + 1)), decades)
        names = [f"b{i}.0.op{j}" for j in range(len(tmpl))]
        for j, (fl, ob, srcs) in enumerate(tmpl):
            nodes.append(Node(names[j], fl, None, ob, fl / 100, "op"))
            edges += [(prev if k < 0 else names[k], names[j]) for k in srcs]
            if rng.random() < leak and len(older) > 1:
                edges.append((older[int(rng.integers(0, len(older) - 1))], names[j]))
        older.append(names[-1])
        prev = names[-1]
    nodes.append(Node("y", 1e6, None, 4.0, 0.0, "output"))
    edges.append((prev, "y"))
    return LayerGraph(nodes, sorted(set(edges)), ["x"], "y", name=f"blocks{blocks}")


def _random_block(rng: np.random.Generator, k: int,
                  decades: float) -> list[tuple[float, float, list[int]]]:
    """Operators (FLOPs, out bytes, sources; -1 = block input); the last one is the exit.

    Sources are random earlier operators (parallel branches, not a chain); an operator nobody
    reads becomes a source of the exit, so the exit is the block's only way out.
    """
    out = []
    read: set[int] = set()
    for j in range(k):
        srcs = {int(s) for s in rng.choice(np.arange(-1, j), size=int(rng.integers(1, 3)))}
        if j == k - 1:
            srcs.update(set(range(k - 1)) - read)
        read.update(srcs)
        scale = float(10 ** rng.uniform(-decades / 2, decades / 2))
        out.append((float(rng.uniform(1e6, 1e8)) * scale,
                    float(rng.uniform(1e2, 1e6)) * float(10 ** rng.uniform(-decades / 2,
                                                                           decades / 2)),
                    sorted(srcs)))
    return out


def branching_dag(rng: np.random.Generator, n: int, *, n_inputs: int = 1, fan_in: int = 3,
                  decades: float = 6.0) -> LayerGraph:
    """A random DAG with parallel branches: node i reads 1..``fan_in`` random earlier nodes.

    Unlike :func:`splitopt.testing.random_dag` (where node i always reads node i-1, so every
    closed set is a topological prefix) its closed sets are far more than its prefixes. Every
    node without a consumer feeds the output; costs span ``decades`` decades.
    """
    inputs = [f"in{j}" for j in range(n_inputs)]
    names = inputs + [f"v{i}" for i in range(n)]

    def cost(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi) * 10 ** rng.uniform(-decades / 2, decades / 2))

    nodes = [Node(x, 0.0, 0.0, cost(1e3, 1e5), 0.0, "input") for x in inputs]
    nodes += [Node(f"v{i}", cost(1e6, 1e8), None, cost(1e2, 1e5), cost(0, 1e6), "op")
              for i in range(n)]
    edges = set()
    for i in range(n):
        k = len(inputs) + i
        for j in rng.choice(k, size=min(k, int(rng.integers(1, fan_in + 1))), replace=False):
            edges.add((names[int(j)], f"v{i}"))
    used = {u for u, _ in edges}
    edges.update((x, "out") for x in names if x not in used)
    nodes.append(Node("out", cost(1e3, 1e4), None, 4.0, 0.0, "output"))
    return LayerGraph(nodes, sorted(edges), inputs, "out", name=f"branching{n}")
