"""The exact export: the mixed-integer conic program itself, read back and solved by SCIP."""

import numpy as np
import pytest

from splitopt import InputError
from splitopt.backends.export import result_columns, write_program
from splitopt.model import Problem
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario

pyscipopt = pytest.importorskip("pyscipopt", reason="the export is checked by SCIP (bench extra)")


def _problem(seed: int, server_share: bool) -> Problem:
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 4, chain=True), 3,
                         training=Training(batch_size=int(rng.integers(1, 33))),
                         serving="dedicated")
    p = Problem(sc, server_share=server_share)
    p.minimize(p.round_latency())
    return p


def _read(path) -> "pyscipopt.Model":
    m = pyscipopt.Model()
    m.hideOutput()
    m.readProblem(str(path))
    m.setParam("limits/gap", 1e-9)
    return m


@pytest.mark.parametrize("server_share", [False, True])
def test_conic_export_solved_by_scip_matches_and_checks_the_plan(tmp_path, server_share):
    p = _problem(91, server_share)
    res = p.solve()
    prog = p.compile(linear=False)
    assert not prog.is_linear and prog.is_mip  # cones and integers: the program itself
    path = tmp_path / "p.cip"
    write_program(prog, path)
    m = _read(path)
    m.optimize()
    assert m.getStatus() == "optimal"
    assert m.getObjVal() == pytest.approx(res.objective, rel=1e-6)
    # the plan, as values of the program's own columns, is feasible at its objective
    m = _read(path)
    by_name = {v.name: v for v in m.getVars()}
    cols = result_columns(p, res)
    assert len(cols) == p.n_cols and set(cols) <= set(by_name)
    for name, val in cols.items():
        m.chgVarLb(by_name[name], val)
        m.chgVarUb(by_name[name], val)
    m.optimize()
    assert m.getStatus() == "optimal"
    assert m.getObjVal() == pytest.approx(res.objective, rel=1e-6)


def test_a_worse_plan_is_worse_in_the_exported_program(tmp_path):
    p = _problem(7, False)
    res = p.solve()
    write_program(p.compile(linear=False), tmp_path / "p.cip")
    m = _read(tmp_path / "p.cip")
    by_name = {v.name: v for v in m.getVars()}
    cols = result_columns(p, res)
    n = p.n_devices
    off = p.bandwidth.offset
    names = list(cols)
    # shift bandwidth from device 0 to device 1: a feasible plan that cannot be better
    shares = [cols[names[off + k]] for k in range(n)]
    moved = min(shares[0] / 2, 0.1)
    cols[names[off]] -= moved
    cols[names[off + 1]] += moved
    for name, val in cols.items():
        m.chgVarLb(by_name[name], val)
        m.chgVarUb(by_name[name], val)
    m.optimize()
    assert m.getStatus() == "optimal"
    assert m.getObjVal() >= res.objective * (1 - 1e-9)


def test_the_plan_checks_against_the_outer_approximation_too(tmp_path):
    """The MPS of the outer approximation has the same columns: the plan is feasible there, and
    no better (tangents under-estimate the cones, so the relaxation's value is <= the plan's)."""
    p = _problem(91, False)
    res = p.solve()
    write_program(p.compile(), tmp_path / "oa.mps")
    m = _read(tmp_path / "oa.mps")
    by_name = {v.name: v for v in m.getVars()}
    for name, val in result_columns(p, res).items():
        m.chgVarLb(by_name[name], val)
        m.chgVarUb(by_name[name], val)
    m.optimize()
    assert m.getStatus() == "optimal"
    assert m.getObjVal() <= res.objective * (1 + 1e-9)


def test_linear_formats_and_bad_suffix(tmp_path):
    p = _problem(3, False)
    write_program(p.compile(), tmp_path / "oa.mps")  # HiGHS: the outer approximation
    best = p.solve().objective
    for suffix in (".lp", ".nl"):  # SCIP: cones as quadratic rows (AMPL .nl keeps no names)
        write_program(p.compile(linear=False), tmp_path / f"conic{suffix}")
        m = _read(tmp_path / f"conic{suffix}")
        m.optimize()
        assert m.getObjVal() == pytest.approx(best, rel=1e-6)
    with pytest.raises(InputError, match=r"\.cip"):
        write_program(p.compile(), tmp_path / "p.txt")
