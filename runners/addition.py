"""Addition (paper section 4.2, after Zaremba and Sutskever 2014): data and exact metrics.

Two D-digit numbers a and b (each digit in 0..9, K = 10) and their sum s = (a + b) mod 10^D as
D digits (the (D+1)-th digit, the final carry, is dropped). Digits are stored most significant
first, the natural human order: carries then flow right to left, against the left-to-right
order of an autoregressive base, which is the point of the experiment.
Operands are uniform over all 10^D digit strings (leading zeros allowed).
"""

from dataclasses import dataclass

import numpy

import layers
from layers.conditioning import Conditioned
from npflows import backend, init, nn
from npflows.init import as_generator
from npflows.module import Module
from npflows.nn.checks import check_id_range

from .argtypes import positive_int
from .options import OptionsExperiment, option

NUM_CLASSES = 10  # K: decimal digits

# Section 4.2's reported test NLLs in nats, as printed ("bipartite" maps number of flows -> NLL),
# and the LSTM width used at each D.
ADDITION_NLL = {
    10: {
        "autoregressive_base": 4.0,
        "autoregressive_flow": 0.2,
        "bipartite": {1: 4.0, 2: 3.17, 4: 2.58},
    },
    20: {
        "autoregressive_base": 12.2,
        "autoregressive_flow": 4.8,
        "bipartite": {1: 12.2, 2: 8.8, 4: 7.6, 8: 5.08},
    },
}
LSTM_HIDDEN_UNITS = {10: 256, 20: 512}


def _check_digits(digits, name, caller):
    digits = numpy.asarray(digits)
    if digits.ndim != 2 or not numpy.issubdtype(digits.dtype, numpy.integer):
        raise ValueError(
            f"addition.{caller}: expected {name} as (n, D) integer digits, "
            f"got shape {digits.shape}, dtype {digits.dtype}"
        )
    check_id_range(f"addition.{caller}", digits, NUM_CLASSES, noun=f"{name} digits")
    return digits


def add_digits(a, b):
    """(n, D), (n, D) int digits, most significant first -> (n, D) int64 digits of (a + b) mod 10^D.

    Schoolbook addition, vectorised over the batch: a loop over the D digit positions (right to
    left) carries, so D = 20 works although 10^20 overflows int64.
    """
    a = _check_digits(a, "a", "add_digits")
    b = _check_digits(b, "b", "add_digits")
    if a.shape != b.shape:
        raise ValueError(
            f"addition.add_digits: expected a and b of the same shape, got {a.shape} and {b.shape}"
        )
    total = numpy.empty(a.shape, dtype=numpy.int64)
    carry = numpy.zeros(a.shape[0], dtype=numpy.int64)
    for position in range(a.shape[1] - 1, -1, -1):
        column = a[:, position].astype(numpy.int64) + b[:, position] + carry
        total[:, position] = column % NUM_CLASSES
        carry = column // NUM_CLASSES
    return total  # the last carry is the dropped (D+1)-th digit


def sample(n, D, rng):
    """n problems -> (a, b, s), each (n, D) int64 digits, most significant first, s = (a + b) mod 10^D."""
    for name, value, low in (("n", n, 0), ("D", D, 1)):
        if not isinstance(value, (int, numpy.integer)) or value < low:
            raise ValueError(f"addition.sample: expected an integer {name} >= {low}, got {value!r}")
    rng = as_generator(rng)
    a = rng.integers(0, NUM_CLASSES, size=(n, D), dtype=numpy.int64)
    b = rng.integers(0, NUM_CLASSES, size=(n, D), dtype=numpy.int64)
    return a, b, add_digits(a, b)


def exact_match_rate(predicted, target):
    """Fraction of rows whose D digits all equal the target's (the task is deterministic, so the
    true conditional NLL is 0 nats and a perfect model scores 1.0)."""
    predicted = _check_digits(predicted, "predicted", "exact_match_rate")
    target = _check_digits(target, "target", "exact_match_rate")
    if predicted.shape != target.shape or target.shape[0] == 0:
        raise ValueError(
            f"addition.exact_match_rate: expected equal non-empty shapes, "
            f"got {predicted.shape} and {target.shape}"
        )
    return float((predicted == target).all(axis=1).mean())


def digit_accuracy(predicted, target):
    """Fraction of single digits equal to the target's."""
    predicted = _check_digits(predicted, "predicted", "digit_accuracy")
    target = _check_digits(target, "target", "digit_accuracy")
    if predicted.shape != target.shape or target.size == 0:
        raise ValueError(
            f"addition.digit_accuracy: expected equal non-empty shapes, "
            f"got {predicted.shape} and {target.shape}"
        )
    return float((predicted == target).mean())


# -- the model: encoders -> context, flows over the sum, autoregressive LSTM base ------------------
def _one_hot(ids, dtype):
    return layers.one_hot(ids, NUM_CLASSES, dtype)


class AdditionModel(Module):
    """log p(s | a, b) = log p_base(f^-1(s; a, b) | context(a, b)) (paper sec. 4.2).

    a, b: (B, D) int digits; s: (B, D) ids or (B, D, K) one-hot. Two LSTM encoders (hidden // 2
    units each) read a and b; the base is layers.AutoregressiveCategorical over an LSTM of
    `hidden` units whose initial state (h0, c0) is the concatenation of the encoders' final
    states. variant: "ar-base" (no flow); "ar-flow": one autoregressive flow running right to
    left (Reverse, flow, Reverse), whose LSTM reads at each digit the previous output digit and
    the two input digits there, so it can carry as schoolbook addition does; "bipartite-N": N
    bipartite flows, masks even/odd alternating, MLPs reading the kept digits and both inputs.
    identity_init: zero the flows' output layers, so the model starts as its base (it also
    starts the flow networks' hidden layers with no gradient, which here slows the AR flow).
    backward reaches the encoders through the context's gradient.
    """

    def __init__(
        self,
        digits,
        hidden,
        variant,
        flow_hidden=None,
        temperature=0.1,
        identity_init=False,
        rng=None,
        dtype=None,
    ):
        rng, K = init.as_generator(rng), NUM_CLASSES
        self.digits, self.hidden, self.variant = digits, hidden, variant
        flow_hidden = flow_hidden or hidden
        self.encoder_a = nn.LSTM(K, hidden // 2, rng=rng, dtype=dtype)
        self.encoder_b = nn.LSTM(K, hidden - hidden // 2, rng=rng, dtype=dtype)
        base = layers.AutoregressiveCategorical(
            layers.LSTMNetwork(K, hidden, K, rng=rng, dtype=dtype), K, length=digits
        )
        flows, self._conditioned = [], []  # (network, reads right to left): condition each batch
        if variant == "ar-flow":
            network = Conditioned(
                layers.LSTMNetwork(3 * K, flow_hidden, K, rng=rng, dtype=dtype), K, 2 * K
            )
            flows = [
                layers.Reverse(),
                layers.DiscreteAutoregressiveFlow(network, K, temperature=temperature),
                layers.Reverse(),
            ]
            self._conditioned.append((network, True))
        elif variant.startswith("bipartite-"):
            for index in range(parse_variant(variant)):
                network = Conditioned(
                    layers.MLP(digits, 3 * K, flow_hidden, K, rng=rng, dtype=dtype), K, 2 * K
                )
                mask = "even" if index % 2 == 0 else "odd"
                flows.append(
                    layers.DiscreteBipartiteFlow(network, K, mask=mask, temperature=temperature)
                )
                self._conditioned.append((network, False))
        if identity_init:  # zero output layers: all location logits tie, argmax 0, each flow starts as the identity
            for network, _ in self._conditioned:
                layers.zero_output_layers(network)
        self.flow_model = layers.FlowModel(flows, base)

    def _encode(self, a, b):
        """Run the encoders, set the flows' conditions; -> the base's context (h0, c0)."""
        xp, dtype = backend.array_module(a), self.encoder_a.dtype
        a_one_hot, b_one_hot = _one_hot(a, dtype), _one_hot(b, dtype)
        # least significant digit first, so the encodings end on the digits the base needs first
        # (the reversed source of Sutskever et al., 2014)
        _, (h_a, c_a) = self.encoder_a.forward(xp.ascontiguousarray(a_one_hot[:, ::-1]))
        _, (h_b, c_b) = self.encoder_b.forward(xp.ascontiguousarray(b_one_hot[:, ::-1]))
        inputs = xp.concatenate([a_one_hot, b_one_hot], axis=-1)  # (B, D, 2K)
        for network, right_to_left in self._conditioned:
            network.set_condition(inputs[:, ::-1] if right_to_left else inputs)
        return xp.concatenate([h_a, h_b], axis=-1), xp.concatenate([c_a, c_b], axis=-1)

    def log_prob(self, a, b, s):
        """-> (B,) log p(s | a, b) in nats."""
        return self.flow_model.log_prob(s, self._encode(a, b))

    def backward(self, grad_log_prob):
        # the chain rule: docs/gradients.md#flow-model, then #lstm through the context's halves
        _, (grad_h0, grad_c0) = self.flow_model.backward(grad_log_prob)
        half = self.encoder_a.hidden_size
        self.encoder_a.backward(None, (grad_h0[..., :half], grad_c0[..., :half]))
        self.encoder_b.backward(None, (grad_h0[..., half:], grad_c0[..., half:]))

    def greedy(self, a, b):
        """(B, D) digits: the base's greedy (per-digit argmax) decoding pushed through the flows,
        the mode of p(s | a, b) up to the greediness (a flow is a bijection)."""
        context = self._encode(a, b)
        xp, dtype, network = (
            backend.array_module(a),
            self.encoder_a.dtype,
            self.flow_model.base.network,
        )
        network.start_incremental(a.shape[0], context)
        ids = xp.zeros(a.shape, dtype=xp.int64)
        previous = xp.zeros((a.shape[0], NUM_CLASSES), dtype=dtype)
        for position in range(self.digits):
            ids[:, position] = network.step(previous).argmax(axis=-1)
            previous = _one_hot(ids[:, position], dtype)
        return self.flow_model.forward(ids)


def parse_variant(variant):
    """'ar-base' / 'ar-flow' -> 0 / 1 flows, 'bipartite-N' -> N; ValueError otherwise."""
    if variant in ("ar-base", "ar-flow"):
        return int(variant == "ar-flow")
    prefix, _, count = variant.partition("bipartite-")
    if prefix or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"addition: expected --model ar-base, ar-flow or bipartite-N (N >= 1), got {variant!r}"
        )
    return int(count)


@dataclass(frozen=True)
class AdditionOptions:
    """`npflows train addition` options (paper section 4.2)."""

    digits: int = option(10, "D, digits per number", type=positive_int)
    model: str = option("ar-flow", "ar-base, ar-flow or bipartite-N")
    hidden: int | None = option(
        None,
        "base LSTM units (default: the paper's, 256 for D=10, 512 for D=20)",
        type=positive_int,
    )
    flow_hidden: int | None = option(
        None, "flow network units (default: --hidden)", type=positive_int
    )
    temperature: float = option(0.1, "straight-through softmax temperature", type=float)
    flow_init: str = option(
        "random",
        "identity: zero output layers, so every flow starts as the identity map (here it slows the "
        "AR flow: docs/results.md, Addition)",
        choices=("identity", "random"),
    )
    train_examples: int = option(100_000, "training pairs (a fixed set)", type=positive_int)
    eval_examples: int = option(2000, "held-out pairs", type=positive_int)
    data_seed: int = option(1, "seed of the data (the training seed is --seed)", type=int)
    lr: float = option(
        3e-3,
        "Adam learning rate (1e-3 leaves the base on its uniform plateau much longer)",
        type=float,
    )
    max_grad_norm: float = option(
        5.0, "global gradient-norm clip (> 0: 0 is refused, as for every experiment)", type=float
    )


class AdditionExperiment(OptionsExperiment):
    """`npflows train addition`: NLL in nats of the D-digit sum given the two numbers."""

    Options = AdditionOptions

    def __init__(self, config):
        super().__init__(config)
        options = self.options
        self.digits = int(options.digits)
        parse_variant(options.model)
        rng = numpy.random.default_rng(numpy.random.SeedSequence(options.data_seed))
        self.train_data = sample(int(options.train_examples), self.digits, rng)
        self.eval_data = sample(int(options.eval_examples), self.digits, rng)

    def build_model(self, rng):
        options = self.options
        hidden = options.hidden or LSTM_HIDDEN_UNITS.get(self.digits, 256)
        return AdditionModel(
            self.digits,
            hidden,
            options.model,
            options.flow_hidden,
            options.temperature,
            options.flow_init == "identity",
            rng=rng,
            dtype=backend.default_dtype(),
        )

    @property
    def train_examples(self):
        return self.train_data

    def loss_and_backward(self, model, batch, rng):
        a, b, s = batch
        log_probs = model.log_prob(a, b, _one_hot(s, backend.default_dtype()))
        model.backward(
            backend.array_module(log_probs).full(
                len(log_probs), -1.0 / len(log_probs), log_probs.dtype
            )
        )
        return -log_probs.mean()

    def _chunks(self, data, chunk=1000):
        for start in range(0, len(data[0]), chunk):
            yield tuple(backend.asarray(part[start : start + chunk]) for part in data)

    def _nll(self, model, data):
        return float(
            numpy.concatenate(
                [backend.to_numpy(-model.log_prob(a, b, s)) for a, b, s in self._chunks(data)]
            ).mean()
        )

    def evaluate(self, model):
        predicted = numpy.concatenate(
            [backend.to_numpy(model.greedy(a, b)) for a, b, _ in self._chunks(self.eval_data)]
        )
        seen = tuple(part[: len(self.eval_data[0])] for part in self.train_data)
        return {
            "nll": self._nll(model, self.eval_data),
            "train_nll": self._nll(model, seen),
            "exact_match": exact_match_rate(predicted, self.eval_data[2]),
            "digit_accuracy": digit_accuracy(predicted, self.eval_data[2]),
        }

    def sample(self, model, num_samples, rng):
        """Greedy answers to fresh problems, one line each: a + b = answer (true sum)."""
        a, b, s = sample(num_samples, self.digits, rng)
        answers = backend.to_numpy(model.greedy(backend.asarray(a), backend.asarray(b)))
        text = lambda digits: "".join(map(str, digits))  # noqa: E731
        return "\n".join(
            f"{text(x)} + {text(y)} = {text(z)} ({'ok' if (z == t).all() else 'true ' + text(t)})"
            for x, y, z, t in zip(a, b, answers, s)
        )
