"""Lossless compression (runners/compress.py): byte-exact round trips for every model kind over
random small models and data (hypothesis), the model's own code length beside the file's, and
the refusals: another checkpoint, a truncated or damaged file, a decoder whose probabilities are
not the encoder's, input the layout cannot hold."""

import functools
import re
from types import SimpleNamespace

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from runners import compress
from runners.chardata import EOS, PAD, CharDataset
from runners.compress_layouts import CompressionError, Sequences, TextChunks, TextRows
from runners.fullrank_experiment import FullRank
from runners.lstm_language_model import LSTMLanguageModel
from runners.potts import PottsExperiment

HIDDEN = 6


def _model(kind, K, D, rng):
    """A random small model of one kind, its networks random (flows far from the identity)."""
    if kind == "factorized":
        return layers.FlowModel([], layers.FactorizedCategorical(D, K, rng, init_std=1.0))
    if kind == "bipartite":
        flows = [
            layers.DiscreteBipartiteFlow(layers.MLP(D, K, HIDDEN, K, rng=rng), K, mask)
            for mask in ("even", "odd")
        ]
        return layers.FlowModel(flows, layers.FactorizedCategorical(D, K, rng, init_std=1.0))
    if (
        kind == "ar-flow"
    ):  # incremental LSTM base, AR flow re-run on the prefix: both sequential paths
        base = layers.AutoregressiveCategorical(
            layers.LSTMNetwork(K, HIDDEN, K, rng=rng), K, length=D
        )
        flow = layers.DiscreteAutoregressiveFlow(layers.CausalMLP(D, K, HIDDEN, K, rng=rng), K)
        return layers.FlowModel([layers.Reverse(), flow, layers.Reverse()], base)
    if kind == "ar-base":  # a causal network without incremental steps: the placeholder path
        return layers.FlowModel(
            [],
            layers.AutoregressiveCategorical(
                layers.CausalMLP(D, K, HIDDEN, K, rng=rng), K, length=D
            ),
        )
    return LSTMLanguageModel(K, HIDDEN, HIDDEN, 1, rng=rng)


def _model_nats(model, layout, tokens, extra):
    """The model's own -log p of the rows in nats, float64: a flow's over all L positions, the
    LSTM's up to EOS (rows) or over the characters (chunks, the last row partial)."""
    if not len(tokens):
        return 0.0
    if not isinstance(model, LSTMLanguageModel):
        return float(-model.log_prob(tokens).astype(numpy.float64).sum())
    weights = numpy.arange(layout.length) < layout.lengths(len(tokens), extra)[:, None]
    if layout.stop_id is not None:  # up to and including EOS
        weights &= numpy.cumsum(numpy.cumsum(tokens == layout.stop_id, axis=1), axis=1) <= 1
    return float(model.nll(tokens, weights.astype(numpy.float32)).astype(numpy.float64).sum())


def _round_trip(model, layout, data, batch_size):
    """decompress(compress(data)) through the layout and the coder, without files."""
    tokens, extra = layout.to_rows(data)
    words, model_bits = compress.encode_rows(model, layout, tokens, extra, batch_size)
    decoded = compress.decode_rows(model, layout, len(tokens), extra, batch_size, words)
    return layout.from_rows(decoded, len(tokens), extra), tokens, extra, model_bits


@given(
    kind=st.sampled_from(["factorized", "bipartite", "ar-flow", "ar-base"]),
    K=st.sampled_from([2, 3, 4, 5, 6]),
    D=st.integers(2, 5),
    rows=st.integers(0, 9),
    batch_size=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    final_newline=st.booleans(),
)
def test_sequences_come_back_byte_for_byte(kind, K, D, rows, batch_size, seed, final_newline):
    rng = numpy.random.default_rng(seed)
    text = FullRank.format_sequences(rng.integers(0, K, size=(rows, D))) + (
        "\n" if final_newline else ""
    )
    layout, model = Sequences(FullRank.format_sequences, D, K), _model(kind, K, D, rng)
    decoded, tokens, extra, model_bits = _round_trip(model, layout, text.encode(), batch_size)
    assert decoded == text.encode()
    assert numpy.isclose(
        model_bits, _model_nats(model, layout, tokens, extra) / numpy.log(2), rtol=1e-5, atol=1e-5
    )


@given(
    kind=st.sampled_from(["factorized", "ar-flow"]),
    rows=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_potts_lattices_come_back_byte_for_byte(kind, rows, seed):
    """Potts samples: L lines of L states, a blank line between lattices (q = 3, 2 x 2)."""
    rng, render = (
        numpy.random.default_rng(seed),
        functools.partial(PottsExperiment.format_sequences, SimpleNamespace(side=2)),
    )
    text = render(rng.integers(0, 3, size=(rows, 4))) + "\n"
    decoded, _, _, _ = _round_trip(
        _model(kind, 3, 4, rng), Sequences(render, 4, 3), text.encode(), 2
    )
    assert decoded == text.encode()


def _dataset(characters, rows_layout):
    vocab = sorted(characters) + ([EOS, PAD] if rows_layout else [])
    eos_pad = (len(characters), len(characters) + 1) if rows_layout else (None, None)
    return CharDataset(
        "test",
        numpy.zeros((1, 1), numpy.int32),
        numpy.ones((1, 1), numpy.float32),
        vocab,
        eos_id=eos_pad[0],
        pad_id=eos_pad[1],
        word_boundary="_" if rows_layout else None,
    )


@given(
    kind=st.sampled_from(["factorized", "bipartite", "lstm"]),
    rows_layout=st.booleans(),
    length=st.integers(2, 7),
    text=st.text(alphabet="ab c\n", max_size=30),
    batch_size=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_text_comes_back_byte_for_byte(kind, rows_layout, length, text, batch_size, seed):
    """PTB-style rows (lines, EOS, PAD; a space read as the word boundary `_`) and text8-style
    chunks (the last one partial), under flows and under the AR LSTM that stops at EOS."""
    if rows_layout:
        text = "\n".join(
            line[: length - 1] for line in text.split("\n")
        )  # a row holds L - 1 characters
    layout = (TextRows if rows_layout else TextChunks)(
        _dataset("ab_c" if rows_layout else "ab c\n", rows_layout), length
    )
    model = _model(kind, len(layout.vocab), length, numpy.random.default_rng(seed))
    decoded, tokens, extra, model_bits = _round_trip(model, layout, text.encode(), batch_size)
    assert decoded == text.encode()
    assert numpy.isclose(
        model_bits, _model_nats(model, layout, tokens, extra) / numpy.log(2), rtol=1e-5, atol=1e-5
    )


def test_the_file_costs_what_the_model_says_plus_under_one_percent():
    """The coder's -log2 p(symbol) sums to the model's own log_prob, and the range coder's payload
    exceeds it by < 1% (plus its final 32-bit words) on 400 rows of a random bipartite model."""
    rng = numpy.random.default_rng(0)
    model, layout = _model("bipartite", 5, 6, rng), Sequences(FullRank.format_sequences, 6, 5)
    ids = layers.to_ids(model.sample(400, rng))
    _, tokens, _, model_bits = _round_trip(
        model, layout, FullRank.format_sequences(ids).encode(), 64
    )
    words, _ = compress.encode_rows(model, layout, tokens, {}, 64)
    assert numpy.isclose(
        model_bits, -model.log_prob(tokens).astype(numpy.float64).sum() / numpy.log(2), rtol=1e-5
    )
    assert model_bits < 32 * len(words) < 1.01 * model_bits + 64


@pytest.mark.parametrize(
    "data, message",
    [
        (b"ab\nabZ\n", "line 2, column 3: character 'Z' is not in the checkpoint's vocabulary"),
        (b"ab\nab_c\n", "line 2, column 3: '_' is this vocabulary's word boundary"),
        (b"abcab\n", "line 1 has 5 characters; this checkpoint's rows hold at most 4"),
    ],
)
def test_characters_outside_the_vocabulary_and_overlong_lines_are_refused_with_their_line(
    data, message
):
    with pytest.raises(CompressionError, match=re.escape(message)):
        TextRows(_dataset("ab_c", True), 5).to_rows(data)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"0 1\n2  0\n", "line 2, column 3: not written as `npflows sample`"),
        (b"0 1\n2 3\n", "ids in [0, 3), got 4 ids, max 3"),
        (b"0 1 2\n", "got 3 ids"),
        (b"0 x\n", "got 'x'"),
    ],
)
def test_sequences_not_written_as_sample_writes_them_are_refused(data, message):
    with pytest.raises(CompressionError, match=re.escape(message)):
        Sequences(FullRank.format_sequences, 2, 3).to_rows(data)
