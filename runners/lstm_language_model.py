"""The autoregressive LSTM language model of `npflows train charlm --model lstm` (paper
sections 4.4-4.5's baseline): embedding, LSTM, softmax; start symbol K. Sampling and the entropy
coder (runners/compress.py) walk it one LSTM step per position."""

import numpy

from npflows import backend, nn
from npflows.module import Module

STOP_CHECK_EVERY = 16  # LSTM sampling: steps between host checks for "every row has stopped"


class LSTMLanguageModel(Module):
    """p(y) = prod_t softmax(Dense(LSTM(Embedding([START] + y_<t))))[y_t]; ids (B, T) in [0, K).

    Embedding row K is the start symbol. `nll(ids, weights)` -> (B,) nats summed over positions
    with weight 1 (PAD after EOS has weight 0: the model stops at EOS), with `backward` after it.
    """

    def __init__(self, K, embedding, hidden, num_layers, rng=None):
        self.K = K
        self.embedding = nn.Embedding(K + 1, embedding, rng=rng)
        self.lstm = nn.LSTM(embedding, hidden, num_layers, rng=rng)
        self.output = nn.Dense(hidden, K, rng=rng)
        self.loss = nn.SoftmaxCrossEntropy(reduction="none")

    def _inputs(self, ids):
        xp = backend.array_module(ids)
        start = xp.full((ids.shape[0], 1), self.K, dtype=ids.dtype)
        return xp.concatenate([start, ids[:, :-1]], axis=1)

    def nll(self, ids, weights):
        hidden, _ = self.lstm.forward(self.embedding.forward(self._inputs(ids)))
        return self.loss.forward(self.output.forward(hidden), ids, mask=weights).sum(axis=1)

    def backward(self, grad_nll):
        # docs/gradients.md#cross-entropy, #dense, #lstm, #embedding: the chain rule
        grad_logits, _ = self.loss.backward(grad_nll[:, None])
        self.embedding.backward(self.lstm.backward(self.output.backward(grad_logits)))

    def sample(self, n, length, rng, carry_state=True, stop_id=None):
        """(n, length) ids, one LSTM step per position with the state carried (carry_state=True),
        or the whole prefix re-run at every position (the quadratic baseline). stop_id: stop once
        every row has produced it."""
        xp = backend.array_module(self.output.weight.data)
        rng = numpy.random.default_rng(rng)
        # all uniforms in one upload (the same values, in the same order, as one draw per step)
        all_uniforms = xp.asarray(rng.random((length, n, 1)), dtype=self.output.weight.data.dtype)

        def draw(position, probs):
            return xp.minimum(
                (all_uniforms[position] >= xp.cumsum(probs, axis=-1)).sum(axis=-1), self.K - 1
            )

        if carry_state:
            return self.sequential(n, length, draw, stop_id)
        ids = xp.full((n, length), 0, dtype=xp.int64)
        for t in range(length):
            prefix = xp.concatenate([xp.full((n, 1), self.K, xp.int64), ids[:, :t]], axis=1)
            top = self.lstm.forward(self.embedding.weight.data[prefix])[0][:, -1]
            ids[:, t] = draw(t, nn.softmax(top @ self.output.weight.data + self.output.bias.data))
            if _every_row_stopped(ids, t, stop_id):
                break
        return ids

    def sequential(self, n, length, choose, stop_id=None):
        """(n, length) int64 ids, one LSTM step per position (state carried): `choose(t, probs)`
        -> (n,) ids of position t given probs (n, K). Sampling and the entropy coder
        (runners/compress.py) walk here alike, so encoder and decoder see the same probabilities.
        stop_id: stop once every row has produced it (checked every STOP_CHECK_EVERY steps: what
        follows a row's stop symbol is not part of it)."""
        xp = backend.array_module(self.output.weight.data)
        ids = xp.full((n, length), 0, dtype=xp.int64)
        previous, state = xp.full((n,), self.K, dtype=xp.int64), None
        for t in range(length):
            top, state = self.lstm.step(self.embedding.weight.data[previous], state)
            previous = ids[:, t] = choose(
                t, nn.softmax(top @ self.output.weight.data + self.output.bias.data)
            )
            if _every_row_stopped(ids, t, stop_id):
                break
        return ids


def _every_row_stopped(ids, t, stop_id):
    """True once every row of ids[:, :t + 1] holds stop_id; asked of the device (a host
    synchronisation) only every STOP_CHECK_EVERY steps, never when stop_id is None."""
    if stop_id is None or (t + 1) % STOP_CHECK_EVERY:
        return False
    return bool(backend.to_host_scalar((ids[:, : t + 1] == stop_id).any(axis=1).all()))
