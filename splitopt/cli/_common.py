"""Helpers shared by the commands: JSON output, rich tables, output-path checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from splitopt.errors import InputError


def emit_json(doc: Any) -> None:
    """Print a JSON document to standard output (for ``--json``)."""
    print(json.dumps(doc, indent=1, default=str))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a rich table; floats are shown with 4 significant digits."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    Console().print(t)  # a new console reads the terminal width (COLUMNS) of this call


def check_out_path(out: Path | None, force: bool, option: str = "--out") -> None:
    """Refuse an output path before any work is done, not after (results would be lost).

    The folder must exist; the path must not be a folder; an existing file needs ``--force``.
    """
    if out is None:
        return
    if out.is_dir():
        raise InputError(option, str(out), "a file path (this is a folder)",
                         "Name a file inside it, e.g. " + str(out / "plan.json") + ".")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(option, str(out), "a file in an existing folder",
                         f"Create the folder {str(folder)!r} first.")
    if out.exists() and not force:
        raise InputError(option, str(out), "a path that does not exist yet",
                         "Pass --force to overwrite it.")
