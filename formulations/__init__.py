"""Published split-learning formulations, one module per paper, built on the public builder API."""

# Importing a formulation registers its problems for ``splitopt solve --problem NAME``.
from splitopt.formulations import edgesplit, hsfl, sfl  # noqa: E402,F401
