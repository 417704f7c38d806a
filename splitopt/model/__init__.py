"""The declarative problem builder: variables, expressions, constraints and objectives."""

from splitopt.model.expr import Constraint, Expr, maximum, total
from splitopt.model.problem import Problem
from splitopt.model.relays import Relay

__all__ = ["Constraint", "Expr", "Problem", "Relay", "maximum", "total"]
