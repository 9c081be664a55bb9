"""npflows: an autodiff-free NumPy/CuPy engine whose every backward pass is written by hand."""

from . import backend, init, optim
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "backend", "init", "optim", "nn"]
__version__ = "0.1.0"

from . import nn  # noqa: E402  (nn imports Module from this package)
