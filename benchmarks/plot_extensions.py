"""Figures for docs/formulations.md: the energy-delay front and the memory/recomputation trade-off.

Run: ``.venv/bin/python -m splitopt.benchmarks.plot_extensions [OUT_DIR]`` (default docs/img); it
prints the numbers behind each figure.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from splitopt.benchmarks.bench_extensions import energy_delay_problem, memory_wall_scenario

from splitopt.errors import InfeasibleError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_figure(out: Path, n: int = 3, points: int = 24, weights: int = 21) -> None:
    """Exact epsilon-constraint front vs weighted-sum points, unsupported points marked."""
    from splitopt.formulations import energy_delay as ed

    p = energy_delay_problem(n)
    ref = (ed.min_delay(p), ed.min_energy(p, math.inf).energy_j)
    ws = ed.nondominated([ed.weighted_sum(p, float(w), ref) for w in np.linspace(0, 1, weights)])
    # the exact front at a uniform epsilon grid plus the weighted-sum points' own delays
    extra = [ed.min_energy(p, q.delay_s * (1 + 1e-12)) for q in ws]
    front = ed.nondominated(ed.pareto_front(p, points) + extra)
    hidden = ed.unsupported(front)
    print(f"pareto: {len(front)} front points, {len(hidden)} unsupported; weighted sums found "
          f"{len(ws)} distinct points from {weights} weights")
    for q in front:
        print(f"  eps-front delay {q.delay_s:.5f} s energy {q.energy_j:.5f} J "
              f"(bound {q.bound:.5f}, {q.iterations} OA iterations)")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step([q.delay_s for q in front], [q.energy_j for q in front], "o-", where="post", ms=4,
            label="exact front (epsilon-constraint points)")
    ax.plot([q.delay_s for q in ws], [q.energy_j for q in ws], "s", mfc="none", ms=9,
            label="weighted-sum optima")
    ax.plot([q.delay_s for q in hidden], [q.energy_j for q in hidden], "x", color="red", ms=8,
            label="unsupported (no weight reaches them)")
    ax.set_xlabel("round delay (s)")
    ax.set_ylabel("device energy per round (J)")
    ax.set_title(f"Energy-delay front, {n} devices (HFSL, arXiv 2209.02428)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "energy_delay_front.png", dpi=90)
    plt.close(fig)


def memory_figure(out: Path, n: int = 20) -> None:
    """Participants and round delay vs memory-budget scale, with and without recomputation."""
    from splitopt.formulations import smartsplit as ss

    sc = memory_wall_scenario(n)
    base = np.array([d.memory_bytes for d in sc.devices])
    scales = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
    rows = []
    for f in scales:
        row = [f]
        for rc in (True, False):
            part = ss.solve(ss.instance(sc, budgets=base * f, deadline=2.0, channels=10,
                                        recompute=rc), objective="participation")
            try:
                lat = ss.solve(ss.instance(sc, budgets=base * f, min_devices=n // 2,
                                           recompute=rc)).round_s
            except InfeasibleError:
                lat = math.nan
            row += [part.participants, lat]
        rows.append(row)
        print(f"memory x{f}: participants {row[1]} (recompute) vs {row[3]} (none); "
              f"delay for {n // 2} devices {row[2]:.3f} s vs {row[4]:.3f} s")
    r = np.array(rows, dtype=float)
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.plot(r[:, 0], r[:, 1], "o-", label="with recomputation")
    a1.plot(r[:, 0], r[:, 3], "s--", label="keep every activation")
    a1.set_xlabel("memory budget scale")
    a1.set_ylabel("devices taking part (deadline 2 s)")
    a1.legend(fontsize=8)
    a2.plot(r[:, 0], r[:, 2], "o-", label="with recomputation")
    a2.plot(r[:, 0], r[:, 4], "s--", label="keep every activation")
    a2.set_xlabel("memory budget scale")
    a2.set_ylabel(f"round delay, fastest {n // 2} devices (s)")
    a2.set_yscale("log")
    a2.legend(fontsize=8)
    fig.suptitle(f"SmartSplit memory wall, {n} devices (arXiv 2410.11577)")
    fig.tight_layout()
    fig.savefig(out / "smartsplit_memory.png", dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> None:
    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    pareto_figure(out)
    memory_figure(out)


if __name__ == "__main__":
    main(sys.argv[1:])
