"""Benchmark: time and peak memory to profile each zoo model, and a >= 1e9-parameter GPT-2.

Each case runs in a fresh Python process (so peaks do not mix and import costs are visible) that
builds the model on the ``meta`` device and calls ``splitopt.profiler.profile``. Memory is the
process's peak resident set size (VmHWM of /proc/self/status, which includes the ~0.4 GB of
importing torch), and its growth over the RSS measured (psutil) just before
profiling. ``tracemalloc`` is not used: it sees only Python allocations, not torch's.

Baselines in the same run: the ``fx`` capture beside the default ``auto`` (torch.export) one,
and the bytes a profiler would need just to hold the weights if it materialised them. Each child
first profiles a tiny model, so one-off import and first-call costs are not charged to the case;
CPU seconds (``time.process_time``) are reported beside wall seconds because the machine may be
shared.

    python benchmarks/profiler.py                    # every zoo model + GPT-2-XL
    python benchmarks/profiler.py --models resnet18 gpt2_xl --captures auto
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time

GIB = 2**30
GPT2_XL = {"n_layer": 48, "n_embd": 1600, "n_head": 25}  # 1.56e9 parameters


def _peak_rss_bytes() -> int:
    """This process's peak RSS since its exec: VmHWM of /proc/self/status.

    ``getrusage``'s ru_maxrss would do on an idle start, but Linux carries it across fork + exec,
    so a child started by a big parent (the benchmark runner) would report the parent's peak.
    """
    import resource

    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(name: str, capture: str) -> dict:
    """Profile one model in this process and return the figures."""

    import psutil
    import torch

    from splitopt import zoo
    from splitopt.profiler import profile, toy

    torch.set_num_threads(1)
    warm, warm_in = toy.examples()["resblock"]  # pay one-off import and first-call costs here
    profile(warm, warm_in, capture=capture)
    zname, config = ("gpt2", GPT2_XL) if name == "gpt2_xl" else (name, {})
    model, inputs = zoo.build(zname, device="meta", **config)
    params = sum(p.numel() for p in model.parameters())
    rss0 = psutil.Process().memory_info().rss
    t0, c0 = time.perf_counter(), time.process_time()
    graph = profile(model, inputs, capture=capture)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_rss_bytes()
    return {"model": name, "requested": capture, "capture": graph.meta["capture"],
            "params": params, "nodes": len(graph), "seconds": seconds, "cpu_seconds": cpu,
            "peak_rss_gib": peak / GIB,
            "rss_growth_gib": max(0, peak - rss0) / GIB, "weights_gib": params * 4 / GIB,
            "fwd_gflops": float(graph.fwd_flops.sum()) / 1e9,
            "names_flops": _digest([graph.names, graph.fwd_flops.tolist(),
                                    graph.bwd_flops.tolist(), graph.out_bytes.tolist()]),
            "edges": sorted(graph.edges)}


def _digest(obj: object) -> str:
    return hashlib.sha1(json.dumps(obj).encode()).hexdigest()


def run(name: str, capture: str, timeout: float) -> dict:
    """Run :func:`child` in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--child", name, capture]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"model": name, "requested": capture, "error": f"timeout {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"model": name, "requested": capture, "error": done.stderr.strip()[-300:]}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    from splitopt import zoo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=[*zoo.names(), "gpt2_xl"])
    ap.add_argument("--captures", nargs="*", default=["auto", "fx"])
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    rows = [run(m, c, args.timeout) for m in args.models for c in args.captures]
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "edges"} for r in rows], indent=1))
        return
    print(f"{'model':15} {'capture':14} {'params':>13} {'nodes':>6} {'wall s':>7} {'CPU s':>6} "
          f"{'peak RSS GiB':>12} {'growth GiB':>10} {'weights GiB':>11}")
    for r in rows:
        how = f"{r['requested']}->{r['capture']}" if "capture" in r else r["requested"]
        if "error" in r:
            print(f"{r['model']:15} {how:14} error: {r['error']}")
            continue
        print(f"{r['model']:15} {how:14} {r['params']:>13,} {r['nodes']:>6} {r['seconds']:>7.2f} "
              f"{r['cpu_seconds']:>6.2f} {r['peak_rss_gib']:>12.3f} {r['rss_growth_gib']:>10.3f} "
              f"{r['weights_gib']:>11.3f}")
    by = {(r["model"], r["requested"]): r for r in rows if "error" not in r}
    for m in args.models:
        a, f = by.get((m, "auto")), by.get((m, "fx"))
        if a and f:
            same = "same" if a["names_flops"] == f["names_flops"] else "DIFFERENT"
            extra = sorted({tuple(e) for e in f["edges"]} ^ {tuple(e) for e in a["edges"]})
            print(f"{m}: auto ({a['capture']}) / fx CPU-time ratio "
                  f"{a['cpu_seconds'] / f['cpu_seconds']:.2f}; {same} node names, FLOPs and "
                  f"bytes; edges differing: {extra or 'none'}")
    xl = [r for r in rows if r["model"] == "gpt2_xl" and "error" not in r]
    for r in xl:
        verdict = "within" if r["peak_rss_gib"] <= 4 else "OVER"
        print(f"gpt2_xl ({r['params'] / 1e9:.2f}e9 parameters, {r['capture']}): peak RSS "
              f"{r['peak_rss_gib']:.2f} GiB, {verdict} 4 GiB; materialised weights alone would "
              f"take {r['weights_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
