"""Published split-learning formulations, one module per paper, under one contract.

Importing this package registers all seven (:mod:`splitopt.formulations.registry`) as
:class:`splitopt.formulation.Formulation` objects, so ``splitopt solve --problem NAME`` runs each.
"""

from splitopt.formulations import edgesplit, hsfl, sfl  # noqa: F401
from splitopt.formulations.registry import register_all

register_all()
