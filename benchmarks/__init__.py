"""Benchmark registry: one file per family (see docs/benchmarks.md)."""
