"""Scenario files (YAML and JSON), the device catalog, device groups and immutability."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from splitopt import Device, LayerGraph, Scenario, catalog_device, catalog_server
from splitopt.scenario import catalog, default_scenario_path, load_yaml, resolve_model
from splitopt.system import spectral_efficiency
from splitopt.testing import random_dag

SCENARIO = """
name: two-kinds
model: graph.json
devices:
  - {catalog: jetson-nano, count: 3, snr_db: 10}
  - {catalog: raspberry-pi-4, name: pi, spectral_eff_up: 2.5, spectral_eff_dn: 4.0}
  - {name: custom, flops: 1.0e9, memory_bytes: 2.0e9, snr_db: 0, power_tx_w: 0.1}
server: {catalog: edge-h100}
channel: {bandwidth_up_hz: 1.0e6, bandwidth_dn_hz: 2.0e6}
training: {batch_size: 16, local_iters: 2, optimizer_copies: 2, labels: device,
           schedule: sequential, aggregate: false, rounds: 7}
"""


@pytest.fixture
def graph() -> LayerGraph:
    return random_dag(np.random.default_rng(7), 6)


@pytest.fixture
def files(tmp_path, graph):
    graph.save(tmp_path / "graph.json")
    (tmp_path / "s.yaml").write_text(SCENARIO)
    doc = load_yaml(SCENARIO)  # YAML 1.2 numbers (1.0e9), as Scenario.load reads them
    (tmp_path / "s.json").write_text(json.dumps(doc))
    return tmp_path


def test_yaml_and_json_load_the_same(files, graph):
    a = Scenario.load(files / "s.yaml")
    b = Scenario.load(files / "s.json")
    assert a == b
    assert a.graph == graph
    assert a.training.batch_size == 16 and a.training.schedule == "sequential"
    assert a.training.labels == "device" and a.training.aggregate is False
    assert a.training.rounds == 7 and a.training.optimizer_copies == 2


def test_catalog_count_expansion_and_figures(files):
    sc = Scenario.load(files / "s.yaml")
    assert [d.name for d in sc.devices] == ["jetson-nano-0", "jetson-nano-1", "jetson-nano-2",
                                            "pi", "custom"]
    nano = catalog()["devices"]["jetson-nano"]
    d0 = sc.device("jetson-nano-0")
    assert d0.flops == pytest.approx(nano["peak_fp32_flops"] * nano["utilisation"])
    assert d0.memory_bytes == nano["memory_bytes"] and d0.power_compute_w == nano["power_compute_w"]
    assert d0.device_class == "jetson-nano" and d0.cls == "jetson-nano"
    assert sc.device("pi").spectral_eff_up == 2.5 and sc.device("pi").spectral_eff_dn == 4.0
    assert sc.device("custom").device_class is None and sc.device("custom").cls == "custom"
    srv = catalog()["servers"]["edge-h100"]
    assert sc.server.flops == pytest.approx(srv["peak_fp32_flops"] * srv["utilisation"])
    assert sc.server.device_class == "h100"


def test_snr_db_gives_shannon_spectral_efficiency(files):
    sc = Scenario.load(files / "s.yaml")
    assert sc.device("jetson-nano-1").spectral_eff_up == pytest.approx(math.log2(1 + 10.0))
    assert sc.device("jetson-nano-1").spectral_eff_dn == pytest.approx(math.log2(11.0))
    assert sc.device("custom").spectral_eff_up == pytest.approx(1.0)  # 0 dB: log2(2)
    # explicit spectral efficiencies win over snr_db
    d = Device(name="d", flops=1, snr_db=10, spectral_eff_up=0.5)
    assert d.spectral_eff_up == 0.5 and d.spectral_eff_dn == pytest.approx(math.log2(11))


@pytest.mark.parametrize("db", [-30.0, -3.0, 0.0, 3.0, 20.0, 60.0, 300.0])
def test_spectral_efficiency_formula(db):
    assert spectral_efficiency(db) == pytest.approx(math.log2(1 + 10 ** (db / 10)), rel=1e-12)


def test_spectral_efficiency_huge_snr_is_finite():
    assert spectral_efficiency(1e6) == pytest.approx(1e5 * math.log2(10), rel=1e-12)
    assert Device(name="d", flops=1, snr_db=5000).spectral_eff_up > 1000


def test_device_groups(files):
    sc = Scenario.load(files / "s.yaml")
    assert sc.device_groups() == [[0, 1, 2], [3], [4]]
    assert sc.n_devices == 5


def test_catalog_overrides(graph):
    d = catalog_device("jetson-orin-nano", name="orin", snr_db=5, utilisation=0.8)
    entry = catalog()["devices"]["jetson-orin-nano"]
    assert d.flops == pytest.approx(entry["peak_fp32_flops"] * 0.8) and d.name == "orin"
    assert catalog_device("jetson-nano", snr_db=1, flops=5e9).flops == 5e9
    doc = {"devices": [{"catalog": "raspberry-pi-5", "count": 2, "snr_db": 3,
                        "peak_fp32_flops": 1e11, "memory_bytes": 1e9}],
           "server": {"catalog": "edge-a2", "utilisation": 1.0},
           "channel": {"bandwidth_up_hz": 1, "bandwidth_dn_hz": 1}}
    sc = Scenario.from_dict(doc, graph=graph)
    util = catalog()["devices"]["raspberry-pi-5"]["utilisation"]
    assert [d.flops for d in sc.devices] == [pytest.approx(1e11 * util)] * 2
    assert sc.devices[0].memory_bytes == 1e9
    assert sc.server.flops == pytest.approx(catalog()["servers"]["edge-a2"]["peak_fp32_flops"])
    assert catalog_server("edge-a2").name == "edge-a2"


def test_catalog_entries_are_sane():
    cat = catalog()
    assert {"jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-orin-nano", "raspberry-pi-4",
            "raspberry-pi-5", "phone-snapdragon-8-gen-2"} <= set(cat["devices"])
    for name, e in {**cat["devices"], **cat["servers"]}.items():
        assert 0 < e["utilisation"] <= 1, name
        assert 1e9 < e["peak_fp32_flops"] < 1e15, name
    for name in cat["devices"]:
        d = catalog_device(name, snr_db=10)
        assert d.flops > 0 and d.memory_bytes > 0 and d.power_compute_w > 0, name


def test_scenario_is_immutable(files):
    sc = Scenario.load(files / "s.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.devices = ()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        sc.devices[0].flops = 1.0  # pydantic frozen model
    with pytest.raises(ValidationError):
        sc.training.batch_size = 1
    assert isinstance(sc.devices, tuple)
    fewer = sc.replace(devices=sc.devices[:2])
    assert fewer.n_devices == 2 and sc.n_devices == 5


def test_scenario_does_not_keep_callers_list(graph):
    fleet = [Device(name="a", flops=1, snr_db=1)]
    sc = Scenario.from_dict({"devices": [{"name": "a", "flops": 1, "snr_db": 1}],
                             "server": {"flops": 1},
                             "channel": {"bandwidth_up_hz": 1, "bandwidth_dn_hz": 1}}, graph=graph)
    direct = Scenario(graph, fleet, sc.server, sc.channel)
    fleet.append(Device(name="b", flops=1, snr_db=1))
    assert direct.n_devices == 1 and direct == sc


def test_to_dict_round_trip(files):
    sc = Scenario.load(files / "s.yaml")
    again = Scenario.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert again == sc
    (files / "inline.json").write_text(json.dumps(sc.to_dict()))
    assert Scenario.load(files / "inline.json") == sc


def test_model_path_is_relative_to_the_scenario_file(files, graph, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert Scenario.load(files / "s.yaml").graph == graph
    assert resolve_model(graph.to_dict()) == graph


def test_graph_argument_overrides_model(files):
    other = random_dag(np.random.default_rng(99), 3)
    assert Scenario.load(files / "s.yaml", graph=other).graph == other


def test_default_scenario_file_is_valid_yaml():
    doc = load_yaml(default_scenario_path().read_text())
    assert doc["model"] == "digits_cnn" and doc["devices"]
    g = random_dag(np.random.default_rng(0), 4)
    sc = Scenario.from_dict(doc, graph=g)  # every other part validates without torch
    assert sc.n_devices == 6 and sc.training.local_iters == 5
