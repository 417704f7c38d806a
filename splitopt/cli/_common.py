"""Helpers shared by the commands: output-path checks (JSON and tables: splitopt.console)."""

from __future__ import annotations

from pathlib import Path

from splitopt.console import emit_json, table
from splitopt.errors import InputError

__all__ = ["check_out_path", "emit_json", "table"]


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
