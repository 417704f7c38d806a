"""Argument checks shared by the zoo factories."""

from __future__ import annotations

from splitopt.errors import InputError


def positive_ints(**values: object) -> None:
    """Raise :class:`InputError` for the first keyword whose value is not an integer >= 1."""
    for field, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(field, value, "an integer >= 1")


def divisible(field: str, value: int, by_field: str, by: int) -> None:
    """Raise :class:`InputError` unless ``value`` is a multiple of ``by`` (e.g. width by heads)."""
    if value % by:
        raise InputError(field, value, f"a multiple of {by_field}={by}")

