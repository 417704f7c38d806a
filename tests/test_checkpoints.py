"""Checkpoint folders: safe loading, one manifest per complete round, injective file names."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from splitopt.execute.checkpoint import (
    MANIFEST,
    CheckpointError,
    commit,
    encode_name,
    open_checkpoint,
    participant_file,
    save_participant,
)
from splitopt.execute.examples import digits_job, digits_scenario
from splitopt.execute.runner import train


def job(rounds: int, ck: Path, **kw):
    sc = digits_scenario(2, local_iters=1)
    return digits_job(2, mode="sflv2", cuts=["conv1", "fc1"], batch_sizes=[8, 8], rounds=rounds,
                      scenario=sc, checkpoint_every=1, checkpoint_dir=str(ck), **kw)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Two real checkpoint folders of one job: after round 0 (1 round) and after round 1."""
    base = tmp_path_factory.mktemp("ck")
    train(job(1, base / "r0"))
    train(job(2, base / "r1"))
    return {"r0": base / "r0", "r1": base / "r1"}


def copy(folders: dict[str, Path], key: str, tmp_path: Path) -> Path:
    dst = tmp_path / key
    shutil.copytree(folders[key], dst)
    return dst


def test_manifest_names_one_complete_round_and_old_files_are_gone(folders) -> None:
    files = sorted(p.name for p in folders["r1"].iterdir())
    assert files == ["device-dev0-r000001.pt", "device-dev1-r000001.pt", MANIFEST,
                     "server-r000001.pt"]
    doc = json.loads((folders["r1"] / MANIFEST).read_text())
    assert doc["round"] == 1 and set(doc["participants"]) == {"server", "dev0", "dev1"}
    # resuming round 1 of a 2-round checkpoint reproduces the uninterrupted run
    resumed = train(job(3, folders["r1"]).with_config(checkpoint_every=0, checkpoint_dir=None),
                    resume=copy(folders, "r1", folders["r1"].parent / "resume"))
    straight = train(job(3, folders["r1"]).with_config(checkpoint_every=0, checkpoint_dir=None))
    for k, v in straight.final_state["global"].items():
        torch.testing.assert_close(resumed.final_state["global"][k], v, rtol=0, atol=0)


class Payload:
    """A pickle whose loading would run a shell command (creates ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_without_running_code(folders, tmp_path) -> None:
    ck = copy(folders, "r1", tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"format": "splitopt.checkpoint", "participant": "server", "round": 1,
                "state": Payload(marker)}, ck / "server-r000001.pt")
    with pytest.raises(CheckpointError) as err:
        train(job(3, ck).with_config(checkpoint_every=0, checkpoint_dir=None), resume=ck)
    assert not marker.exists()  # nothing ran
    msg = str(err.value)
    assert "server-r000001.pt" in msg and "nothing was run" in msg and "\n" not in msg


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_file_gives_one_line_naming_it(folders, tmp_path, damage) -> None:
    ck = copy(folders, "r1", tmp_path)
    path = ck / "device-dev1-r000001.pt"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:len(data) // 2], "garbage": b"\x00junk" * 50,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError) as err:
        train(job(3, ck).with_config(checkpoint_every=0, checkpoint_dir=None), resume=ck)
    msg = str(err.value)
    assert "device-dev1-r000001.pt" in msg and "\n" not in msg and "corrupted" in msg


def test_files_of_different_rounds_are_refused(folders, tmp_path) -> None:
    # the case: a server from a late round resumed with devices from an early one
    ck = copy(folders, "r1", tmp_path)
    shutil.copy(folders["r0"] / "device-dev0-r000000.pt", ck / "device-dev0-r000001.pt")
    with pytest.raises(CheckpointError, match=r"round 1 as the manifest says \(it holds round 0\)"):
        train(job(3, ck).with_config(checkpoint_every=0, checkpoint_dir=None), resume=ck)


def test_manifest_problems_are_refused(folders, tmp_path) -> None:
    ck = copy(folders, "r1", tmp_path)
    (ck / "device-dev1-r000001.pt").unlink()
    with pytest.raises(CheckpointError, match="device-dev1-r000001.pt.*an existing file"):
        open_checkpoint(ck)
    (ck / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="readable JSON manifest"):
        open_checkpoint(ck)
    (ck / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="manifest.json"):
        open_checkpoint(ck)
    with pytest.raises(CheckpointError, match="an existing checkpoint folder"):
        open_checkpoint(tmp_path / "nowhere")


def test_a_file_of_another_participant_is_refused(folders, tmp_path) -> None:
    ck = copy(folders, "r1", tmp_path)
    shutil.copy(ck / "device-dev1-r000001.pt", ck / "device-dev0-r000001.pt")
    with pytest.raises(CheckpointError, match="the state of 'dev0'"):
        open_checkpoint(ck).load("dev0")


def test_an_unpublished_round_leaves_the_last_complete_one(folders, tmp_path) -> None:
    # a run killed while writing round 2: its files are there, the manifest still says round 1
    ck = copy(folders, "r1", tmp_path)
    save_participant(ck, "dev0", 2, {"device": {}})
    m = open_checkpoint(ck)
    assert m.round == 1 and m.load("dev0")["device"]["holder"]


def decode(stem: str) -> str:
    return re.sub(r"_([0-9a-f]+)_", lambda m: chr(int(m.group(1), 16)), stem)


@given(st.text(max_size=30))
def test_device_names_map_to_files_injectively(name: str) -> None:
    enc = encode_name(name)
    assert decode(enc) == name  # decodable, hence injective
    assert re.fullmatch(r"[A-Za-z0-9._\-]*", enc)


def test_names_differing_in_spaces_and_underscores_get_their_own_files(tmp_path) -> None:
    names = ["dev 1", "dev_1", "dev-1", "dev/1", "dev.1"]
    files = {participant_file(n, 3) for n in names}
    assert len(files) == len(names)
    for i, n in enumerate(names):
        save_participant(tmp_path, n, 3, {"i": i})
    save_participant(tmp_path, "server", 3, {})
    commit(tmp_path, 3, ["server", *names])
    m = open_checkpoint(tmp_path)
    assert [m.load(n)["i"] for n in names] == list(range(len(names)))
