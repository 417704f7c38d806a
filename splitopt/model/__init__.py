"""The declarative problem builder: variables, expressions, constraints and objectives."""

from splitopt.model.assign import SegmentAssignment
from splitopt.model.delay import DelayToTarget, minimize_delay_to_target, mode_batch_penalty
from splitopt.model.expr import Constraint, Expr, maximum, total
from splitopt.model.problem import Problem
from splitopt.model.relays import Relay

__all__ = ["Constraint", "DelayToTarget", "Expr", "Problem", "Relay", "SegmentAssignment",
           "maximum", "minimize_delay_to_target", "mode_batch_penalty", "total"]
