"""Embedding lookup for integer ids."""

from .. import backend, init
from ..module import Module
from .checks import expect_ids


class Embedding(Module):
    """y[..., :] = W[ids[...], :].   ids: (...) integers in [0, num_embeddings) -> y: (..., dim)."""

    def __init__(self, num_embeddings, dim, rng=None, dtype=None):
        self.num_embeddings, self.dim = num_embeddings, dim
        self.weight = init.normal(rng, (num_embeddings, dim), 1.0 / dim**0.5, dtype)

    def forward(self, ids):
        expect_ids(self, ids, self.num_embeddings, like=self.weight.data)
        self._saved = ids
        return self.weight.data[ids]

    def backward(self, grad_y):
        # docs/gradients.md#embedding, eq. (E1): rows of repeated ids are summed
        ids = self._take_saved()
        backend.scatter_add(self.weight.grad, ids.reshape(-1), grad_y.reshape(-1, self.dim))
        return None
