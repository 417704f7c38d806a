"""Checkpoints: one ``torch.save`` file per participant in a folder.

The server writes ``server.pt`` (global model, server models, optimisers, RNG streams, the run's
history, failed devices); each device writes ``device-<name>.pt`` (its model, optimiser, RNG
stream and batch shuffler). In-process and multi-process runs write the same files, so a run can
resume under either runner. Files are written to a temporary name and renamed, so a run killed
while writing never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from splitopt.errors import InputError


def participant_file(folder: Path, name: str) -> Path:
    """The file of participant ``name`` (``server`` or a device name)."""
    stem = "server" if name == "server" else "device-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return Path(folder) / f"{stem}.pt"


def save_participant(folder: Path, name: str, state: dict[str, Any]) -> None:
    """Write one participant's state atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = participant_file(folder, name)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_participant(folder: Path, name: str) -> dict[str, Any]:
    """Read one participant's state."""
    path = participant_file(Path(folder), name)
    if not path.is_file():
        raise InputError("checkpoint", str(path), "an existing checkpoint file",
                         "Resume from a folder written with checkpoint_every > 0.")
    return torch.load(path, weights_only=False)
