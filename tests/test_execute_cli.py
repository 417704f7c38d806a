"""``splitopt run``: a plan file in, a results file out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from splitopt.cli import app
from splitopt.errors import InputError
from splitopt.execute.examples import digits_plan, digits_scenario
from splitopt.execute.loop import TrainingDiverged

SCENARIO = """
model: digits_cnn
devices:
  - {name: dev0, flops: 1.0e9, snr_db: 10}
  - {name: dev1, flops: 1.0e9, snr_db: 20}
server: {flops: 1.0e11}
channel: {bandwidth_up_hz: 1.0e6, bandwidth_dn_hz: 1.0e6}
training: {batch_size: 16, local_iters: 2, rounds: 2}
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    (tmp_path / "sc.yaml").write_text(SCENARIO)
    sc = digits_scenario(2)
    plan = replace(digits_plan(sc, ["conv1", "fc1"], batch_sizes=[8, 16]),
                   meta={"scenario": "sc.yaml"})
    plan.save(tmp_path / "plan.json", sc)
    return tmp_path / "plan.json"


def test_run_writes_results_and_refuses_to_overwrite(plan_file: Path) -> None:
    out = plan_file.parent / "run.json"
    res = CliRunner().invoke(app, ["run", str(plan_file), "--mode", "sflv2", "--out", str(out),
                                   "--no-calibrate", "--lr", "0.1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["format"] == "splitopt.run" and doc["mode"] == "sflv2"
    assert len(doc["rounds"]) == 2  # the scenario's rounds
    r0 = doc["rounds"][0]["devices"]
    assert r0["dev0"]["samples"] == 2 * 8 and r0["dev1"]["samples"] == 2 * 16  # plan batches
    phases = doc["predicted_vs_measured"]["phases"]
    assert phases["uplink_s"]["rel_error"] == pytest.approx(0.0, abs=1e-9)
    assert doc["links"] == "priced"
    again = CliRunner().invoke(app, ["run", str(plan_file), "--out", str(out)])
    assert isinstance(again.exception, InputError) and "--force" in str(again.exception)


def test_run_json_and_the_default_mode(plan_file: Path) -> None:
    res = CliRunner().invoke(app, ["run", str(plan_file), "--rounds", "1", "--json",
                                   "--no-calibrate", "--local-iters", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["mode"] == "sflv1" and len(doc["rounds"]) == 1


def test_run_errors_name_the_option(plan_file: Path, tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["run", str(plan_file), "--fail", "dev1:0"])
    assert isinstance(bad.exception, InputError) and "--fail" in str(bad.exception)
    (tmp_path / "bare.json").write_text(json.dumps(
        {**json.loads(plan_file.read_text()), "meta": {}}))
    missing = CliRunner().invoke(app, ["run", str(tmp_path / "bare.json")])
    assert isinstance(missing.exception, InputError)
    assert "--scenario" in str(missing.exception)


@pytest.mark.parametrize(("args", "field"), [
    (["--threads", "0"], "--threads"),
    (["--rounds", "0"], "--rounds"),
    (["--local-iters", "0"], "--local-iters"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--non-iid", "0"], "--non-iid"),
    (["--non-iid", "inf"], "--non-iid"),
    (["--checkpoint-every", "1"], "--checkpoint-dir"),
    (["--links", "fast"], "--links"),
    (["--out", "nodir/r.json"], "--out"),
])
def test_bad_run_options_are_refused_by_name_before_any_work(plan_file: Path, args: list[str],
                                                             field: str, monkeypatch) -> None:
    monkeypatch.chdir(plan_file.parent)
    res = CliRunner().invoke(app, ["run", str(plan_file), "--no-calibrate", *args])
    assert isinstance(res.exception, InputError), res.output
    assert str(res.exception).startswith(field + ":"), str(res.exception)


def test_out_folder_with_force_and_a_bad_resume_folder_are_refused(plan_file: Path,
                                                                   tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["run", str(plan_file), "--out", str(tmp_path), "--force"])
    assert isinstance(res.exception, InputError) and "this is a folder" in str(res.exception)
    res = CliRunner().invoke(app, ["run", str(plan_file), "--resume", str(tmp_path)])
    assert isinstance(res.exception, InputError) and "manifest.json" in str(res.exception)


def test_a_diverging_run_stops_with_a_clear_error(plan_file: Path) -> None:
    res = CliRunner().invoke(app, ["run", str(plan_file), "--lr", "1e30", "--no-calibrate",
                                   "--rounds", "3", "--local-iters", "2"])
    assert isinstance(res.exception, TrainingDiverged), res.output
    assert "not finite" in str(res.exception) and "--lr 1e+30" in str(res.exception)
