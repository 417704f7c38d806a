"""The benchmark registry: one file per family, each registering a :class:`BenchSpec`.

A spec says how to build its cases for a sweep (``quick`` or full); a case is one instance x one
method, run by a picklable callable that returns the measured row. Adding a family is one file that
calls :func:`register` at import time and is listed in ``FAMILIES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from splitopt.errors import InputError

# Family modules, in the order the suite runs them (each registers itself on import).
FAMILIES = ("partition", "builder", "joint", "extensions", "solvers", "executor", "profiler",
            "profile", "fleet", "adaptive", "generic")


@dataclass(frozen=True)
class Case:
    """One instance x one method.

    ``run`` is a picklable callable (a module-level function or a functools.partial of one)
    returning a dict with any of: objective, bound, gap, status, build_s, solve_s, plus extras.
    """

    instance: str
    method: str
    run: Callable[[], dict[str, Any]]
    size: float | None = None

    @property
    def key(self) -> str:
        """Identity of the case within its family (used to resume)."""
        return f"{self.instance}/{self.method}"


@dataclass(frozen=True)
class BenchSpec:
    """A benchmark family.

    Attributes
    ----------
    name
        Family name, as given to ``splitopt bench NAME``.
    description
        One line for the report.
    cases
        ``cases(quick) -> list[Case]``: the sweep (quick: the subset that runs in seconds).
    baseline
        The method every other method is compared with (ratio columns in the report); a tuple
        names several, and each instance uses the first of them that it has.
    lower_is_better
        Whether a smaller objective is better (delays: yes).
    extra
        Report settings: ``columns`` lists further row fields to show in the family's table.
    """

    name: str
    description: str
    cases: Callable[[bool], list[Case]]
    baseline: str | tuple[str, ...] | None = None
    lower_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, BenchSpec] = {}


def register(spec: BenchSpec) -> BenchSpec:
    """Add a family to the registry (a family file calls this at import time)."""
    _REGISTRY[spec.name] = spec
    return spec


def load_all() -> dict[str, BenchSpec]:
    """Import every family module that exists and return the registry."""
    for fam in FAMILIES:
        try:
            importlib.import_module(f"splitopt.benchmarks.bench_{fam}")
        except ModuleNotFoundError as err:
            if err.name != f"splitopt.benchmarks.bench_{fam}":
                raise
    return dict(_REGISTRY)


def get(names: list[str] | None) -> list[BenchSpec]:
    """The specs named (all when ``names`` is empty), or a clear error for an unknown name."""
    reg = load_all()
    if not names:
        return list(reg.values())
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise InputError("FAMILY", unknown, f"one of {sorted(reg)}")
    return [reg[n] for n in names]
