"""Fit HSFL's convergence surrogate from pilot runs on digits and check it against measured rounds.

Runs the HSFL executor (``execute/modes.py``: FL devices in parallel, SL devices in turn through
one server model) on digits with non-IID shards (Dirichlet alpha = 0.3) for every mix of
{0, 2, 4} FL devices out of 4 and batch sizes {4, 16}. The first ``pilot`` rounds of every run fit
A, G, sigma^2 and the floor f* from the rounds each run took to reach the loss levels 1.6, 1.3,
1.0, 0.8 (:func:`splitopt.formulations.hsfl.estimate_surrogate_from_rounds`; SGD lr 0.02, 5 local
iterations); the measured rounds to the target 0.5 (beyond the pilot: first round whose
running-minimum test loss is at or below it) are set beside the surrogate's prediction
R = A / (eps - G * FL share - sigma^2 * sum rho^2 / b). The surrogate's form is the framework's,
not the paper's theorem.

Reproduce: ``.venv/bin/python -m splitopt.benchmarks.hsfl_surrogate`` (about 4 minutes on 2
cores; writes ``docs/img/hsfl_surrogate.png`` and prints a JSON summary).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

N_DEVICES = 4
MIXES = (0, 2, 4)
BATCHES = (4, 16)


def run(n_fl: int, batch: int, rounds: int, seed: int = 0) -> list[float]:
    """Test loss after each round of one HSFL run (n_fl FL devices, the rest SL, one batch)."""
    import torch

    from splitopt.execute.examples import digits_job
    from splitopt.execute.runner import train

    torch.set_num_threads(1)
    modes = ["fl"] * n_fl + ["split"] * (N_DEVICES - n_fl)
    job = digits_job(N_DEVICES, mode="hsfl", modes=modes, batch_sizes=[batch] * N_DEVICES,
                     rounds=rounds, local_iters=5, iid=False, alpha=0.3, lr=0.02, seed=seed)
    return [r.test_loss for r in train(job).history]


def collect(rounds: int, cache: Path | None = None) -> list[dict[str, Any]]:
    """Every mix's full run (test loss per round), cached as JSON when ``cache`` is given."""
    if cache is not None and cache.is_file():
        runs = json.loads(cache.read_text())
        if all(len(r["losses"]) >= rounds for r in runs):
            return runs
    rho = 1.0 / N_DEVICES
    runs = [{"n_fl": n_fl, "batch": b, "losses": run(n_fl, b, rounds),
             "fl_share": n_fl * rho, "var_term": N_DEVICES * rho**2 / b}
            for n_fl in MIXES for b in BATCHES]
    if cache is not None:
        from splitopt.io import atomic_write

        atomic_write(cache, json.dumps(runs))
    return runs


def study(rounds: int = 60, pilot: int = 25, levels: tuple[float, ...] = (1.6, 1.3, 1.0, 0.8),
          target: float = 0.5, cache: Path | None = None) -> dict[str, Any]:
    """Fit on the pilot rounds (the rounds each run took to reach ``levels``), then predict the
    rounds to ``target`` (beyond the pilot) and measure them on the full runs."""
    from splitopt.formulations.hsfl import estimate_surrogate_from_rounds, rounds_to_target

    runs = collect(rounds, cache)
    pilots = [{**r, "losses": r["losses"][:pilot]} for r in runs]
    sur, floor = estimate_surrogate_from_rounds(pilots, levels, target)
    rows = []
    for r in runs:
        pen = sur.G * r["fl_share"] + sur.sigma2 * r["var_term"]
        fit = {t: (rounds_to_target(r["losses"][:pilot], t), sur.A / (t - floor - pen)
                   if t - floor - pen > 0 else math.inf) for t in levels}
        rows.append({"n_fl": r["n_fl"], "batch": r["batch"],
                     "measured_rounds": rounds_to_target(r["losses"][:rounds], target),
                     "predicted_rounds": sur.rounds(pen), "pilot_levels": fit,
                     "losses": r["losses"][:rounds]})
    return {"A": sur.A, "G": sur.G, "sigma2": sur.sigma2, "floor": floor, "eps": sur.eps,
            "target": target, "levels": list(levels), "pilot_rounds": pilot, "rounds": rounds,
            "runs": rows}


def figure(res: dict[str, Any], path: Path) -> None:
    """Left: measured test loss per round; right: predicted vs measured rounds to each level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    r = np.arange(1, res["rounds"] + 1)
    top = 0.0
    for i, row in enumerate(res["runs"]):
        color = f"C{i}"
        label = f"{row['n_fl']} FL / {N_DEVICES - row['n_fl']} SL, b={row['batch']}"
        ax1.plot(r, np.minimum.accumulate(row["losses"]), "-", color=color, lw=1, label=label)
        ax1.plot(r, row["losses"], ".", color=color, ms=2)
        for meas, pred in row["pilot_levels"].values():
            ax2.plot(pred, meas, "o", color=color, ms=4)
            top = max(top, meas, pred if math.isfinite(pred) else 0)
        ax2.plot(row["predicted_rounds"], row["measured_rounds"], "*", color=color, ms=11)
        top = max(top, row["measured_rounds"], row["predicted_rounds"])
    ax1.axvline(res["pilot_rounds"], color="grey", ls=":", lw=1)
    for level in res["levels"]:
        ax1.axhline(level, color="grey", ls="--", lw=0.5)
    ax1.axhline(res["target"], color="black", ls="--", lw=0.8)
    ax1.set_xlabel("round")
    ax1.set_ylabel("test loss (line: best so far)")
    ax1.set_title("HSFL on digits, non-IID; pilot = rounds left of the dotted line")
    ax1.legend(fontsize=7)
    ax2.plot([0, top * 1.05], [0, top * 1.05], "k--", lw=0.8)
    ax2.set_xlabel("rounds predicted by the fitted surrogate")
    ax2.set_ylabel("rounds measured")
    ax2.set_title(f"dots: pilot levels {res['levels']} (fitted); stars: target {res['target']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    import tempfile

    out = study(cache=Path(tempfile.gettempdir()) / "splitopt-hsfl-surrogate-runs.json")
    figure(out, Path(__file__).resolve().parents[1] / "docs" / "img" / "hsfl_surrogate.png")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))
    for row in out["runs"]:
        print(json.dumps({k: v for k, v in row.items() if k != "losses"}))
