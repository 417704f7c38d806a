"""One small exception hierarchy.

Every message names the field, the value received, what is allowed and, where there is one, the fix,
so that a user never has to read a traceback from inside numpy, HiGHS or torch.
"""

from __future__ import annotations

from typing import Any


class _Missing:
    """Marker for a required value that was not given (shown as ``missing`` in messages)."""

    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()
"""Pass as ``value`` to :class:`InputError` when a required field is absent."""


class SplitoptError(Exception):
    """Base class of every error splitopt raises on purpose."""


class InputError(SplitoptError, ValueError):
    """A value given by the user is not allowed.

    Parameters
    ----------
    field
        Where the value sits, e.g. ``"devices[2].flops"`` or ``"node 'layer1.0.conv1'.fwd_flops"``.
    value
        The value received, or :data:`MISSING` when a required field is absent.
    allowed
        What would have been accepted.
    fix
        Optional advice on what to do.

    """

    def __init__(self, field: str, value: Any, allowed: str, fix: str | None = None):
        self.field, self.value, self.allowed, self.fix = field, value, allowed, fix
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        got = "missing" if value is MISSING else f"got {shown}"
        msg = f"{field}: {got}; allowed: {allowed}."
        if fix:
            msg += f" {fix}"
        super().__init__(msg)


class GraphError(InputError):
    """A layer graph is malformed (cycle, unknown node, bad number, missing field)."""


class ScenarioError(InputError):
    """A scenario, device, server, channel or training setting is invalid."""


class ProfileError(SplitoptError):
    """A torch model could not be profiled."""


class InfeasibleError(SplitoptError):
    """No plan satisfies the constraints; the message says which device and which constraint."""


class SolverError(SplitoptError):
    """A solver backend failed or is not available."""


def read_text_file(path: Any, what: str, allowed: str,
                   error: type[InputError] = InputError) -> str:
    """The text of ``path``, or ``error(what, path, allowed)`` if it is absent or unreadable.

    A missing file, a folder, a permission problem or bytes that are not UTF-8 all become one
    clear error instead of an OSError / UnicodeDecodeError traceback.
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise error(what, str(path), allowed)
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise error(what, str(path), f"{allowed}, readable as UTF-8 text", str(err)) from None


def check_finite_nonneg(field: str, value: Any, *, positive: bool = False) -> float:
    """Return ``value`` as a float, or raise :class:`InputError` if it is not a finite number >= 0.

    With ``positive=True`` zero is rejected too.
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(field, value, "a finite number") from None
    bad = not (x == x) or x in (float("inf"), float("-inf")) or x < 0 or (positive and x == 0)
    if bad:
        allowed = "a finite number > 0" if positive else "a finite number >= 0"
        raise InputError(field, value, allowed)
    return x
