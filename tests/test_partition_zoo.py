"""Partitions of zoo models (profiled with torch): the plan's delay is the cost model on its set."""

import pytest

from splitopt import Device, Link, Server, iteration_delay
from splitopt.partitioning import partition
from splitopt.zoo import names

pytest.importorskip("torch")  # the [torch] extra; installed in the project's environment

DEVICES = [Device(name="nano", flops=2.4e11, spectral_eff_up=3, spectral_eff_dn=4),
           Device(name="h100-class", flops=5e12, spectral_eff_up=3, spectral_eff_dn=4,
                   device_class="h100")]
SERVER = Server(flops=4e13, device_class="h100")
LINKS = [Link(2e6, 5e6), Link(1e8, 3e8)]


def _have_h100_profiles() -> bool:
    from splitopt.errors import InputError
    from splitopt.profiler.attach import profiles_path

    try:
        profiles_path()
    except InputError:
        return False
    return True


# the measured profiles live outside the repository (../shared): used where present, else FLOPs
HAVE_H100 = _have_h100_profiles()


def _profile(name):
    from splitopt.profiler import profile_model
    with_times = HAVE_H100 and name != "digits_cnn"
    return profile_model(name, times="h100") if with_times else profile_model(name)


def _check_model(g, methods):
    for dev in DEVICES:
        for link in LINKS:
            plans = {m: partition(g, dev, SERVER, link, method=m, batch=8) for m in methods}
            best = plans["maxflow"].objective
            for m, p in plans.items():
                side = p.devices[0].device_side
                g.check_split(side)
                assert p.objective == pytest.approx(
                    iteration_delay(g, side, dev, SERVER, link, batch=8), rel=1e-9), m
                if m != "chain":
                    assert p.status == "optimal" and p.objective == pytest.approx(best, rel=1e-9)
                else:
                    assert p.objective >= best * (1 - 1e-12)


def test_resnet18_with_measured_h100_times():
    if not HAVE_H100:
        pytest.skip("the measured H100 profiles (../shared/data/profiles) are not beside the repo")
    g = _profile("resnet18")
    assert g.device_classes() == {"h100"}
    _check_model(g, ("maxflow", "blockwise", "milp", "chain"))
    # the h100-class device prices its side from the measured times, node by node
    p = partition(g, DEVICES[1], SERVER, LINKS[0], batch=8)
    mask = g.mask(p.devices[0].device_side)
    secs = g.train_seconds("h100", DEVICES[1].flops)
    assert p.meta["phases"]["device_compute_s"] == pytest.approx(8 * secs[mask].sum(), rel=1e-12)
    assert not (secs == g.train_flops / DEVICES[1].flops).all()


def test_cli_accepts_a_zoo_name(tmp_path):
    from typer.testing import CliRunner

    from splitopt.cli import app
    (tmp_path / "sc.yaml").write_text(
        "model: digits_cnn\ndevices: [{catalog: raspberry-pi-4, snr_db: 6}]\n"
        "server: {catalog: edge-a2}\nchannel: {bandwidth_up_hz: 1.0e6, bandwidth_dn_hz: 1.0e6}\n")
    res = CliRunner().invoke(app, ["partition", "digits_cnn", "--scenario",
                                   str(tmp_path / "sc.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    assert '"status": "optimal"' in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", names())
def test_every_zoo_model(name):
    _check_model(_profile(name), ("maxflow", "blockwise", "chain"))
