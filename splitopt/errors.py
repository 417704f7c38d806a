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
        # a field name may come from a user's key ("\n", "\x1b[2J"): escape it, and keep the
        # whole message on one line whatever the parts hold
        field, allowed = one_line(str(field)), one_line(str(allowed))
        fix = one_line(str(fix)) if fix else fix
        self.field, self.value, self.allowed, self.fix = field, value, allowed, fix
        shown = _short_repr(value)
        got = "missing" if value is MISSING else f"got {shown}"
        msg = f"{field}: {got}; allowed: {allowed}."
        if fix:
            msg += f" {fix}"
        super().__init__(msg)


def one_line(text: str) -> str:
    """``text`` with every non-printable character (newline, escape, NUL) written as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short_repr(value: Any) -> str:
    """``repr(value)`` cut to 120 characters, never failing (a huge int, a deep list)."""
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
        shown = repr(value)
    except (RecursionError, ValueError):  # a 10^5-deep list; int too large for str()
        shown = f"<a {type(value).__name__} too large to show>"
    return shown if len(shown) <= 120 else shown[:117] + "..."


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


def no_plan(infeasible: str, termination: str, who: str) -> SplitoptError:
    """The error for a solve that ended without a plan, by why it ended.

    InfeasibleError (message ``infeasible``) only when the solver proved there is none
    (``infeasible``, or ``unbounded`` on these bounded programs: HiGHS's "unbounded or
    infeasible"); a solver that stopped (``error``, ``time_limit``) proved nothing, so
    SolverError, naming ``who``. A solver failure once read as "no mapping fits the memory".
    """
    if termination in ("infeasible", "unbounded"):
        return InfeasibleError(f"{infeasible} ({termination})")
    if termination == "time_limit":
        return SolverError(f"{who}: the time limit came before any plan was found; "
                           "give a longer time_limit")
    return SolverError(f"{who}: the solver stopped ({termination}) before finding a plan")


def read_text_file(path: Any, what: str, allowed: str,
                   error: type[InputError] = InputError) -> str:
    """The text of ``path``, or ``error(what, path, allowed)`` if it is absent or unreadable.

    A missing file, a folder, a permission problem or bytes that are not UTF-8 all become one
    clear error instead of an OSError / UnicodeDecodeError traceback.
    """
    import os
    from pathlib import Path

    if not isinstance(path, (str, os.PathLike)):
        raise error(what, path, allowed)
    p = Path(path)
    if not p.is_file():
        raise error(what, str(path), allowed)
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise error(what, str(path), f"{allowed}, readable as UTF-8 text", str(err)) from None


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json(text: str, what: str, source: Any = None,
               error: type[InputError] = InputError) -> Any:
    """``json.loads(text)``, or one ``error(what, source, ...)`` line for bad or too deep JSON.

    ``source`` (the file's path) is shown as the value; without it, the start of the text.
    """
    import json

    shown = text[:60] if source is None else str(source)
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey as dup:
        raise error(what, shown, "JSON objects without repeated keys",
                    f"The key {dup.key!r} appears twice in one object; the first would be "
                    "silently ignored.") from None
    except json.JSONDecodeError as err:
        raise error(what, shown, "valid JSON", f"Line {err.lineno}, column {err.colno}: "
                    f"{err.msg}.") from None
    except RecursionError:
        raise error(what, shown, "JSON nested at most a few hundred levels deep",
                    "The document nests lists/objects too deeply.") from None


def check_finite_nonneg(field: str, value: Any, *, positive: bool = False) -> float:
    """Return ``value`` as a float, or raise :class:`InputError` if it is not a finite number >= 0.

    With ``positive=True`` zero is rejected too.
    """
    try:
        if isinstance(value, (bool, str, bytes)):  # float(True), float("2e7") would pass
            raise TypeError
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(field, value, "a finite number") from None
    bad = not (x == x) or x in (float("inf"), float("-inf")) or x < 0 or (positive and x == 0)
    if bad:
        allowed = "a finite number > 0" if positive else "a finite number >= 0"
        raise InputError(field, value, allowed)
    return x


def only_fields(where: str, doc: Any, known: Any, error: type[InputError] = InputError) -> None:
    """Refuse a field a document format does not define (a misspelt key is never ignored)."""
    unknown = [k for k in doc if k not in known]
    if unknown:
        shown = [k if isinstance(k, str) else repr(k) for k in unknown][:5]
        raise error(f"{where}.{shown[0]}", doc[unknown[0]], f"the fields {', '.join(known)} "
                    "(no others)", "See docs/formats.md.")
