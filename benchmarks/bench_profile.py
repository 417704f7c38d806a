"""Profile family: CPU time of the default capture against torch.fx + FlopCounterMode in process.

Issue 15's profiling row. Each model is built on the ``meta`` device (no weights) in a fresh
process, which first profiles a tiny model so that one-off import costs are not charged. Then, in
that one process, pairs are timed interleaved (``time.process_time``, one torch thread):

- the anchor, ``fx + FlopCounterMode``: the model traced by torch.fx (every leaf module kept, as
  splitopt's fx route does) and one forward and backward of the traced module on meta tensors
  under ``torch.utils.flop_counter.FlopCounterMode``: the least a FLOP-counting profiler does;
- ``splitopt.profile(model, inputs)`` with the default capture.

The row gives the median and range of the per-pair ratios, which capture the default took, and
whether its graph equals the ``capture="export"`` graph node for node (names, edges, FLOPs, bytes).
Models: the zoo GPT-2 at GPT-2-XL size (48 layers, 1600 wide, 25 heads, 1.56e9 parameters) and
Hugging Face's ``GPT2LMHeadModel`` of that size (built from a config, no download; torch.fx cannot
trace its forward, so it has no anchor and its default capture is torch.export).

    .venv/bin/python benchmarks/bench_profile.py                 # both models, 3 pairs
    .venv/bin/python benchmarks/bench_profile.py --models gpt2_xl_small --pairs 2   # seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, register

XL = {"n_layer": 48, "n_embd": 1600, "n_head": 25}  # 1,557,611,200 parameters
SMALL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 64, "n_positions": 16}
MODELS = ("gpt2_xl", "hf_gpt2_xl", "gpt2_xl_small")


def build(name: str) -> tuple[Any, tuple[Any, ...]]:
    """The model on the meta device and its example inputs (batch 1, 128 tokens; small: 8)."""
    import torch

    if name.startswith("hf_"):
        import transformers

        transformers.utils.logging.set_verbosity_error()
        with torch.device("meta"):
            model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**XL))
        return model, (torch.randint(0, 50257, (1, 128)),)
    from splitopt import zoo

    model, inputs = zoo.build("gpt2", device="meta",
                              **(SMALL | {"seq_len": 8} if name.endswith("_small") else XL))
    return model, tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def anchor(model: Any, inputs: tuple[Any, ...]) -> float:
    """fx trace + FlopCounterMode over one forward and backward on meta tensors: total FLOPs."""
    import torch
    import torch.fx as fx
    from torch.utils.flop_counter import FlopCounterMode

    from splitopt.profiler.capture import _defaults, _LeafTracer

    gm = fx.GraphModule(model, _LeafTracer(set()).trace(
        model, concrete_args=_defaults(model, len(inputs)) or None))
    with FlopCounterMode(display=False) as counter:
        out = gm(*(x.to("meta") for x in inputs))
        out = out if isinstance(out, torch.Tensor) else out[0]
        out.float().sum().backward()
    return float(counter.get_total_flops())


def child(name: str, pairs: int) -> dict[str, Any]:
    """Interleaved pairs in this process: anchor, then the default capture; ratios per pair."""
    import torch

    from splitopt.profiler import profile, toy

    torch.set_num_threads(1)
    warm, warm_in = toy.examples()["resblock"]
    profile(warm, warm_in)  # one-off import and first-call costs of both routes
    profile(warm, warm_in, capture="export")
    model, inputs = build(name)
    ratios, anchor_s, default_s = [], [], []
    graph = None
    for _ in range(pairs):
        a = None
        try:
            t0 = time.process_time()
            anchor(model, inputs)
            a = time.process_time() - t0
        except Exception:  # noqa: BLE001 - a model torch.fx cannot trace has no anchor
            pass
        t0 = time.process_time()
        graph = profile(model, inputs)
        d = time.process_time() - t0
        default_s.append(d)
        if a is not None:
            anchor_s.append(a)
            ratios.append(d / a)
    exported = profile(model, inputs, capture="export")
    same = (graph.names == exported.names and set(graph.edges) == set(exported.edges)
            and all(getattr(graph, k).tolist() == getattr(exported, k).tolist() for k in
                    ("fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes")))
    row: dict[str, Any] = {"model": name, "capture": graph.meta["capture"], "nodes": len(graph),
                           "default_s": statistics.median(default_s), "same_graph": same,
                           "params": sum(p.numel() for p in model.parameters())}
    if ratios:
        row.update(anchor_s=statistics.median(anchor_s), ratio=statistics.median(ratios),
                   ratio_min=min(ratios), ratio_max=max(ratios), pairs=len(ratios))
    return row


def run(name: str, pairs: int = 3, timeout: float = 900) -> dict[str, Any]:
    """:func:`child` in a fresh interpreter (peaks and import costs do not mix)."""
    cmd = [sys.executable, __file__, "--child", name, str(pairs)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timeout {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"status": "error", "error": done.stderr.strip()[-300:]}
    row = json.loads(lines[-1])
    # objective: the median ratio (the figure); without an anchor, the default's seconds
    return {**row, "objective": row.get("ratio", row["default_s"]), "solve_s": row["default_s"],
            "status": "ok" if row["same_graph"] else "different graph"}


def _cases(quick: bool) -> list[Case]:
    names = ("gpt2_xl_small",) if quick else ("gpt2_xl", "hf_gpt2_xl")
    return [Case(n, "default / (fx + FlopCounterMode)", partial(run, n, 2 if quick else 3))
            for n in names]


SPEC = register(BenchSpec(
    name="profile",
    description="CPU seconds of splitopt.profile with the default capture / torch.fx + "
                "FlopCounterMode (one forward and backward on meta tensors) in the same process, "
                "median of interleaved pairs, GPT-2-XL size (zoo and Hugging Face); the graph "
                "is checked equal to the torch.export graph",
    cases=_cases, baseline=None,
    extra={"columns": ["capture", "ratio_min", "ratio_max", "anchor_s", "default_s",
                       "same_graph", "nodes"]}))


def main(argv: list[str] | None = None) -> None:
    """Print one line per model."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["gpt2_xl", "hf_gpt2_xl"], choices=MODELS)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    for name in args.models:
        r = run(name, args.pairs)
        if r.get("status") == "error":
            print(f"{name}: error: {r['error']}")
            continue
        ratio = (f"{r['ratio']:.2f}x [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}] of "
                 f"fx + FlopCounterMode ({r['anchor_s']:.2f} s), {r['pairs']} pairs"
                 if "ratio" in r else "no anchor (torch.fx cannot trace it)")
        print(f"{name} ({r['params']:,} parameters, {r['nodes']} nodes): default capture "
              f"{r['capture']} {r['default_s']:.2f} s CPU, {ratio}; same graph as "
              f"capture='export': {r['same_graph']}")


if __name__ == "__main__":
    main()
