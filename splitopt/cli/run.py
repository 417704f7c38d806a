"""``splitopt run``: train a model as a plan says, in one process or one process per device.

Where the model and scenario come from (first found wins):

- scenario: ``--scenario FILE``, else ``plan.meta["scenario"]`` (a path relative to the plan file);
- model: ``--model NAME``, else ``plan.meta["model"]``, else the scenario file's ``model`` field
  when it is a zoo name or ``package.module:factory`` (a graph JSON cannot be executed);
- mode: ``--mode``, else ``plan.meta["train_mode"]``, else ``hsfl`` when a plan device is in FL
  mode, else ``sl`` for a ``sequential`` scenario schedule and ``sflv1`` otherwise.

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set) with ``--processes``, each process runs its own
rank; rank 0 writes the results.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import typer
import yaml

from splitopt.cli._common import check_out_path
from splitopt.errors import InputError
from splitopt.plan import Plan
from splitopt.scenario import Scenario

RUN_FORMAT = "splitopt.run"


def _scenario_path(plan: Plan, plan_path: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    meta = plan.meta.get("scenario")
    if not meta:
        raise InputError("--scenario", None, "a scenario file, or plan.meta['scenario']",
                         "Pass --scenario scenario.yaml.")
    return (plan_path.parent / str(meta)) if not Path(str(meta)).is_absolute() else Path(meta)


def _model_name(plan: Plan, scenario_path: Path, given: str | None) -> str:
    if given:
        return given
    if plan.meta.get("model"):
        return str(plan.meta["model"])
    doc = yaml.safe_load(scenario_path.read_text()) or {}
    spec = doc.get("model") if isinstance(doc, dict) else None
    if isinstance(spec, str) and not spec.endswith(".json"):
        return spec
    raise InputError("model", spec if isinstance(spec, str) else type(spec).__name__,
                     "a zoo name or 'package.module:factory' (a graph alone cannot be trained)",
                     "Pass --model NAME.")


def _default_mode(plan: Plan, scenario: Scenario) -> str:
    if plan.meta.get("train_mode"):
        return str(plan.meta["train_mode"])
    if any(d.mode == "fl" for d in plan.devices if d.selected):
        return "hsfl"
    return "sl" if scenario.training.schedule == "sequential" else "sflv1"


def _faults(specs: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for s in specs:
        name, _, rest = s.rpartition("@")
        parts = rest.split(":")
        if not name or len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InputError("--fail", s, "DEVICE@ROUND:ITERATION, e.g. dev1@2:0")
        out[name] = (int(parts[0]), int(parts[1]))
    return out


def build_job(plan_path: Path, scenario: Path | None, model: str | None, mode: str | None,
              rounds: int | None, settings: dict[str, Any]) -> Any:
    """The :class:`~splitopt.execute.job.Job` a command line describes."""
    from splitopt.execute.job import Job, RunConfig

    plan = Plan.load(plan_path)
    sc_path = _scenario_path(plan, plan_path, scenario)
    sc = Scenario.load(sc_path)
    cfg = RunConfig(mode=mode or _default_mode(plan, sc),
                    rounds=int(sc.training.rounds) if rounds is None else rounds, **settings)
    return Job(plan, sc, _model_name(plan, sc_path, model), cfg)


def _train(job: Any, links: str, resume: Path | None, threads: int, quiet: bool,
           trace: Any = None, adaptive: bool = True) -> Any:
    import torch

    torch.set_num_threads(threads)  # also for the calibration here, as in the run's processes
    if links != "priced":
        from splitopt.execute.launch import launch

        with _status(f"training in {len(job.devices()) + 1} processes", quiet):
            return launch(job, resume=resume, threads=threads,
                          links="auto" if links == "emulated" else "paced", trace=trace,
                          adaptive=adaptive)
    from rich.progress import Progress

    from splitopt.execute.runner import train

    with Progress(disable=quiet, transient=True) as bar:
        task = bar.add_task(f"{job.config.mode} rounds", total=job.config.rounds)

        def tick(rec: Any) -> None:
            bar.update(task, completed=rec.round + 1,
                       description=f"{job.config.mode} loss {rec.train_loss:.3f} "
                                   f"acc {rec.test_accuracy:.3f}")

        return train(job, resume=resume, on_round=tick, trace=trace, adaptive=adaptive)


def _status(text: str, quiet: bool) -> Any:
    from contextlib import nullcontext

    from rich.console import Console

    return nullcontext() if quiet else Console().status(text)


def results_document(job: Any, result: Any, calibrate: bool,
                     trace: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results file: per-round loss, accuracy, phase times, predicted vs measured.

    ``trace`` (``{"file": ..., "adaptive": ...}``): the links followed a trace, so the run has no
    single plan to predict by; the document records each re-plan instead.
    """
    from splitopt.execute.timing import TRANSFER_GAP_S, compare, predict
    from splitopt.execute.timing import calibrate as calib

    if trace is not None:
        calibrate = False

    note = ("per-node times and the executor's per-iteration part times (forward, backward with "
            "the second autograd pass, optimiser steps) measured on this machine")
    cal: Any = job.scenario
    if calibrate:
        try:
            cal = calib(job, gap_s=TRANSFER_GAP_S if result.runner == "multi-process" else 0.0)
        except Exception as err:  # noqa: BLE001 - an uncalibrated prediction is still useful
            note = f"uncalibrated (calibration failed: {type(err).__name__}: {err})"
    else:
        note = "uncalibrated: the scenario's FLOP rates"
    last = result.history[-1] if result.history else None
    if trace is not None:
        pvm: dict[str, Any] = {"calibration": "not compared: the links followed a trace",
                               "phases": {}, "per_device": {}}
    else:
        pred, latency = predict(job, cal, server_work=result.runner == "multi-process")
        links, reference = _calibrated_links(job, result.links, pred, calibrate)
        pvm = {"calibration": note, "links_calibration": links,
               **compare(result.history, pred if reference is None else links.pop("_pred"),
                         latency, reference=reference)}
    return {"format": RUN_FORMAT, "version": 1, "model": job.model, "mode": job.config.mode,
            "runner": result.runner, "links": result.links, "config": _config_dict(job.config),
            "initial_test_loss": result.initial_test[0],
            "initial_test_accuracy": result.initial_test[1],
            "final_test_loss": last.test_loss if last else None,
            "final_test_accuracy": last.test_accuracy if last else None,
            "failed_devices": result.failed, "trace": trace, "replans": result.replans,
            "rounds": [r.to_dict() for r in result.history], "predicted_vs_measured": pvm}


def _calibrated_links(job: Any, kind: str, pred: dict[str, Any], calibrate: bool,
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Per-message link overhead fitted by a calibration exchange on links of the run's kind.

    Returns the fits (JSON-ready; under ``_pred`` the calibrated prediction) and the reference
    prediction, or a note and None where the links were priced or calibration is off or failed.
    """
    from dataclasses import asdict

    from splitopt.execute.linkcal import calibrated, exchange

    if kind not in ("htb", "paced") or not calibrate:
        return {"note": "links priced by the reference model (8 * bytes / rate)"}, None
    aggregate = job.training_mode().has_global
    try:
        fits = exchange(job, kind, pred, aggregate=aggregate)
    except Exception as err:  # noqa: BLE001 - the reference prediction is still reported
        return {"note": f"links uncalibrated (exchange failed: {type(err).__name__}: {err})"}, None
    return {"note": f"t = alpha + 8 * bytes / (efficiency * rate), fitted per device and "
                    f"direction by a calibration exchange on {kind} links",
            "fits": {d: {k: asdict(f) for k, f in fs.items()} for d, fs in fits.items()},
            "_pred": calibrated(pred, fits, job.iters(), aggregate=aggregate)}, pred


def _config_dict(cfg: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(cfg)
    d["faults"] = {k: list(v) for k, v in cfg.faults.items()}
    return d


def run(plan: Path = typer.Argument(..., help="plan JSON (splitopt solve / partition)"),
        scenario: Path = typer.Option(None, "--scenario", help="scenario YAML/JSON"),
        model: str = typer.Option(None, "--model", help="zoo name or package.module:factory"),
        mode: str = typer.Option(None, "--mode", help="sl|sflv1|sflv2|psl|hsfl|fl"),
        rounds: int = typer.Option(None, "--rounds", help="rounds (default: scenario's)"),
        local_iters: int = typer.Option(None, "--local-iters", help="iterations per round"),
        processes: bool = typer.Option(False, "--processes",
                                       help="one process per device + server (gloo)"),
        out: Path = typer.Option(None, "--out", help="results JSON file"),
        force: bool = typer.Option(False, "--force", help="overwrite --out"),
        json_out: bool = typer.Option(False, "--json", help="print the results JSON"),
        lr: float = typer.Option(0.05, "--lr"), seed: int = typer.Option(0, "--seed"),
        non_iid: float = typer.Option(None, "--non-iid", help="Dirichlet alpha (default IID)"),
        checkpoint_every: int = typer.Option(0, "--checkpoint-every"),
        checkpoint_dir: Path = typer.Option(None, "--checkpoint-dir"),
        resume: Path = typer.Option(None, "--resume", help="checkpoint folder to resume"),
        fail: list[str] = typer.Option([], "--fail", help="fault: DEVICE@ROUND:ITERATION"),
        threads: int = typer.Option(1, "--threads", help="torch threads per process"),
        links: str = typer.Option(None, "--links",
                                  help="priced (in-process, simulated clock) | paced (processes, "
                                       "user-space pacing) | emulated (processes, kernel-shaped "
                                       "links where possible, else paced)"),
        calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                       help="measure part times here, and each link's "
                                            "per-message overhead (emulated/paced), for "
                                            "the predictions"),
        trace: Path = typer.Option(None, "--trace", help="link trace (.json or .csv, "
                                   "docs/formats.md): the links follow it on the run's clock"),
        adaptive: bool = typer.Option(True, "--adaptive/--static",
                                      help="with --trace: re-plan between rounds and re-split "
                                           "in place (sflv1), or keep the plan"),
        optimizer: str = typer.Option("sgd", "--optimizer", help="sgd (momentum 0.9) | adam"),
        ) -> None:
    """Train the plan's model by the plan (cuts, batch sizes, shares, modes).

    Reports per-round loss and accuracy, and measured beside predicted phase times.
    """
    check_out_path(out, force)  # before the work, so that results are never trained and then lost
    links = _links(links, processes)
    _check_run_options(threads=threads, rounds=rounds, local_iters=local_iters, lr=lr,
                       non_iid=non_iid, checkpoint_every=checkpoint_every,
                       checkpoint_dir=checkpoint_dir)
    if resume is not None:
        from splitopt.execute.checkpoint import open_checkpoint

        open_checkpoint(resume)  # a bad folder is refused before anything is trained
    fleet_trace = _load_trace(trace, links)
    settings = {"optimizer": optimizer, "local_iters": local_iters, "lr": lr, "seed": seed,
                "iid": non_iid is None,
                "alpha": 0.5 if non_iid is None else non_iid, "checkpoint_every": checkpoint_every,
                "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir else None,
                "faults": _faults(fail)}
    job = build_job(plan, scenario, model, mode, rounds, settings)
    if fleet_trace is not None:
        from splitopt.execute.adaptive import Adaptation

        Adaptation(job, fleet_trace, adaptive=adaptive)  # refuses a bad mode before training
    if links != "priced" and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        result = _torchrun_rank(job, resume, threads)
        if result is None:  # not rank 0: the server writes the results
            return
    else:
        result = _train(job, links, resume, threads, quiet=json_out, trace=fleet_trace,
                        adaptive=adaptive)
    doc = results_document(job, result, calibrate, None if trace is None else
                           {"file": str(trace), "adaptive": adaptive})
    if out is not None:
        from splitopt.io import atomic_write

        atomic_write(out, json.dumps(doc, indent=1, default=str))
    if json_out:
        print(json.dumps(doc, indent=1, default=str))
    else:
        _print_summary(doc, out)


def _load_trace(path: Path | None, links: str) -> Any:
    """The ``--trace`` file read (a FleetTrace), or None."""
    if path is None:
        return None
    if links != "priced" and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        raise InputError("--trace", str(path), "a run started by splitopt itself (torchrun "
                         "ranks do not follow traces)", "Run without torchrun.")
    from splitopt.traces import FleetTrace

    return FleetTrace.load(path)


def _torchrun_rank(job: Any, resume: Path | None, threads: int) -> Any:
    """Run this torchrun rank; the RunResult on rank 0, None elsewhere."""
    import torch

    from splitopt.execute.distributed import run_rank

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "result.pt")
        run_rank(job, rank, world, init_method="env://", out=path if rank == 0 else None,
                 resume=str(resume) if resume else None, threads=threads)
        if rank != 0:
            return None
        from splitopt.execute.distributed import result_of

        return result_of(torch.load(path, weights_only=True))


def _print_summary(doc: dict[str, Any], out: Path | None) -> None:
    from splitopt.cli._common import table

    table(f"{doc['mode']} ({doc['runner']})", ["round", "train loss", "test loss", "accuracy",
                                               "latency s", "failed"],
          [(r["round"], r["train_loss"], r["test_loss"], r["test_accuracy"], r["latency_s"],
            ",".join(r["failed"])) for r in doc["rounds"]])
    if doc.get("replans"):
        table(f"re-plans ({'adaptive' if doc['trace']['adaptive'] else 'static'})",
              ["round", "time s", "device", "old cut", "new cut", "old share", "new share",
               "re-plan ms"],
              [(r["round"], r["time_s"], r["device"], ",".join(r["old_cut"]),
                ",".join(r["new_cut"]), r["old_share"], r["new_share"], r["replan_ms"])
               for r in doc["replans"]])
    pvm = doc["predicted_vs_measured"]
    if not pvm["phases"]:
        if out is not None:
            print(f"results: {out}")
        return
    table(f"predicted vs measured per round, links {doc['links']} ({pvm['calibration']})",
          ["device", "phase", "measured s", "predicted s", "rel. error", "reference s",
           "ref. error"],
          [(dev, k, v["measured"], v["predicted"], _pct(v["rel_error"]),
            v.get("reference_predicted", v["predicted"]),
            _pct(v.get("reference_rel_error", v["rel_error"])))
           for dev, phases in [("all", pvm["phases"]), *pvm["per_device"].items()]
           for k, v in phases.items()])
    if out is not None:
        print(f"results: {out}")


def _links(links: str | None, processes: bool) -> str:
    """The link kind of a command line: ``--links``, else ``paced`` with ``--processes``."""
    allowed = ("priced", "paced", "emulated")
    if links is None:
        return "paced" if processes else "priced"
    if links not in allowed:
        raise InputError("--links", links, " | ".join(allowed))
    return links


def _check_run_options(**options: Any) -> None:
    """Field-level errors for the numeric options, before any work."""
    ints = {"threads": 1, "rounds": 1, "local_iters": 1, "checkpoint_every": 0}
    for name, low in ints.items():
        v = options[name]
        if v is not None and v < low:
            raise InputError("--" + name.replace("_", "-"), v, f"an integer >= {low}")
    lr = options["lr"]
    if not (math.isfinite(lr) and lr > 0):
        raise InputError("--lr", lr, "a finite number > 0", "e.g. --lr 0.05")
    alpha = options["non_iid"]
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise InputError("--non-iid", alpha, "a finite Dirichlet alpha > 0 (small: few classes "
                         "per device), or leave it out for IID shards")
    if options["checkpoint_every"] and options["checkpoint_dir"] is None:
        raise InputError("--checkpoint-dir", None, "a folder when --checkpoint-every > 0")
    ck = options["checkpoint_dir"]
    if ck is not None and (ck.exists() and not ck.is_dir()):
        raise InputError("--checkpoint-dir", str(ck), "a folder (this is a file)")
    if ck is not None and not ck.exists() and not (ck.parent if str(ck.parent) else
                                                    Path(".")).is_dir():
        raise InputError("--checkpoint-dir", str(ck), "a folder inside an existing folder",
                         f"Create {str(ck.parent)!r} first.")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the app."""
    app.command("run")(run)
