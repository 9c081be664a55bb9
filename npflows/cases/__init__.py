"""Gradient-audit cases for every npflows module (feeds `npflows gradcheck` and the tests).

Importing this package registers the cases in npflows.gradcheck.CASES. Each file builds
float64 modules with random small shapes drawn from the Generator it is given.
"""

# -- families added below, one import line each --
from . import (
    basic,  # noqa: F401
    lstm,  # noqa: F401
    transformer,  # noqa: F401
)
