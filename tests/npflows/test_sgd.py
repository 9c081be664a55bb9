"""SGD with momentum against the textbook recurrence, its defaults and its resumable state."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

from npflows import optim
from npflows.module import Parameter


def textbook_sgd(theta, grads, lrs, momentum):
    """velocity <- momentum velocity + g;  theta <- theta - lr velocity, with fresh arrays."""
    velocity = numpy.zeros_like(theta)
    for grad, lr in zip(grads, lrs):
        velocity = momentum * velocity + grad
        theta = theta - lr * velocity
    return theta, velocity


def _sgd(rng, **options):
    params = [Parameter(rng.normal(size=shape)) for shape in [(2, 3), (4,)]]
    return optim.SGD(params, **options)


@given(
    seed=st.integers(0, 2**31),
    steps=st.integers(1, 5),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    scheduled=st.booleans(),
)
def test_sgd_matches_the_momentum_recurrence_with_the_given_or_the_scheduled_lr(
    seed, steps, momentum, scheduled
):
    rng = numpy.random.default_rng(seed)
    sgd = _sgd(rng, lr=0.1, momentum=momentum)
    start = sgd.flat.data.copy()
    grads = [rng.normal(size=start.size) for _ in range(steps)]
    lrs = [0.03 * (step + 1) if scheduled else 0.1 for step in range(steps)]
    for grad, lr in zip(grads, lrs):
        sgd.flat.grad[...] = grad
        sgd.step(lr if scheduled else None)
    theta, velocity = textbook_sgd(start, grads, lrs, momentum)
    # float64, the same operations in the same order as the in-place update: equal to the ulp
    numpy.testing.assert_allclose(sgd.velocity, velocity, rtol=1e-13, atol=1e-15)
    numpy.testing.assert_allclose(sgd.flat.data, theta, rtol=1e-13, atol=1e-15)
    assert sgd.steps == steps


def test_sgd_defaults_are_lr_0_1_without_momentum():
    rng = numpy.random.default_rng(0)
    sgd = _sgd(rng)
    assert (sgd.lr, sgd.momentum, sgd.steps) == (0.1, 0.0, 0)
    start = sgd.flat.data.copy()
    for _ in range(2):  # without momentum the second step does not repeat the first gradient
        sgd.flat.grad[...] = 1.0
        sgd.step()
    numpy.testing.assert_allclose(sgd.flat.data, start - 0.2, rtol=1e-15)


def test_a_learning_rate_of_0_is_accepted_and_moves_nothing():
    sgd = _sgd(numpy.random.default_rng(1), lr=0.0, momentum=0.9)
    start = sgd.flat.data.copy()
    sgd.flat.grad[...] = 1.0
    sgd.step()
    sgd.step(0.0)
    numpy.testing.assert_array_equal(sgd.flat.data, start)
    numpy.testing.assert_array_equal(sgd.velocity, 1.9)  # the momentum still accumulates


def test_sgd_state_round_trip_continues_exactly_like_the_uninterrupted_optimizer():
    rng = numpy.random.default_rng(2)
    grads = [rng.normal(size=10) for _ in range(4)]
    straight = _sgd(numpy.random.default_rng(3), lr=0.05, momentum=0.9)
    for grad in grads:
        straight.flat.grad[...] = grad
        straight.step()
    first = _sgd(numpy.random.default_rng(3), lr=0.05, momentum=0.9)
    for grad in grads[:2]:
        first.flat.grad[...] = grad
        first.step()
    state = {name: numpy.array(value) for name, value in first.state_dict().items()}
    assert sorted(state) == ["steps", "velocity"]
    resumed = _sgd(numpy.random.default_rng(3), lr=0.05, momentum=0.9)
    resumed.flat.data[...] = first.flat.data
    resumed.load_state_dict(state)
    assert resumed.steps == 2 and type(resumed.steps) is int
    numpy.testing.assert_array_equal(resumed.velocity, first.velocity)
    for grad in grads[2:]:
        resumed.flat.grad[...] = grad
        resumed.step()
    numpy.testing.assert_array_equal(resumed.flat.data, straight.flat.data)
    assert resumed.steps == straight.steps == 4
