"""Checkpoints: one file per participant and round, and a manifest that names a complete set.

A checkpoint folder holds

- ``server-r<round>.pt`` (global model, server models, optimisers, RNG streams, the run's history,
  failed devices) and ``device-<name>-r<round>.pt`` per live device (its model, optimiser, RNG
  stream, batch shuffler), written by the participant that owns the state (in-process: all by one
  process; multi-process: each device process its own);
- ``manifest.json``: ``{"format": "splitopt.checkpoint", "version": 1, "round": r,
  "participants": {name: file}}``, written last, after every file of round ``r`` is on disk.

Every file is written atomically (:mod:`splitopt.io`), and files of older rounds are removed only
after the new manifest is in place, so a run killed at any moment leaves the previous complete
checkpoint readable. Resuming reads the manifest and checks every file against it (participant and
round), so a server from round 59 is never resumed with devices from round 5.

Security: files are loaded with ``torch.load(weights_only=True)`` and hold only tensors and plain
data (dicts, lists, numbers, strings), so a crafted file cannot run code; a corrupted or foreign
file gives one :class:`CheckpointError` line naming it.

Device names map to file names injectively: letters, digits, ``.`` and ``-`` stay, every other
character (``_`` included) becomes ``_`` and its code point in hex and ``_``, so ``"dev 1"`` and
``"dev_1"`` get different files.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitopt.errors import InputError
from splitopt.io import atomic_save, atomic_write

FORMAT = "splitopt.checkpoint"
MANIFEST = "manifest.json"
_KEEP = re.compile(r"[A-Za-z0-9.\-]")
_OWN_FILE = re.compile(r"^(server|device-.*)-r\d{6,}\.pt$")


class CheckpointError(InputError):
    """A checkpoint folder or file that cannot be resumed from (one line: which file, why)."""

    def __init__(self, path: Path | str, problem: str, fix: str | None = None) -> None:
        super().__init__("checkpoint", str(path), problem,
                         fix or "Resume from a folder written by splitopt run --checkpoint-every.")


def encode_name(name: str) -> str:
    """An injective, file-system-safe spelling of a device name."""
    return "".join(c if _KEEP.fullmatch(c) else f"_{ord(c):x}_" for c in name)


def participant_file(name: str, rnd: int) -> str:
    """File name of participant ``name`` (``server`` or a device name) after round ``rnd``."""
    stem = "server" if name == "server" else "device-" + encode_name(name)
    return f"{stem}-r{rnd:06d}.pt"


def save_participant(folder: Path | str, name: str, rnd: int, state: dict[str, Any]) -> None:
    """Write one participant's state after round ``rnd`` (atomically; the manifest comes later)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "participant": name, "round": int(rnd), "state": state}
    atomic_save(folder / participant_file(name, rnd), lambda fh: torch.save(doc, fh))


def commit(folder: Path | str, rnd: int, participants: list[str]) -> None:
    """Publish round ``rnd``: write the manifest naming the files, then drop older rounds' files."""
    folder = Path(folder)
    files = {p: participant_file(p, rnd) for p in participants}
    missing = [f for f in files.values() if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(folder / missing[0], "a file written before the manifest")
    atomic_write(folder / MANIFEST, json.dumps(
        {"format": FORMAT, "version": 1, "round": int(rnd), "participants": files}, indent=1))
    keep = set(files.values())
    for old in folder.iterdir():
        if _OWN_FILE.match(old.name) and old.name not in keep:
            old.unlink(missing_ok=True)


@dataclass(frozen=True)
class Manifest:
    """A checkpoint folder's manifest: the round and each participant's file."""

    folder: Path
    round: int
    participants: dict[str, str]

    def has(self, name: str) -> bool:
        """Whether ``name`` (``server`` or a device) has state in this checkpoint."""
        return name in self.participants

    def load(self, name: str) -> dict[str, Any]:
        """The state of participant ``name``, checked against the manifest."""
        if name not in self.participants:
            raise CheckpointError(self.folder / MANIFEST, f"a manifest that lists {name!r}")
        path = self.folder / self.participants[name]
        doc = _safe_load(path)
        if not (isinstance(doc, dict) and doc.get("format") == FORMAT and "state" in doc):
            raise CheckpointError(path, "a splitopt checkpoint file")
        if doc.get("participant") != name:
            raise CheckpointError(path, f"the state of {name!r} (it holds "
                                        f"{doc.get('participant')!r})")
        if doc.get("round") != self.round:
            raise CheckpointError(path, f"round {self.round} as the manifest says (it holds round "
                                        f"{doc.get('round')}); the folder mixes rounds",
                                  "Resume from a folder written by one run, or delete it.")
        return doc["state"]


def open_checkpoint(folder: Path | str) -> Manifest:
    """Read and check a checkpoint folder's manifest (every file it names must exist)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CheckpointError(folder, "an existing checkpoint folder")
    if not path.is_file():
        raise CheckpointError(path, "a manifest.json (none found: not a checkpoint folder, or "
                                    "written by an older splitopt)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(path, "a readable JSON manifest", _one_line(err)) from None
    parts = doc.get("participants") if isinstance(doc, dict) else None
    rnd = doc.get("round") if isinstance(doc, dict) else None
    if (not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1
            or isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0
            or not isinstance(parts, dict) or "server" not in parts
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in parts.items())):
        raise CheckpointError(path, "a splitopt.checkpoint version 1 manifest with a round >= 0 "
                                    "and the server among its participants")
    for name, file in parts.items():
        if file != participant_file(name, rnd):
            raise CheckpointError(path, f"file {participant_file(name, rnd)!r} for {name!r} "
                                        f"(it names {file!r})")
        if not (folder / file).is_file():
            raise CheckpointError(folder / file, "an existing file (the manifest names it)")
    return Manifest(folder, rnd, dict(parts))


def _safe_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``; any failure is one CheckpointError line."""
    import torch

    try:
        data = path.read_bytes()
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        why = ("only tensors and plain data (it holds other objects: refused, nothing was run)"
               if "weights only" in text.lower() or "weights_only" in text.lower()
               else "a readable checkpoint")
        raise CheckpointError(path, why, _one_line(err)) from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
            AttributeError, TypeError, IndexError) as err:
        raise CheckpointError(path, "a readable checkpoint file (it is corrupted or truncated)",
                              _one_line(err)) from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}"
