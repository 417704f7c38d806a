"""The main job end to end (short): exact plan, baselines, real training, report files."""

import json

from splitopt.demo import ALTERNATING, EXACT, run_demo
from splitopt.plan import Plan


def test_demo_writes_report_and_exact_beats_baselines(tmp_path):
    lines = []
    res = run_demo(tmp_path, rounds=1, echo=lines.append, adaptive="priced", links="priced")
    exact = res.plans[EXACT]
    assert exact.status == "optimal"
    assert res.scenario.server.serving == "shared"
    for plans in (res.plans, res.plans_big):  # digits (trained) and resnet18 (planning only)
        best = plans[EXACT].predicted.round_latency_s
        for name, plan in plans.items():
            assert plan.predicted.round_latency_s >= best * (1 - 1e-9), name
        # the demo fleet is one where the alternating baseline stops short of the optimum
        assert plans[ALTERNATING].predicted.round_latency_s > best * 1.005
    # the exact plan is written, reloads, and prices to the same latency
    doc = json.loads((tmp_path / "plan.json").read_text())
    again = Plan.from_dict(doc).priced(res.scenario)
    assert again.predicted.round_latency_s == exact.predicted.round_latency_s
    # real training ran (a server-only cut leaves a device nothing to train: still runs)
    assert 0.0 <= res.training["final_test_accuracy"] <= 1.0
    assert res.training["phases_per_round"]["uplink_s"][1] > 0
    report = (tmp_path / "report.md").read_text()
    assert f"| {EXACT} |" in report and "resnet18" in report
    # links that change: the re-planned run re-solves and moves cuts, and is faster while the
    # links are down (priced links in process: 0.37x in the benchmark)
    static, adaptive = res.adaptive
    assert static["replans"] == 0 < adaptive["replans"] and adaptive["moved_cuts"] > 0
    assert adaptive["ratio_s_per_round_dropped"] < 1
    assert "## Links that change mid-training" in report
    assert (tmp_path / "plan.png").stat().st_size > 5000
