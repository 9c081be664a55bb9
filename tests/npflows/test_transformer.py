"""Transformer and TransformerBlock: causality, padding, incremental decoding, modes, errors."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import nn

seeds = st.integers(0, 2**31 - 1)
F64 = numpy.float64


def _model(seed, dtype=F64, **options):
    settings = dict(
        num_layers=2, d_model=8, num_heads=2, d_ff=16, max_length=9, rng=seed, dtype=dtype
    )
    settings.update(options)
    return nn.Transformer(**settings)


@given(
    seed=seeds,
    position=st.integers(0, 6),
    dtype=st.sampled_from([numpy.float32, F64]),
    activation=st.sampled_from(["relu", "gelu"]),
)
def test_causal_transformer_outputs_up_to_t_ignore_inputs_after_t(
    seed, position, dtype, activation
):
    rng = numpy.random.default_rng(seed)
    model = _model(seed, dtype, causal=True, activation=activation, in_features=5, out_features=3)
    x = numpy.eye(5, dtype=dtype)[rng.integers(0, 5, size=(3, 7))]
    changed = x.copy()
    changed[:, position + 1 :] = numpy.eye(5, dtype=dtype)[
        rng.integers(0, 5, size=(3, 6 - position))
    ]
    before, after = model.forward(x), model.forward(changed)
    numpy.testing.assert_array_equal(
        after[:, : position + 1], before[:, : position + 1]
    )  # bit-identical


@given(seed=seeds, dtype=st.sampled_from([numpy.float32, F64]))
def test_padded_positions_do_not_change_transformer_outputs_at_real_positions(seed, dtype):
    rng = numpy.random.default_rng(seed)
    model = _model(seed, dtype)
    x = rng.standard_normal((3, 7, 8)).astype(dtype)
    mask = (rng.random((3, 7)) < 0.6).astype(numpy.int64)
    mask[:, 0] = 1
    changed = numpy.where(mask[..., None] == 0, rng.standard_normal(x.shape), x).astype(dtype)
    before = model.forward(x, padding_mask=mask)
    after = model.forward(changed, padding_mask=mask)
    real = mask.astype(bool)
    numpy.testing.assert_array_equal(after[real], before[real])


@given(
    seed=seeds,
    in_features=st.sampled_from([None, 5]),
    out_features=st.sampled_from([None, 3]),
    activation=st.sampled_from(["relu", "gelu"]),
)
def test_step_reproduces_forward(seed, in_features, out_features, activation):
    rng = numpy.random.default_rng(seed)
    model = _model(
        seed, causal=True, activation=activation, in_features=in_features, out_features=out_features
    )
    x = rng.standard_normal((3, 9, in_features or 8))
    full = model.forward(x)
    model.start_incremental(3)
    stepped = numpy.stack([model.step(x[:, t]) for t in range(9)], axis=1)
    # float64; only the summation order differs (one query row vs a T x T block): ~1e-15
    numpy.testing.assert_allclose(stepped, full, rtol=1e-11, atol=1e-12)


def test_step_invalidates_saved_state_so_backward_needs_a_new_forward():
    model = _model(0, causal=True)
    model.forward(numpy.ones((1, 2, 8)))
    model.start_incremental(1)
    model.step(numpy.ones((1, 8)))
    with pytest.raises(RuntimeError, match="Transformer: backward called before forward"):
        model.backward(numpy.ones((1, 2, 8)))


@given(seed=seeds)
def test_eval_mode_matches_the_same_model_without_dropout(seed):
    x = numpy.random.default_rng(seed).standard_normal((2, 5, 8))
    with_dropout = _model(seed, dropout=0.3).eval()
    without = _model(seed, dropout=0.0)
    numpy.testing.assert_array_equal(
        with_dropout.forward(x), without.forward(x)
    )  # same init stream


def test_float32_gradients_agree_with_float64():
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((2, 6, 8))
    cotangent = rng.standard_normal((2, 6, 3))
    grads = {}
    for dtype in (numpy.float32, F64):
        model = _model(1, dtype, causal=True, out_features=3)
        model.forward(x.astype(dtype))
        grad_x = model.backward(cotangent.astype(dtype))
        grads[dtype] = (grad_x, model.blocks[0].attention.qkv.weight.grad)
        assert grad_x.dtype == dtype
    # float32 round-off (6e-8) compounded over ~two dozen layers of ops stays below 1e-4 relative
    for low, high in zip(grads[numpy.float32], grads[F64]):
        numpy.testing.assert_allclose(low, high, rtol=0, atol=1e-4 * numpy.abs(high).max())


def test_transformer_rejects_sequences_longer_than_max_length():
    with pytest.raises(ValueError, match="Transformer: expected length <= max_length 9, got 10"):
        _model(0).forward(numpy.ones((1, 10, 8)))


def test_transformer_rejects_wrong_last_dim():
    with pytest.raises(
        ValueError, match=r"Transformer: expected last dimension 5, got shape \(1, 3, 8\)"
    ):
        _model(0, in_features=5).forward(numpy.ones((1, 3, 8)))


def test_transformer_rejects_padding_mask_of_wrong_shape():
    with pytest.raises(
        ValueError, match=r"Transformer: expected padding_mask of shape \(1, 3\), got \(3,\)"
    ):
        _model(0).forward(numpy.ones((1, 3, 8)), padding_mask=numpy.ones(3))


def test_transformer_rejects_unknown_activation():
    with pytest.raises(ValueError, match="TransformerBlock: expected activation in"):
        _model(0, activation="swish")


def test_incremental_decoding_needs_a_causal_model():
    with pytest.raises(ValueError, match="Transformer: incremental decoding needs causal=True"):
        _model(0).start_incremental(2)


def test_step_rejects_missing_start_wrong_shape_and_too_many_steps():
    model = _model(0, causal=True, max_length=2)
    with pytest.raises(
        ValueError, match=r"Transformer: expected start_incremental\(\) before step\(\)"
    ):
        model.step(numpy.ones((1, 8)))
    model.start_incremental(1)
    with pytest.raises(
        ValueError, match=r"Transformer: expected step input of shape \(1, 8\), got \(2, 8\)"
    ):
        model.step(numpy.ones((2, 8)))
    model.step(numpy.ones((1, 8)))
    model.step(numpy.ones((1, 8)))
    with pytest.raises(ValueError, match="Transformer: expected at most max_length 2 steps"):
        model.step(numpy.ones((1, 8)))
