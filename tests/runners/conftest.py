"""Fixtures shared by the runner tests."""

import pytest

from npflows import backend, train


@pytest.fixture
def float64():
    """float64 parameters for one test (exact sums and tables), then the previous default back."""
    previous = backend.default_dtype()
    train.setup_device("cpu", "float64")
    yield
    backend.set_default_dtype(previous)
