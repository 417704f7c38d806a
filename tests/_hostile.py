"""Shared pieces of the hostile-input tests: a small valid graph/scenario/plan and a checker.

Every hostile case must end in one of two ways: it loads (and then its values are in range), or it
raises the project's own :class:`InputError` with a one-line message naming a field. Anything else
(a foreign exception, a RecursionError, a multi-line message) fails the case.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from splitopt.errors import InputError
from splitopt.testing import random_dag

GRAPH = random_dag(np.random.default_rng(3), 4)
GRAPH_DOC = GRAPH.to_dict()

SCENARIO_DOC = {
    "devices": [{"catalog": "jetson-nano", "count": 2, "snr_db": 10},
                {"name": "phone", "flops": 5.0e11, "memory_bytes": 6.0e9, "power_compute_w": 4,
                 "power_tx_w": 0.2, "spectral_eff_up": 3.0, "spectral_eff_dn": 5.0}],
    "server": {"catalog": "edge-a2"},
    "channel": {"bandwidth_up_hz": 2.0e6, "bandwidth_dn_hz": 2.0e6},
    "training": {"batch_size": 16, "local_iters": 2, "rounds": 10},
}


def plan_doc() -> dict:
    """A valid plan document for SCENARIO_DOC over GRAPH (three devices)."""
    side = sorted(GRAPH.chain_prefixes()[1])
    return {"format": "splitopt.plan", "version": 1, "method": "test", "status": "unknown",
            "rounds": 10, "meta": {},
            "devices": [{"device": name, "device_side": side, "bandwidth_share": 0.3,
                         "server_share": 0.3, "batch_size": None, "mode": "split",
                         "selected": True}
                        for name in ("jetson-nano-0", "jetson-nano-1", "phone")]}


def edited(doc: dict, path: str, value=None, *, delete: bool = False) -> dict:
    """A deep copy of ``doc`` with the field at ``a.b.0.c`` set to ``value`` (or deleted)."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    key = int(last) if last.isdigit() else last
    if delete:
        del node[key]
    else:
        node[key] = value
    return out


def one_line_error(err: BaseException, field: str | None = None) -> None:
    """``err`` is the project's InputError, with one line naming ``field`` (a regex) if given."""
    assert isinstance(err, InputError), f"{type(err).__name__}: {err}"
    text = str(err)
    assert "\n" not in text and "\r" not in text, text
    assert "Traceback" not in text and "pydantic" not in text.lower(), text
    assert err.field and err.allowed and "\n" not in err.field, text
    if field is not None:
        assert re.search(field, err.field), f"field {err.field!r} does not match {field!r}: {text}"


def raises_input_error(call, field: str | None = None) -> InputError:
    """Run ``call``; it must raise a one-line InputError (naming ``field``)."""
    with pytest.raises(Exception) as info:
        call()
    one_line_error(info.value, field)
    return info.value


def dumps(doc) -> str:
    """JSON text that keeps NaN/Infinity (as a careless writer would produce)."""
    return json.dumps(doc, allow_nan=True)
