"""The generic path's progress display (incumbent, bound, gap) and what silences it."""

from __future__ import annotations

import numpy as np

from splitopt import Problem
from splitopt.solving import progress as pg
from splitopt.testing import random_dag, random_scenario


def _problem() -> Problem:
    rng = np.random.default_rng(5)
    sc = random_scenario(rng, random_dag(rng, 5, chain=True), 3)
    p = Problem(sc, batch=[8, 16])
    p.minimize(p.round_latency() + 0.01 * p.total_energy())  # a weighted sum: the generic path
    return p


def test_progress_shows_rounds_on_stderr_only_when_asked(monkeypatch, capsys):
    monkeypatch.setattr(pg.Progress.__init__, "__kwdefaults__",
                        {"after_s": 0.0, "every_s": 0.0, "console": None})
    quiet = _problem().solve(path="generic")  # log=False: silent
    assert capsys.readouterr().err == ""
    shown = _problem().solve(path="generic", progress=True)
    err = capsys.readouterr().err
    assert "round" in err and "incumbent" in err and "gap" in err
    assert quiet.termination == shown.termination == "optimal"
    assert abs(quiet.objective - shown.objective) <= 1e-9 * abs(shown.objective)


def test_progress_history_and_gap():
    prog = pg.Progress(False)
    prog(1, None, 0.5)
    prog(2, 2.0, 1.0)
    assert [h[1] for h in prog.history] == [1, 2]
    assert prog.history[0][4] is None and prog.history[1][4] == 0.5
