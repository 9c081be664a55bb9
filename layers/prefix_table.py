"""PrefixTable: a causal network that is a lookup table, one trainable row per input prefix seen.

The Potts flow of the paper (sec. 4.3): "an embedding layer which returns a trainable location
parameter for every unique combination of inputs". As a causal network for
DiscreteAutoregressiveFlow (which feeds it y shifted right), the output at position d is the row
of the combination of the inputs at positions <= d, i.e. of y_{<d}: one table per position,
keyed by prefix. The keys are built once, on the host, from the inputs the network will see in
training; a prefix seen fewer than `min_count` times (or never) maps to a default row of its
position, shared by all such prefixes.
"""

import numpy

from npflows import backend, init
from npflows.module import Module
from npflows.nn.checks import expect_float

INT64_MAX = numpy.iinfo(numpy.int64).max


class PrefixTable(Module):
    """(B, D, K) one-hot inputs -> (B, D, out_features) rows; output at d depends on inputs <= d.

    An input position is a one-hot K-vector or all zeros (a start symbol, as shift_right makes);
    it is read as the symbol v = 1 + k, or 0 for all zeros. The prefix at d is the base-(K + 1)
    number code_d = sum_{j <= d} v_j (K + 1)^(d - j), made unique across positions by adding
    offset_d = sum_{j < d} (K + 1)^(j + 1) (codes at d lie in [0, (K + 1)^(d + 1))). This is an
    exact (collision-free) hash, so it needs sum_{j <= D} (K + 1)^j < 2^63.

    examples: host (N, D, K) one-hot inputs (as the network will see them: for a flow,
        shift_right(one_hot(y))); keys seen >= min_count times get their own row.
    table: Parameter (num_keys + D, out_features); rows [num_keys, num_keys + D) are the
        per-position defaults. Zeros by default (init_std=0): every location logit ties, the
        argmax picks 0 and the flow starts as the identity.
    The lookup is piecewise constant in the inputs: their gradient is 0 (backward returns zeros).
    Incremental protocol: start_incremental(B), then step(x_t): (B, K) -> (B, out_features).
    """

    causal = True

    def __init__(self, examples, out_features, min_count=1, rng=None, dtype=None, init_std=0.0):
        examples = numpy.asarray(examples)
        if examples.ndim != 3 or not numpy.issubdtype(examples.dtype, numpy.floating):
            raise ValueError(
                f"PrefixTable: expected (N, D, K) float one-hot examples, got shape {examples.shape}, "
                f"dtype {examples.dtype}"
            )
        if not isinstance(min_count, (int, numpy.integer)) or min_count < 1:
            raise ValueError(f"PrefixTable: expected an integer min_count >= 1, got {min_count!r}")
        _, self.length, self.K = examples.shape
        self.out_features, self.min_count = int(out_features), int(min_count)
        radix = self.K + 1
        if sum(radix**j for j in range(1, self.length + 1)) > INT64_MAX:
            raise ValueError(
                f"PrefixTable: expected prefix codes to fit in int64, i.e. sum_(j <= D) (K + 1)^j "
                f"< 2^63, got K = {self.K}, D = {self.length}"
            )
        # place_values[j, d] = radix^(d - j) for j <= d, else 0; offsets[d] = sum_{j < d} radix^(j + 1)
        powers = numpy.arange(self.length)[None, :] - numpy.arange(self.length)[:, None]
        self.place_values = numpy.where(powers >= 0, radix ** numpy.maximum(powers, 0), 0).astype(
            numpy.int64
        )
        self.offsets = numpy.concatenate(
            [[0], numpy.cumsum(radix ** numpy.arange(1, self.length))]
        ).astype(numpy.int64)
        self._device_cache, self._state = {}, None
        keys, counts = numpy.unique(self._keys(examples), return_counts=True)
        self.keys = keys[counts >= self.min_count]  # sorted, host
        self.num_keys = len(self.keys)
        shape = (self.num_keys + self.length, self.out_features)
        self.table = (
            init.normal(rng, shape, init_std, dtype)
            if init_std
            else init.constant(shape, 0.0, dtype)
        )

    def _device(self, xp, name):
        """The host array self.<name> (keys, place_values, offsets) on the device of xp, cached."""
        if (xp.__name__, name) not in self._device_cache:
            self._device_cache[xp.__name__, name] = xp.asarray(getattr(self, name))
        return self._device_cache[xp.__name__, name]

    def _symbols(self, x):
        """(..., K) one-hot or zeros -> (...) int64 symbols 1 + k, or 0 for all zeros (rounded:
        perturbations off the one-hot set, as in the audit, leave them unchanged)."""
        xp = backend.array_module(x)
        return xp.rint(x @ xp.arange(1, self.K + 1, dtype=x.dtype)).astype(xp.int64)

    def _keys(self, x):
        """(B, D, K) -> (B, D) int64 keys: code_d + offset_d."""
        xp = backend.array_module(x)
        symbols = self._symbols(x)
        return (symbols[:, :, None] * self._device(xp, "place_values")[None]).sum(
            axis=1
        ) + self._device(xp, "offsets")

    def _rows(self, keys, positions):
        """keys: (...) int64, positions: (...) their positions -> (...) table rows."""
        xp = backend.array_module(keys)
        table_keys = self._device(xp, "keys")
        if self.num_keys == 0:  # every prefix was rare: the default rows only
            return xp.broadcast_to(positions, keys.shape).copy()
        slots = xp.minimum(xp.searchsorted(table_keys, keys), self.num_keys - 1)
        return xp.where(table_keys[slots] == keys, slots, self.num_keys + positions)

    def _check(self, x):
        expect_float(self, x, like=self.table.data)
        if x.ndim != 3 or x.shape[1:] != (self.length, self.K):
            raise ValueError(
                f"PrefixTable: expected input of shape (batch, {self.length}, {self.K}), got {tuple(x.shape)}"
            )

    def forward(self, x):
        self._check(x)
        xp = backend.array_module(x)
        rows = self._rows(self._keys(x), xp.arange(self.length)[None, :])
        self._saved = (rows, x.shape)
        return self.table.data[rows]

    def backward(self, grad_rows):
        # docs/gradients.md#prefix-table, eqs. (PT1)-(PT2)
        rows, shape = self._take_saved()
        xp = backend.array_module(grad_rows)
        backend.scatter_add(
            self.table.grad, rows.reshape(-1), grad_rows.reshape(-1, self.out_features)
        )
        return xp.zeros(shape, dtype=grad_rows.dtype)

    def seen_fraction(self, x):
        """Fraction of (example, position) prefixes of x (B, D, K) that have their own row."""
        rows = self._rows(self._keys(x), backend.array_module(x).arange(self.length)[None, :])
        return float(backend.to_numpy((rows < self.num_keys).mean()))

    # -- incremental (sampling): the same keys, one position at a time -------------------------
    def start_incremental(self, batch_size):
        xp = backend.array_module(self.table.data)
        self._state = (xp.zeros(batch_size, dtype=xp.int64), 0)

    def step(self, x_t):
        """x_t: (B, K) input at the next position -> (B, out_features) rows."""
        codes, position = self._state
        if position >= self.length:
            raise ValueError(
                f"PrefixTable: step called more than D = {self.length} times after start_incremental"
            )
        xp = backend.array_module(x_t)
        codes = codes * (self.K + 1) + self._symbols(x_t)
        self._state = (codes, position + 1)
        rows = self._rows(
            codes + self._device(xp, "offsets")[position],
            xp.full(codes.shape, position, dtype=xp.int64),
        )
        return self.table.data[rows]
