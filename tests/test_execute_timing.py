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


def test_schedule_gaps_follow_the_plan_schedule() -> None:
    """Parallel devices: no idle gap before the server step, a device waits for the server's
    pass over every device; in turn (sl): the server idles for the upload. Capped at 50 ms."""
    from splitopt.execute.timing import MAX_GAP_S, schedule_gaps

    parts = {"dev0": (0.001, 0.002), "dev1": (0.001, 0.003)}
    j = job()
    ref, _ = predict(j)
    gaps = schedule_gaps(j, parts)
    for d in parts:
        up, dn = ref[d].uplink_s / 3, ref[d].downlink_s / 3
        assert gaps[d] == pytest.approx((0.0, min(MAX_GAP_S, up + dn + 0.005)))
    sl = digits_job(2, mode="sl", cuts=["conv1", "fc1"], batch_sizes=[8, 8],
                    scenario=digits_scenario(2, local_iters=3, bandwidth_hz=1e9))
    ref, _ = predict(sl)
    gaps = schedule_gaps(sl, parts)
    for d, (_, srv) in parts.items():
        up, dn = ref[d].uplink_s / 3, ref[d].downlink_s / 3
        assert gaps[d] == pytest.approx((up, up + dn + srv))


def test_device_parts_timed_apart_in_a_process_of_their_own(monkeypatch) -> None:
    import torch

    from splitopt.execute import timing

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the run's processes (a forked child computes on one thread)
    children = []
    real = timing._in_child
    monkeypatch.setattr(timing, "_in_child", lambda fn, t: children.append(1) or real(fn, t))
    try:
        parts = time_parts(job(), iterations=3, warmup=1, gap_s={"dev0": (0.0, 0.001)},
                           devices_apart=True)
    finally:
        torch.set_num_threads(threads)
    assert set(parts) == {"dev0", "dev1"}
    assert all(dev > 0 and srv > 0 for dev, srv in parts.values())
    assert len(children) == timing.APART_PASSES * 2  # every device, every pass, in a child


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


def test_fit_alpha_recovers_alpha_and_efficiency_from_synthetic_messages() -> None:
    from splitopt.execute.linkcal import fit_alpha

    # t = 0.8 ms + ref / 0.95, two message sizes, a little symmetric noise around each
    pts = [(ref, 0.0008 + ref / 0.95 + e) for ref in (0.002, 0.008) for e in (-1e-5, 0, 1e-5)]
    fit = fit_alpha(pts)
    assert fit.alpha_s == pytest.approx(0.0008, rel=1e-6)
    assert fit.efficiency == pytest.approx(0.95, rel=1e-6)
    # one size: alpha only (the median excess), efficiency 1
    one = fit_alpha([(0.002, 0.0025), (0.002, 0.0031), (0.002, 0.0027)])
    assert (one.alpha_s, one.efficiency) == (pytest.approx(0.0007), 1.0)
    assert one.seconds(0.01, 5) == pytest.approx(5 * 0.0007 + 0.01)
    with pytest.raises(ValueError):
        fit_alpha([])


def test_calibrated_prices_alpha_per_message_and_keeps_compute() -> None:
    from splitopt.execute.linkcal import LinkFit, calibrated

    j = job()
    ref, _ = predict(j)
    fits = {d: {"uplink_s": LinkFit(0.001), "downlink_s": LinkFit(0.0, 0.5),
                "aggregation_s": LinkFit(0.002)} for d in ref}
    cal = calibrated(ref, fits, j.iters(), aggregate=True)
    for d, p in ref.items():
        assert cal[d].uplink_s == pytest.approx(p.uplink_s + 3 * 0.001)
        assert cal[d].downlink_s == pytest.approx(2 * p.downlink_s)
        assert cal[d].aggregation_s == pytest.approx(p.aggregation_s + 0.002)
        assert cal[d].device_compute_s == p.device_compute_s
        assert cal[d].round_s == pytest.approx(
            sum(getattr(cal[d], k) for k in ("device_compute_s", "server_compute_s",
                                             "uplink_s", "downlink_s", "aggregation_s")))


def test_exchange_measures_real_messages_on_paced_links() -> None:
    """A real calibration exchange over paced loopback links: the fit is measured, not priced."""
    from splitopt.execute.linkcal import calibrated, exchange

    j = job()
    ref, latency = predict(j, server_work=True)
    fits = exchange(j, "paced", ref, repeats=2, aggregate=True)
    assert set(fits) == set(ref)
    for d, f in fits.items():
        assert set(f) == {"uplink_s", "downlink_s", "aggregation_s"}
        # pacing releases the last byte at 8*B/r: a message never beats the reference by much
        assert all(x.efficiency > 0 for x in f.values())
        assert f["uplink_s"].seconds(ref[d].uplink_s / 3, 1) > 0.5 * ref[d].uplink_s / 3
    cal = calibrated(ref, fits, j.iters(), aggregate=True)
    recs = [RoundRecord(r, 1.0, 1.0, 0.5, 1.0, latency, 0.0,
                        {d: DeviceRound(uplink_s=p.uplink_s) for d, p in ref.items()})
            for r in range(2)]
    out = compare(recs, cal, latency, reference=ref)["per_device"]
    for d in ref:
        assert out[d]["uplink_s"]["reference_rel_error"] == pytest.approx(0.0)
        assert out[d]["uplink_s"]["reference_predicted"] == pytest.approx(ref[d].uplink_s)
        assert out[d]["uplink_s"]["predicted"] == pytest.approx(cal[d].uplink_s)


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="htb links need root")
def test_exchange_on_htb_links_when_available() -> None:
    from splitopt.execute.linkcal import exchange
    from splitopt.execute.links import htb_unavailable

    why = htb_unavailable()
    if why is not None:
        pytest.skip(f"htb unavailable here: {why}")
    j = job()
    ref, _ = predict(j, server_work=True)
    fits = exchange(j, "htb", ref, repeats=2, aggregate=False)
    assert set(fits) == set(ref)
    assert all(set(f) == {"uplink_s", "downlink_s"} for f in fits.values())
