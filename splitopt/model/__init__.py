"""The declarative problem builder: variables, expressions, constraints and objectives."""

from splitopt.model.expr import Constraint, Expr, maximum, total
from splitopt.model.problem import Problem

__all__ = ["Constraint", "Expr", "Problem", "maximum", "total"]
