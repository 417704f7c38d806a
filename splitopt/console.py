"""Terminal output shared by the commands (``splitopt.cli``) and the demo: tables and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any


def emit_json(doc: Any) -> None:
    """Print a JSON document to standard output (for ``--json``)."""
    print(json.dumps(doc, indent=1, default=str))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a rich table; floats are shown with 4 significant digits."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    Console().print(t)  # a new console reads the terminal width (COLUMNS) of this call
