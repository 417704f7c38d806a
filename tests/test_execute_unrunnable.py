"""Plans the builder can make but the executors cannot run are refused by name (planned == run)."""

from __future__ import annotations

import pytest

from splitopt.errors import InputError
from splitopt.execute.examples import digits_job, digits_scenario
from splitopt.execute.job import Job
from splitopt.model import Problem


def test_a_plan_that_recomputes_activations_is_refused_by_the_executor() -> None:
    scenario = digits_scenario(2)
    p = Problem(scenario, recompute=True)
    first = p.device_name(0)
    p.cut.fix(first, scenario.graph.chain_prefixes()[2])  # conv1 and relu1 on the device
    p.recompute.fix(first, "conv1", True)
    p.minimize(p.round_latency())
    res = p.solve()
    assert res.termination == "optimal" and res.plan.meta["recompute"] == {first: ["conv1"]}
    job = digits_job(2)
    with pytest.raises(InputError, match="recompute") as err:
        Job(res.plan, scenario, job.model, job.config)
    assert "executors do not run" in str(err.value)
