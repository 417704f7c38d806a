"""The multi-process runner (gloo on loopback) against the in-process runner."""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import pytest
import torch

from splitopt.errors import InputError
from splitopt.execute.distributed import run_rank
from splitopt.execute.examples import digits_job, digits_scenario
from splitopt.execute.launch import launch
from splitopt.execute.loop import TrainingDiverged
from splitopt.execute.runner import train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # the fault test below covers agreement and pacing in one launch
def test_multi_process_equals_in_process_and_paces_the_links() -> None:
    # SFL-V2: a shared server model serving the devices in turn, so the order of events matters;
    # a narrow band, so that pacing is visible against compute
    sc = digits_scenario(2, bandwidth_hz=2e6, local_iters=2)
    job = digits_job(2, mode="sflv2", cuts=["conv1", "fc1"], batch_sizes=[8, 16], rounds=2,
                     lr=0.1, scenario=sc)
    mine = train(job)
    theirs = launch(job, timeout_s=300)
    same_weights(mine.final_state["global"], theirs.final_state["global"])
    assert [r.train_loss for r in mine.history] == pytest.approx(
        [r.train_loss for r in theirs.history], rel=1e-6)
    check_pacing(mine.history, theirs.history)


def check_pacing(priced: list, paced: list, dead: tuple = ()) -> None:
    """The same bytes travel, and a paced transfer takes at least its priced 8*bytes/rate."""
    for r_in, r_mp in zip(priced, paced, strict=True):
        for d, st in r_mp.devices.items():
            if d in dead:
                continue  # a dead device's process never sends its timing report
            sim = r_in.devices[d]
            assert (st.up_bytes, st.down_bytes) == (sim.up_bytes, sim.down_bytes)
            assert st.uplink_s >= 0.99 * sim.uplink_s
            assert st.downlink_s >= 0.99 * sim.downlink_s
            assert st.aggregation_s >= 0.99 * sim.aggregation_s
            assert st.server_compute_s > 0 and st.device_compute_s > 0


def test_killed_device_process_checkpoints_and_resume_across_runners(tmp_path) -> None:
    # dev1's process dies (os._exit) before its iteration 1 of round 1; the run goes on
    ck = tmp_path / "ck"
    # SFL-V2: the shared server serves the devices in turn, so the event order matters
    job = digits_job(3, mode="sflv2", rounds=3, local_iters=2, lr=0.1, batch_sizes=[8, 16, 8],
                     faults={"dev1": (1, 1)}, checkpoint_every=2, checkpoint_dir=str(ck),
                     scenario=digits_scenario(3, bandwidth_hz=2e7, local_iters=2))
    mp = launch(job, timeout_s=300)
    inproc = train(job.with_config(checkpoint_every=0, checkpoint_dir=None))
    assert mp.links == "paced" and inproc.links == "priced"
    check_pacing(inproc.history, mp.history, dead=("dev1",))
    assert mp.failed == ["dev1"] and mp.history[1].failed == ["dev1"]
    assert mp.history[1].devices["dev1"].iterations == 1
    assert set(mp.history[2].devices) == {"dev0", "dev2"}
    # the round the device died in is logged like any other: loss, accuracy, the survivors
    assert all(math.isfinite(r.train_loss) and math.isfinite(r.test_loss) for r in mp.history)
    # the in-process runner, dropping dev1 at the same point, reaches the same weights
    same_weights(inproc.final_state["global"], mp.final_state["global"])
    assert [r.train_loss for r in inproc.history] == pytest.approx(
        [r.train_loss for r in mp.history], rel=1e-6)
    # and resuming in-process from the multi-process checkpoint written after round 1 (the
    # fault included) trains round 2 to the same end state
    resumed = train(job.with_config(checkpoint_every=0, checkpoint_dir=None, rounds=3),
                    resume=ck)
    assert len(resumed.history) == 3
    same_weights(resumed.final_state["global"], mp.final_state["global"])


def test_world_size_must_match_the_plan() -> None:
    with pytest.raises(InputError, match="world size: got 5"):
        run_rank(digits_job(2), 0, 5)


def test_kill_9_of_a_device_process_is_a_fault_and_the_run_resumes(tmp_path) -> None:
    # a real crash: SIGKILL to dev1's process once round 0 is checkpointed; the run goes on
    ck = tmp_path / "ck"
    sc = digits_scenario(2, bandwidth_hz=1e6, local_iters=2)
    job = digits_job(2, mode="sflv1", rounds=4, local_iters=2, lr=0.1, batch_sizes=[8, 8],
                     checkpoint_every=1, checkpoint_dir=str(ck), scenario=sc)

    def kill_after_round_0(pids: dict[str, int]) -> None:
        def watch() -> None:
            while not (ck / "manifest.json").is_file():
                time.sleep(0.005)
            os.kill(pids["dev1"], signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()

    res = launch(job, timeout_s=300, on_start=kill_after_round_0)
    assert res.failed == ["dev1"]
    assert [r.round for r in res.history] == [0, 1, 2, 3]
    died = next(r.round for r in res.history if r.failed)
    assert died >= 1 and set(res.history[-1].devices) == {"dev0"}
    assert all(math.isfinite(r.train_loss) for r in res.history)
    # resuming the checkpoint written after the kill: two more rounds, no trace
    more = launch(job.with_config(rounds=6), resume=ck, timeout_s=300)
    assert [r.round for r in more.history] == [0, 1, 2, 3, 4, 5]
    assert set(more.history[-1].devices) == {"dev0"} and more.failed == ["dev1"]


def test_a_diverging_multi_process_run_stops_with_the_servers_error() -> None:
    # the server stops at the first non-finite round loss; its devices exit quietly
    job = digits_job(1, mode="sl", cuts=["relu2"], batch_sizes=[8], rounds=3, local_iters=2,
                     lr=1e30, scenario=digits_scenario(1, bandwidth_hz=1e8, local_iters=2))
    with pytest.raises(TrainingDiverged, match="round 0: the training loss is nan"):
        launch(job, timeout_s=300)
