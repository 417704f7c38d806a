"""The ``splitopt`` command line (typer + rich).

Each command lives in its own module of this package and exposes ``register(app)``; modules are
discovered here, so adding a command is adding one file. Errors that splitopt raises on purpose are
printed as one line (no traceback) and exit with status 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from splitopt.errors import SplitoptError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compose, solve exactly and execute split-learning planning problems.")

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}").register(app)


def main() -> None:
    """Entry point of the ``splitopt`` script."""
    try:
        app()
    except SplitoptError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(2)
