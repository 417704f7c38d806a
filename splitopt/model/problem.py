"""The declarative Problem: variables, expressions, constraints and an objective.

All of it over one Scenario.

Example:
-------
>>> p = Problem(scenario)                      # cuts: the chain prefixes; bandwidth shares
>>> p.add(p.memory("nano-0") <= 512e6)
>>> p.minimize(p.round_latency())
>>> result = p.solve()                         # exact; result.path says which method ran

"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from splitopt.costs import CutTable
from splitopt.errors import InputError
from splitopt.model.dvfs import Dvfs, check_levels
from splitopt.model.expr import (
    BETA,
    PHI,
    Constraint,
    DeviceTerms,
    Expr,
    maximum,
    option_expr,
    total,
)
from splitopt.model.options import OptionTable, batch_sizes, build_options, cut_table
from splitopt.model.recompute import Recompute
from splitopt.model.relays import Relay, Relays
from splitopt.model.variables import (
    BatchVar,
    CutVar,
    LevelVar,
    ModeVar,
    SelectVar,
    ShareVar,
    Var,
)
from splitopt.scenario import Scenario

#: what ``Problem.solve()`` and ``Problem.compile()`` call, set by ``splitopt/__init__`` (it runs
#: before any submodule): model/ imports neither solving nor compile, which read Problems
ACTIONS: dict[str, Any] = {}


class Problem:
    """A planning problem over a scenario; nothing here mutates the scenario.

    Parameters
    ----------
    scenario
        The fleet, model graph, server, channel and training settings.
    cuts
        Candidate device-side sets: a CutTable or a list of node-name sets (default: the chain
        prefixes of the graph, plus the whole graph when ``modes`` is on).
    batch
        One batch size, or the allowed sizes (a range or a list); default the training batch.
    modes
        Allow FL mode (the whole model on the device) as a per-device choice.
    selection
        Allow leaving devices out of the round.
    recompute
        Let each device drop activations of its layers and recompute them in the backward pass
        (``p.recompute[k, node]``, :mod:`splitopt.model.recompute`): memory, round time and
        energy then include those choices. Chain graphs, one batch size, parallel rounds.
    relays
        Tiers between every device and the server (device -> edge -> ... -> server): several
        nested cuts per device (``p.relays``, :mod:`splitopt.model.relays`); needs
        ``server_share=False``.
    server_share
        Share the server's compute: a variable phi_k per device with sum phi <= 1. Default
        (None): as the scenario's ``server.serving`` says (shared: yes; otherwise no).
    dvfs
        DVFS frequency levels in (0, 1] (``p.level[k]``, :mod:`splitopt.model.dvfs`): each device
        also picks its compute clock; device compute seconds / l, compute energy x l^2.

    """

    def __init__(self, scenario: Scenario, *,
                 cuts: CutTable | Sequence[Iterable[str]] | None = None,
                 batch: int | Iterable[int] | None = None, modes: bool = False,
                 selection: bool = False, server_share: bool | None = None,
                 recompute: bool = False, relays: Sequence[Relay] | None = None,
                 dvfs: Sequence[float] | None = None):
        if not isinstance(scenario, Scenario):
            raise InputError("scenario", type(scenario).__name__, "a splitopt Scenario")
        for flag, value in (("modes", modes), ("selection", selection), ("recompute", recompute)):
            if not isinstance(value, bool):
                raise InputError(flag, value, "True or False")
        if server_share is not None and not isinstance(server_share, bool):
            raise InputError("server_share", server_share,
                             "True, False, or None (follow the scenario's server.serving)")
        self.scenario = scenario
        if server_share is None:
            server_share = getattr(scenario.server, "serving", "shared") == "shared"
        self.table = cut_table(scenario, cuts, modes)
        self.batches = batch_sizes(scenario, batch)
        self.levels = check_levels(dvfs, recompute or relays is not None)
        self.options: OptionTable = build_options(scenario, self.table, self.batches, selection,
                                                  self.levels)
        n, o = scenario.n_devices, self.options.n_options
        self.n_devices, self.n_options = n, o
        self.allowed = np.ones((n, o), dtype=bool)
        if not modes:
            self.allowed[:, self.options.is_fl] = False
        if not self.allowed.any(axis=1).all():
            raise InputError("cuts", "only the whole graph", "at least one split candidate",
                             "Pass modes=True to allow FL mode, or give split candidates.")
        # z[k, o] first, then the shares, then user variables: z and the shares all in [0, 1],
        # their bounds made at full size at once (appending copies both arrays)
        n_cols = n * o + n * (2 if server_share else 1)
        self.col_lb, self.col_ub = np.zeros(n_cols), np.ones(n_cols)
        self.n_cols = n * o
        self.bandwidth = ShareVar(self, BETA, self._share_cols(n), "bandwidth")
        self.server_share: ShareVar | None = (
            ShareVar(self, PHI, self._share_cols(n), "server_share") if server_share else None)
        self.cut, self.batch = CutVar(self), BatchVar(self)
        self.mode, self.selected = ModeVar(self), SelectVar(self)
        self.level = LevelVar(self)
        self.dvfs: Dvfs | None = Dvfs(self) if dvfs is not None else None
        self.extras: list[Var] = []
        self.constraints: list[Constraint] = []
        self.objective: Expr | None = None
        self.sense = "min"
        self.tied = False
        self._names: dict[str, int] | None = None  # name -> index, made on first lookup
        self._pricing: Scenario | None = None
        self.recompute: Recompute | None = Recompute(self) if recompute else None
        self.relays: Relays | None = None if relays is None else Relays(self, relays)

    # ------------------------------------------------------------------ extensions
    def annotate_plan(self, plan: Any, values: Mapping[str, Any],
                      options: np.ndarray | None = None) -> Any:
        """The plan with what the extensions decided in meta.

        Recomputed layers, relay nodes; with ``options`` (each device's option) the DVFS levels.
        """
        for ext in (self.recompute, self.relays):
            if ext is not None:
                plan = ext.annotate(plan, values)
        if self.dvfs is not None and options is not None:
            plan = self.dvfs.annotate(plan, np.asarray(options, dtype=np.int64))
        return plan

    def fill_from_plan(self, plan: Any, x: np.ndarray) -> list[tuple[str, bool, str]]:
        """Set the extensions' columns of ``x`` from the plan's own record (for the guard)."""
        return [c for ext in (self.recompute, self.relays) if ext is not None
                for c in ext.fill(plan, x)]

    # ------------------------------------------------------------------ pricing
    def pricing_scenario(self) -> Scenario:
        """The scenario as this Problem prices it (what its plans are re-priced under).

        With ``server_share=True`` the server's compute is divided in shares phi_k (``serving:
        shared``); without, every device is priced at the server's full speed (``dedicated``),
        whatever the scenario states.
        """
        serving = "shared" if self.server_share is not None else "dedicated"
        server = self.scenario.server
        if getattr(server, "serving", serving) == serving:
            return self.scenario
        if self._pricing is None:
            self._pricing = self.scenario.replace(
                server=server.model_copy(update={"serving": serving}))
        return self._pricing

    # ------------------------------------------------------------------ columns
    def _share_cols(self, size: int) -> int:
        """The next ``size`` columns of the shares (their bounds [0, 1] are made already)."""
        off = self.n_cols
        self.n_cols += size
        return off

    def _add_cols(self, size: int, lb: float, ub: float) -> int:
        off = self.n_cols
        self.col_lb = np.append(self.col_lb, np.full(size, lb))
        self.col_ub = np.append(self.col_ub, np.full(size, ub))
        self.n_cols += size
        return off

    @property
    def extra_offset(self) -> int:
        """First column after z and the shares (user variables start here)."""
        return self.n_devices * (self.n_options + (2 if self.server_share is not None else 1))

    def add_variable(self, name: str, size: int = 1, *, lb: float = 0.0, ub: float = math.inf,
                     integer: bool = False) -> Var:
        """Declare ``size`` extra variables (continuous or integer) in [lb, ub]."""
        if any(v.name == name for v in self.extras):
            raise InputError("variable name", name, "a name not used yet")
        if not (isinstance(size, int) and size >= 1) or lb > ub:
            raise InputError(f"variable {name!r}", (size, lb, ub), "size >= 1 and lb <= ub")
        var = Var(name, self._add_cols(size, lb, ub), size, integer)
        self.extras.append(var)
        return var

    def device_index(self, k: int | str) -> int:
        """Index of a device given by index or name."""
        if isinstance(k, str):
            if self._names is None:
                self._names = dict(zip(self.scenario.device_names(), range(self.n_devices)))
            if k not in self._names:
                raise InputError("device", k, f"one of {list(self._names)[:8]}")
            return self._names[k]
        if isinstance(k, (int, np.integer)) and 0 <= k < self.n_devices:
            return int(k)
        raise InputError("device", k, f"a name or an index in [0, {self.n_devices})")

    def device_name(self, k: int) -> str:
        """Name of device k."""
        return self.scenario.devices[k].name

    # ------------------------------------------------------------------ restrictions
    def pin(self, node: str, side: str, devices: Iterable[int | str] | None = None) -> None:
        """Keep ``node`` on the ``"device"`` or ``"server"`` side (removes candidate cuts)."""
        if side not in ("device", "server"):
            raise InputError("pin side", side, "'device' or 'server'")
        on_dev = self.table.masks[:, self.table.graph.mask([node]).argmax()]
        keep = np.append(on_dev == (side == "device"), False)[self.options.cut]
        keep |= self.options.is_off
        ks = range(self.n_devices) if devices is None else [self.device_index(k) for k in devices]
        for k in ks:  # check every device before changing any
            self.cut._check(k, keep, f"pin({node!r}, {side!r})")
        for k in ks:
            self.allowed[k] &= keep

    def on_device(self, k: int | str, node: int | str) -> Expr:
        """1 when ``node`` (a name or graph index) is on device k's side, else 0 (affine).

        ``sum_o z[k,o]`` over the options whose cut holds the node ("off" holds none).
        """
        g = self.table.graph
        if isinstance(node, (int, np.integer)) and not isinstance(node, bool) \
                and 0 <= node < len(g):
            idx = int(node)
        elif isinstance(node, str) and node in g.index:
            idx = g.index[node]
        else:
            raise InputError("node", node, f"a node name or index of {g.name or 'the graph'}")
        holds = np.flatnonzero(np.append(self.table.masks[:, idx], False)[self.options.cut])
        return Expr(self.device_index(k) * self.n_options + holds, np.ones(len(holds)))

    def tie_cuts(self) -> None:
        """One common cut for every device (selected or not)."""
        oc = self.options.cut
        for c in np.unique(oc[oc >= 0]):
            sel = (oc == c).astype(float)
            for k in range(1, self.n_devices):
                self.constraints.append(
                    (self.option_expr(k, sel) == self.option_expr(0, sel)).named(f"tie:{k}:{c}"))
        self.tied = True

    def product(self, binary: Expr, x: Expr, name: str = "") -> Expr:
        """Return binary * x as a new column w with McCormick rows (exact for a 0/1 binary).

        ``binary`` is a 0/1 affine expression of the one-hot options (``p.selected[k]``,
        ``p.mode[k]``, ``p.cut.is_(k, c)``); ``x`` is one variable column with finite bounds
        [L, U]. Rows: L b <= w <= U b and x - U (1 - b) <= w <= x - L (1 - b).
        """
        nz = self.n_devices * self.n_options
        if not binary.is_affine or (len(binary.lin_idx) and binary.lin_idx.max() >= nz):
            raise InputError("product binary", "an expression beyond the options",
                             "a 0/1 expression of the cut/mode/selection options")
        if not x.is_affine or len(x.lin_idx) != 1 or x.const != 0 or x.lin_coef[0] != 1:
            raise InputError("product x", "an expression",
                             "one variable, e.g. v[0] or p.bandwidth[k]")
        lo, hi = float(self.col_lb[x.lin_idx[0]]), float(self.col_ub[x.lin_idx[0]])
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError("product x bounds", (lo, hi), "finite bounds (McCormick needs them)")
        w = self.add_variable(name or f"prod{len(self.extras)}", lb=min(lo, 0.0),
                              ub=max(hi, 0.0)).expr
        tag = name or "product"
        self.add([w <= binary * hi, w >= binary * lo, w <= x - (1 - binary) * lo,
                  w >= x - (1 - binary) * hi], name=f"mccormick:{tag}")
        return w

    # ------------------------------------------------------------------ expressions
    def option_expr(self, k: int | str, lin: np.ndarray, beta: np.ndarray | None = None,
                    phi: np.ndarray | None = None) -> Expr:
        """sum_o z[k,o] * (lin[o] + beta[o] / beta_k + phi[o] / phi_k) for device k."""
        if phi is not None and self.server_share is None:
            lin, phi = np.asarray(lin, dtype=float) + phi, None  # the server is not shared: phi = 1
        return option_expr(self.device_index(k), self.n_options,
                           np.array(lin, dtype=float), beta, phi)

    def device_terms(self, lin: np.ndarray, beta: np.ndarray | None = None,
                     phi: np.ndarray | None = None) -> DeviceTerms:
        """``option_expr(k, lin[k], beta[k], phi[k])`` for every device k, held as arrays."""
        if phi is not None and self.server_share is None:
            lin, phi = lin + phi, None
        return DeviceTerms(self.n_options, np.asarray(lin, dtype=float), beta, phi)

    def _rows(self, name: str, k: int | str) -> np.ndarray:
        return getattr(self.options, name)[self.device_index(k)]

    def round_time(self, k: int | str) -> Expr:
        """T_k = I * T_iter + T_agg of device k (seconds)."""
        o = self.options
        i = self.device_index(k)
        return self.option_expr(i, o.a_dev[i], o.d[i], o.a_srv[i]) + self._recompute_s(i)

    def _recompute_s(self, i: int, per: float = 1.0) -> Expr | float:
        """Device i's extra seconds of recomputation and relays (0 without either)."""
        extra: Expr | float = 0.0
        for ext in (self.recompute, self.relays):
            if ext is not None:
                extra = extra + ext.seconds(i) / per
        return extra

    def iteration_time(self, k: int | str) -> Expr:
        """T_iter of one local iteration of device k (seconds)."""
        o, i = self.options, self.device_index(k)
        it = float(self.scenario.training.local_iters)
        return (self.option_expr(i, o.a_dev[i] / it, (o.up[i] + o.dn[i]) / it, o.a_srv[i] / it)
                + self._recompute_s(i, it))

    def phase(self, k: int | str, name: str) -> Expr:
        """One phase of device k's round.

        ``name``: device_compute, server_compute, uplink, downlink or aggregation.
        """
        i, o = self.device_index(k), self.options
        zero = np.zeros(self.n_options)
        table = {"device_compute": (o.a_dev[i], None, None),
                 "server_compute": (zero, None, o.a_srv[i]),
                 "uplink": (zero, o.up[i], None), "downlink": (zero, o.dn[i], None),
                 "aggregation": (zero, o.agg[i], None)}
        if name not in table:
            raise InputError("phase", name, f"one of {sorted(table)}")
        extra: Expr | float = 0.0
        if name == "device_compute" and self.recompute is not None:
            extra = self.recompute.seconds(i)
        if name == "server_compute" and self.relays is not None:
            extra = -self.relays.server_saved_s(i)
        return self.option_expr(i, *table[name]) + extra

    def memory(self, k: int | str) -> Expr:
        """Device k's training memory (bytes); its peak with recomputation (``recompute=True``)."""
        if self.recompute is not None:
            return self.recompute.memory(k)
        return self.option_expr(k, self._rows("mem", k))

    def energy(self, k: int | str) -> Expr:
        """Device k's energy per round (J): compute (recomputation included) plus transmission."""
        extra = 0.0 if self.recompute is None else self.recompute.energy(k)
        return self.option_expr(k, self._rows("e_comp", k), self._rows("e_tx", k)) + extra

    def comm_bytes(self, k: int | str) -> Expr:
        """Bytes device k sends and receives per round."""
        return self.option_expr(k, self._rows("comm", k))

    def total_energy(self) -> Expr:
        """Energy of the whole fleet per round (J)."""
        return total(self.energy(k) for k in range(self.n_devices))

    def round_latency(self) -> Expr:
        """The round latency of the fleet.

        max_k T_k (parallel), or max(slowest FL device, sum of split devices) (sequential).
        """
        n = self.n_devices
        if self.scenario.training.schedule == "parallel":
            if n == 1:
                return self.round_time(0)
            if self.recompute is not None or self.relays is not None:  # T_k has own columns
                return maximum([self.round_time(k) for k in range(n)])
            o = self.options  # one array per coefficient, not one expression per device
            return Expr(maxes=((1.0, self.device_terms(o.a_dev, o.d, o.a_srv)),))
        fl = self.options.is_fl
        o = self.options
        parts = [self.option_expr(k, o.a_dev[k] * fl, o.d[k] * fl, o.a_srv[k] * fl)
                 for k in range(n) if np.any(self.allowed[k] & fl)]
        sl = total(self.option_expr(k, o.a_dev[k] * ~fl, o.d[k] * ~fl, o.a_srv[k] * ~fl)
                   for k in range(n))
        return maximum([*parts, sl])

    # ------------------------------------------------------------------ constraints, objective
    def add(self, constraint: Constraint | Iterable[Constraint], name: str = "") -> None:
        """Add a constraint (or several); non-convex ones are refused with the reason."""
        if isinstance(constraint, Constraint):
            items = [constraint]
        elif isinstance(constraint, Iterable) and not isinstance(constraint, (str, bytes)):
            items = list(constraint)
        else:
            raise InputError("constraint", type(constraint).__name__,
                             "a relation like expr <= value (or a list of them)")
        if not isinstance(name, str):
            raise InputError("constraint name", name, "a string")
        for i, c in enumerate(items):
            if not isinstance(c, Constraint):
                raise InputError("constraint", type(c).__name__, "a relation like expr <= value")
            c = c.named(name if len(items) == 1 else f"{name}[{i}]") if name else c
            c.check_convex()
            self.constraints.append(c)

    def minimize(self, expr: Expr | float) -> None:
        """Set the objective to minimise a convex expression."""
        e = Expr.of(expr)
        if not e.is_convex:
            raise InputError("objective", "a non-convex expression",
                             "a convex expression to minimise")
        self.objective, self.sense = e, "min"

    def maximize(self, expr: Expr | float) -> None:
        """Set the objective to maximise an affine expression."""
        e = Expr.of(expr)
        if not e.is_affine:
            raise InputError("objective", "a non-affine expression",
                             "an affine expression to maximise",
                             "Minimise delays and energies; maximise only affine expressions.")
        self.objective, self.sense = -e, "max"

    def solve(self, **kwargs: Any) -> Any:
        """Solve (see :func:`splitopt.solving.solve` for the options); returns a Result."""
        return ACTIONS["solve"](self, **kwargs)

    def compile(self, **kwargs: Any) -> Any:
        """The generic Program (see :func:`splitopt.compile.compile_problem`) without solving."""
        return ACTIONS["compile"](self, **kwargs)
