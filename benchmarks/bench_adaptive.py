"""Adaptive family: adaptive re-planning vs the static plan on a changing link trace
(benchmarks/adaptive.py, where the cases and the table live)."""

from splitopt.benchmarks.adaptive import SPEC  # noqa: F401  (importing registers the family)
