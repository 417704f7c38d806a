"""Predictions calibrated by the executor's own part times, compared per device and phase."""

from __future__ import annotations

import pytest

from splitopt.execute.examples import digits_job, digits_scenario
from splitopt.execute.loop import DeviceRound, RoundRecord
from splitopt.execute.modes import priced_server_shares
from splitopt.execute.timing import Calibration, compare, predict, time_parts


def job():
    return digits_job(2, mode="sflv1", cuts=["conv1", "fc1"], batch_sizes=[8, 8],
                      scenario=digits_scenario(2, local_iters=3))


def test_part_times_replace_compute_and_server_work_drops_the_share() -> None:
    j = job()
    base, _ = predict(j)
    cal = Calibration(j.scenario, {"dev0": (0.01, 0.02), "dev1": (0.03, 0.04)})
    shared, latency = predict(j, cal)
    work, latency_work = predict(j, cal, server_work=True)
    phis = priced_server_shares(j.scenario, j.devices(), j.training_mode())
    for d, (dev_s, srv_s) in cal.parts.items():
        assert shared[d].device_compute_s == pytest.approx(3 * dev_s)
        assert shared[d].server_compute_s == pytest.approx(3 * srv_s / phis[d])
        assert work[d].server_compute_s == pytest.approx(3 * srv_s)
        # transfers are the cost model's either way
        assert (shared[d].uplink_s, shared[d].downlink_s) == (base[d].uplink_s, base[d].downlink_s)
    assert latency_work == latency  # the round keeps the shares (contention) either way


def test_time_parts_runs_the_executor_parts_here() -> None:
    parts = time_parts(job(), iterations=3, warmup=1)
    assert set(parts) == {"dev0", "dev1"}
    assert all(dev > 0 and srv > 0 for dev, srv in parts.values())


def test_compare_reports_each_device_and_phase_with_cpu_rows() -> None:
    j = job()
    pred, latency = predict(j)
    recs = [RoundRecord(r, 1.0, 1.0, 0.5, 1.0, latency, 0.0,
                        {d: DeviceRound(device_compute_s=2 * p.device_compute_s,
                                        device_compute_cpu_s=p.device_compute_s,
                                        uplink_s=p.uplink_s, downlink_s=1.1 * p.downlink_s)
                         for d, p in pred.items()}) for r in range(3)]
    out = compare(recs, pred, latency)["per_device"]
    for d in pred:
        assert out[d]["device_compute_s"]["rel_error"] == pytest.approx(1.0)
        assert out[d]["device_compute_cpu_s"]["rel_error"] == pytest.approx(0.0)
        assert out[d]["uplink_s"]["rel_error"] == pytest.approx(0.0)
        assert out[d]["downlink_s"]["rel_error"] == pytest.approx(0.1)
