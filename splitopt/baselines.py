"""Naive plans every exact method is compared with (the seed papers' tables' columns).

All use equal bandwidth shares (and, on a shared server, leave the server shares unplanned: the
split devices divide the server equally, ``costs.server_shares``) and price through the reference
cost model:

- ``device_only``: every layer but the loss on the device;
- ``server_only``: only the input on the device (raw data is sent);
- ``common_cut``: the one cut that is best when all devices must use it;
- ``own_cut``: each device's own best cut at its equal bandwidth share (no joint allocation).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from splitopt.costs import CutTable, round_terms
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario


def _plan(scenario: Scenario, table: CutTable, choice: np.ndarray, method: str) -> Plan:
    n = scenario.n_devices
    sets = table.sets()
    devs = tuple(DevicePlan(d.name, sets[int(c)], 1.0 / n)
                 for d, c in zip(scenario.devices, choice))
    return Plan(devs, rounds=scenario.training.rounds, method=method, status="feasible").priced(
        scenario)


def _equal_share_times(scenario: Scenario, table: CutTable) -> np.ndarray:
    tr = scenario.training
    terms = round_terms(scenario.devices, scenario.server, scenario.channel, tr, table)
    return terms.round_time(np.full(scenario.n_devices, 1.0 / scenario.n_devices))


def device_only(scenario: Scenario, table: CutTable | None = None) -> Plan:
    """Every layer except the loss on the device, equal bandwidth."""
    table = table or CutTable.chain(scenario.graph)
    sizes = table.masks.sum(axis=1)
    return _plan(scenario, table, np.full(scenario.n_devices, int(np.argmax(sizes))), "device-only")


def server_only(scenario: Scenario, table: CutTable | None = None) -> Plan:
    """Only the inputs on the device (raw samples go up), equal bandwidth."""
    table = table or CutTable.chain(scenario.graph)
    sizes = table.masks.sum(axis=1)
    return _plan(scenario, table, np.full(scenario.n_devices, int(np.argmin(sizes))), "server-only")


def common_cut(scenario: Scenario, table: CutTable | None = None) -> Plan:
    """The best single cut shared by all devices, equal bandwidth."""
    table = table or CutTable.chain(scenario.graph)
    t = _equal_share_times(scenario, table)
    if scenario.training.schedule == "sequential":
        best = int(np.argmin(t.sum(axis=0)))
    else:
        best = int(np.argmin(t.max(axis=0)))
    return _plan(scenario, table, np.full(scenario.n_devices, best), "common-cut")


def own_cut(scenario: Scenario, table: CutTable | None = None) -> Plan:
    """Each device's best cut at an equal bandwidth share."""
    table = table or CutTable.chain(scenario.graph)
    return _plan(scenario, table, np.argmin(_equal_share_times(scenario, table), axis=1),
                 "own-cut-equal-bw")


NAIVE: dict[str, Callable[[Scenario, CutTable | None], Plan]] = {
    "device-only": device_only, "server-only": server_only, "common-cut": common_cut,
    "own-cut-equal-bw": own_cut}
