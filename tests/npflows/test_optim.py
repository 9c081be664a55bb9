"""Adam's in-place update against the textbook formula (Kingma & Ba; AdamW's decoupled decay)."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import optim
from npflows.module import Parameter


def textbook_adam(theta, grads, lr, betas, eps, weight_decay):
    """The docstring's formula, written out with fresh arrays, one step per gradient."""
    beta1, beta2 = betas
    m, v = numpy.zeros_like(theta), numpy.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        theta = theta - lr * m_hat / (numpy.sqrt(v_hat) + eps) - lr * weight_decay * theta
    return theta, m, v


@given(
    seed=st.integers(0, 2**31),
    steps=st.integers(1, 6),
    weight_decay=st.sampled_from([0.0, 0.1]),
    scaled=st.booleans(),
)
def test_adam_matches_textbook_formula(seed, steps, weight_decay, scaled):
    """With lr_scale, each entry follows the formula at its own rate lr * scale."""
    rng = numpy.random.default_rng(seed)
    shapes = [(3, 4), (5,), (2, 2, 2)]
    params = [Parameter(rng.normal(size=shape)) for shape in shapes]
    start = numpy.concatenate([p.data.reshape(-1) for p in params])
    scale = rng.choice([0.0, 1.0, 10.0], size=start.size) if scaled else None
    adam = optim.Adam(
        params, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, lr_scale=scale
    )
    grads = [rng.normal(size=start.size) * 10.0 ** rng.integers(-3, 2) for _ in range(steps)]
    for grad in grads:
        adam.flat.grad[...] = grad
        adam.step()
    theta, m, v = textbook_adam(
        start, grads, 0.01 * (1.0 if scale is None else scale), (0.9, 0.99), 1e-8, weight_decay
    )
    # float64: the in-place order (sqrt(v) / sqrt(1 - b2^t) instead of sqrt(v / (1 - b2^t)),
    # decay applied before the Adam term) differs from the formula by a few ulps per step
    numpy.testing.assert_allclose(adam.m, m, rtol=1e-12, atol=0)
    numpy.testing.assert_allclose(adam.v, v, rtol=1e-12, atol=0)
    numpy.testing.assert_allclose(adam.flat.data, theta, rtol=1e-12, atol=1e-15)
    assert adam.steps == steps


def test_adam_step_updates_parameter_views_in_place():
    params = [
        Parameter(numpy.ones((2, 3), numpy.float32)),
        Parameter(numpy.zeros(4, numpy.float32)),
    ]
    adam = optim.Adam(params, lr=0.5)
    adam.flat.grad[...] = 1.0
    adam.step()
    # the first step moves every entry by exactly lr (m_hat / sqrt(v_hat) = g / |g| = 1, up to eps)
    numpy.testing.assert_allclose(params[0].data, 0.5, rtol=1e-6)
    numpy.testing.assert_allclose(params[1].data, -0.5, rtol=1e-6)
    assert all(numpy.shares_memory(p.data, adam.flat.data) for p in params)
    assert adam.flat.data.dtype == numpy.float32 and adam.m.dtype == numpy.float32


def test_adam_lr_scale_of_the_wrong_shape_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="one per parameter entry"):
        optim.Adam([Parameter(numpy.ones(3))], lr_scale=numpy.ones(2))


def _optimizer(kind, **options):
    parameter = Parameter(numpy.arange(6.0).reshape(2, 3))
    return (optim.Adam if kind == "Adam" else optim.SGD)([parameter], **options)


@pytest.mark.parametrize("kind", ["Adam", "SGD"])
@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -1e-3])
def test_learning_rates_that_wreck_every_parameter_are_refused(kind, lr):
    with pytest.raises(
        ValueError, match=f"{kind}: expected a finite learning rate >= 0, got {lr!r}"
    ):
        _optimizer(kind, lr=lr)
    optimizer = _optimizer(kind, lr=0.1)
    with pytest.raises(ValueError, match=f"{kind}: expected a finite learning rate >= 0"):
        optimizer.step(lr)  # a schedule's value, checked on the host (a Python float)
    numpy.testing.assert_array_equal(optimizer.flat.data, numpy.arange(6.0))  # nothing was updated


@pytest.mark.parametrize("kind, name", [("Adam", "m"), ("Adam", "v"), ("SGD", "velocity")])
def test_state_with_a_missing_or_misshapen_buffer_is_refused(kind, name):
    optimizer = _optimizer(kind)
    state = optimizer.state_dict()
    with pytest.raises(
        ValueError, match=f"{kind}: expected state entries .* got none for \\['{name}'\\]"
    ):
        optimizer.load_state_dict({key: value for key, value in state.items() if key != name})
    with pytest.raises(
        ValueError, match=f"{kind}: expected state '{name}' of shape \\(6,\\), got \\(1,\\)"
    ):
        optimizer.load_state_dict(
            {**state, name: numpy.ones(1)}
        )  # would broadcast into every entry


def _flat_with_gradients(rng, shapes, scale, dtype=numpy.float64):
    flat = optim.FlatParameters([Parameter(numpy.zeros(shape, dtype)) for shape in shapes])
    for param in flat.params:  # through the parameters' views, as the modules' backward writes them
        param.grad[...] = scale * rng.standard_normal(param.grad.shape)
    return flat


def _norm_over_parameters(flat):
    return numpy.sqrt(
        sum(float((param.grad.astype(numpy.float64) ** 2).sum()) for param in flat.params)
    )


SHAPES = st.lists(
    st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4
)


@given(seed=st.integers(0, 2**31), shapes=SHAPES, scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_global_norm_is_the_l2_norm_over_every_parameter(seed, shapes, scale):
    flat = _flat_with_gradients(numpy.random.default_rng(seed), shapes, scale)
    # float64 sums of the same squares in another order: a few ulps apart
    numpy.testing.assert_allclose(
        float(optim.global_norm(flat)), _norm_over_parameters(flat), rtol=1e-12
    )


@given(seed=st.integers(0, 2**31), shapes=SHAPES, ratio=st.sampled_from([0.01, 0.3, 0.9]))
def test_clip_grad_norm_rescales_every_gradient_to_max_norm_and_returns_the_norm_before(
    seed, shapes, ratio
):
    flat = _flat_with_gradients(numpy.random.default_rng(seed), shapes, 1.0)
    before, norm_before = flat.grad.copy(), _norm_over_parameters(flat)
    max_norm = ratio * norm_before
    returned = optim.clip_grad_norm(flat, max_norm)
    numpy.testing.assert_allclose(float(returned), norm_before, rtol=1e-12)
    # one common factor max_norm / (norm + 1e-12): the direction is kept and the norm is max_norm
    # but for the 1e-12 guard, written out here (a single entry's norm can be ~1e-4, where the
    # guard's relative share 1e-8 would exceed any tolerance that pins the factor)
    factor = max_norm / (norm_before + 1e-12)
    numpy.testing.assert_allclose(flat.grad, before * factor, rtol=1e-12)
    numpy.testing.assert_allclose(_norm_over_parameters(flat), norm_before * factor, rtol=1e-12)


@given(seed=st.integers(0, 2**31), shapes=SHAPES, ratio=st.sampled_from([1.01, 2.0, 1e6]))
def test_clip_grad_norm_leaves_gradients_under_max_norm_exactly_unchanged(seed, shapes, ratio):
    flat = _flat_with_gradients(numpy.random.default_rng(seed), shapes, 1.0, numpy.float32)
    before = flat.grad.copy()
    returned = optim.clip_grad_norm(flat, ratio * _norm_over_parameters(flat))
    numpy.testing.assert_array_equal(flat.grad, before)  # the factor is exactly 1.0
    assert flat.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(
        float(returned), _norm_over_parameters(flat), rtol=1e-6
    )  # float32 sum


def _named_flat(names_and_sizes):
    names = [name for name, _ in names_and_sizes]
    params = [Parameter(numpy.zeros(size)) for _, size in names_and_sizes]
    return optim.FlatParameters(params, names)


def test_lr_scale_by_name_scales_the_named_entries_wherever_they_sit_in_the_buffer():
    """The base first, in the middle or last: its entries, and only they, get its scale."""
    for order in (
        [("base.logits", 3), ("flows.0.w", 2), ("flows.1.w", 1)],
        [("flows.0.w", 2), ("base.logits", 3), ("flows.1.w", 1)],
        [("flows.0.w", 2), ("flows.1.w", 1), ("base.logits", 3)],
    ):
        flat = _named_flat(order)
        scale = optim.lr_scale_by_name(flat, {"base.": 10.0, "flows.1.": 0.5})
        expected = numpy.concatenate(
            [
                numpy.full(size, {"base": 10.0, "flows.1": 0.5}.get(name.rsplit(".", 1)[0], 1.0))
                for name, size in order
            ]
        )
        numpy.testing.assert_array_equal(scale, expected)


def test_the_longest_matching_prefix_wins():
    flat = _named_flat([("flows.0.a", 1), ("flows.0.output.b", 2)])
    scale = optim.lr_scale_by_name(flat, {"flows.": 2.0, "flows.0.output.": 3.0})
    numpy.testing.assert_array_equal(scale, [2.0, 3.0, 3.0])


def test_a_prefix_that_names_nothing_or_a_buffer_without_names_is_a_clear_error():
    with pytest.raises(ValueError, match=r"got none for \['bse\.'\]"):
        optim.lr_scale_by_name(_named_flat([("base.logits", 2)]), {"bse.": 10.0})
    with pytest.raises(ValueError, match="expected FlatParameters with names"):
        optim.lr_scale_by_name(optim.FlatParameters([Parameter(numpy.zeros(2))]), {"base.": 1})
    with pytest.raises(ValueError, match=r"expected one name per parameter \(1\), got 2"):
        optim.FlatParameters([Parameter(numpy.zeros(2))], ["a", "b"])


def test_adam_defaults_are_kingma_and_bas():
    adam = optim.Adam([Parameter(numpy.ones(3))])
    assert (adam.lr, adam.betas, adam.eps, adam.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert adam.lr_scale is None and adam.steps == 0
