"""Test-suite settings shared by every module.

Hypothesis runs derandomised by default, so ``make test`` (what CI runs) draws the same examples
on every run and a failure reproduces exactly. For local exploration with fresh random examples
and the example database, run ``HYPOTHESIS_PROFILE=explore make test`` (or pytest).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
