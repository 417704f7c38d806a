"""Solver backends: one module each, one registry in order of preference (HiGHS first).

Availability is checked with ``importlib.util.find_spec`` (nothing heavy is imported until a solve).
"""

from __future__ import annotations

from splitopt.backends.base import Backend
from splitopt.backends.cvxpy import CvxpyBackend
from splitopt.backends.highs import HighsBackend
from splitopt.backends.pyomo import PyomoBackend
from splitopt.backends.results import Result
from splitopt.errors import InputError, SolverError

#: every known backend, in order of preference
REGISTRY: dict[str, type[Backend]] = {b.name: b for b in (HighsBackend, CvxpyBackend, PyomoBackend)}


def available() -> list[str]:
    """Names of the installed backends, in order of preference."""
    return [n for n, b in REGISTRY.items() if b.available()]


def get_backend(name: str | Backend | None = None) -> Backend:
    """A backend instance by name (default: the first available)."""
    if isinstance(name, Backend):
        return name
    if name is None:
        names = available()
        if not names:
            raise SolverError("no solver backend is installed; pip install highspy")
        name = names[0]
    if name not in REGISTRY:
        raise InputError("backend", name, f"one of {list(REGISTRY)}")
    cls = REGISTRY[name]
    if not cls.available():
        raise SolverError(f"backend {name!r} needs {', '.join(cls.requires)}: "
                          f"pip install 'splitopt[{name}]'")
    return cls()


__all__ = ["REGISTRY", "Backend", "Result", "available", "get_backend"]
