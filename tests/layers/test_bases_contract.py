"""The bases' contract beyond the numbers: messages that name the base, dtypes, gradient
accumulation, how sampling drives a network (incremental steps, the causality probe once) and
the device route. Pinned where mutation testing of layers/bases.py found nothing that would
fail (docs/reliability.md#mutation-testing)."""

import numpy
import pytest

import layers
from layers.bases import _inverse_cdf
from npflows import gradcheck
from npflows.module import Module
from npflows.testing import Audited, build_base, random_ids
from tests.layers.test_bases import FullPassOnly

F64 = numpy.float64

F32 = numpy.float32


def test_inverse_cdf_returns_int64_ids_and_clips_a_cdf_short_of_one_to_the_last_class():
    probs = numpy.array([[0.5, 0.4999]])  # sums to 0.9999: round-off in a softmax looks like this
    ids = _inverse_cdf(probs, numpy.array([0.3, 0.99995]))
    assert ids.dtype == numpy.int64
    numpy.testing.assert_array_equal(ids, [0, 1])


def test_default_logits_are_uniform_zeros_in_the_dtype_and_init_std_draws_from_the_seed():
    for dtype in (F64, F32):
        uniform = layers.FactorizedCategorical(3, 4, dtype=dtype)
        assert uniform.logits.data.dtype == dtype and not uniform.logits.data.any()
    drawn = [layers.FactorizedCategorical(3, 4, rng=7, dtype=F64, init_std=2.0) for _ in range(2)]
    numpy.testing.assert_array_equal(drawn[0].logits.data, drawn[1].logits.data)
    assert drawn[0].logits.data.std() > 0.5


@pytest.mark.parametrize("kind", ["factorized", "autoregressive"])
def test_samples_are_reproducible_under_a_seed_in_the_parameters_dtype(kind):
    base = build_base(kind, 5, 3, seed=2)
    numpy.testing.assert_array_equal(base.sample(20, 11), base.sample(20, 11))
    for dtype in (F64, F32):  # float32 is the backend's default: float64 pins that none is used
        for param in base.parameters():
            param.data = param.data.astype(dtype)
        assert base.sample(4, 0).dtype == dtype
        ids = random_ids(0, 4, 3, 5)
        assert base.log_prob(ids).dtype == dtype
        # one-hot input in the parameters' dtype is accepted, and is the same distribution
        numpy.testing.assert_array_equal(
            base.log_prob(layers.one_hot(ids, 5, dtype)), base.log_prob(ids)
        )


@pytest.mark.parametrize("kind", ["factorized", "autoregressive"])
def test_backward_follows_one_hot_passes_only_and_adds_into_the_gradients(kind):
    base = build_base(kind, 4, 3, seed=3)
    name = type(base).__name__
    x = layers.one_hot(random_ids(1, 5, 3, 4), 4, F64)
    base.log_prob(x)
    first = base.backward(numpy.ones(5))
    grads = [param.grad.copy() for param in base.parameters()]
    base.log_prob(x)
    numpy.testing.assert_array_equal(base.backward(numpy.ones(5)), first)
    for param, grad in zip(base.parameters(), grads):
        numpy.testing.assert_allclose(param.grad, 2 * grad, rtol=1e-12)  # accumulated
    base.log_prob(layers.to_ids(x))
    with pytest.raises(RuntimeError, match=f"^{name}: backward follows a pass on one-hot input"):
        base.backward(numpy.ones(5))
    base.log_prob(x)
    with pytest.raises(ValueError, match=rf"^{name}: expected a gradient of shape \(5,\)"):
        base.backward(numpy.ones(4))


def test_factorized_logits_gradient_holds_off_the_one_hot_set():
    """The audit's x is one-hot (rows sum to 1); the formula (FC1) holds for any x."""
    rng = numpy.random.default_rng(4)
    base = layers.FactorizedCategorical(3, 4, rng=rng, dtype=F64, init_std=1.0)
    x = 2 * rng.random((5, 3, 4))  # rows summing to ~4, not 1
    case = gradcheck.Case(Audited(base, base._log_prob_one_hot), (x,))
    assert gradcheck.check_case("soft x", case, rng).passed(1e-6)


@pytest.mark.parametrize("kind", ["factorized", "autoregressive"])
def test_sampling_from_non_finite_logits_or_no_samples_is_refused_naming_the_base(kind):
    base = build_base(kind, 4, 3, seed=0)
    name = type(base).__name__
    with pytest.raises(ValueError, match=f"^{name}: expected a number of samples >= 1, got 0$"):
        base.sample(0, 0)
    with pytest.raises(ValueError, match=rf"^{name}: expected token ids in \[0, 4\)"):
        base.log_prob(numpy.full((2, 3), 4))
    if kind == "factorized":
        base.logits.data[0, 0] = numpy.nan
    else:  # NaN logits at position 0 only: the check must cover every position, not the last
        base = layers.AutoregressiveCategorical(FirstStepNaN(4, 5, 4, rng=0, dtype=F64), 4, 3)
    message = (
        f"^{name}: expected finite logits to sample from, got NaN or inf "
        r"\(a diverged or damaged model\)$"
    )
    with pytest.raises(ValueError, match=message):
        base.sample(3, 0)


class FirstStepNaN(layers.LSTMNetwork):
    def start_incremental(self, batch_size, state=None):
        super().start_incremental(batch_size, state)
        self.steps = 0

    def step(self, x_t):
        self.steps += 1
        logits = super().step(x_t)
        return logits * numpy.nan if self.steps == 1 else logits


class Spy(layers.LSTMNetwork):
    """Records how the base drives the network: full passes, step inputs, start arguments."""

    def __init__(self, *args, step_shape=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes, self.step_dtypes, self.starts, self.step_shape = 0, set(), [], step_shape
        self.passes_with_context = 0

    def forward(self, x, state=None):
        self.passes += 1
        self.passes_with_context += state is not None
        return super().forward(x, state)

    def start_incremental(self, batch_size, state=None):
        self.starts.append((batch_size, state is not None))
        super().start_incremental(batch_size, state)

    def step(self, x_t):
        self.step_dtypes.add(x_t.dtype)
        logits = super().step(x_t)
        return logits if self.step_shape is None else numpy.zeros(self.step_shape)


def test_sampling_steps_an_incremental_network_in_its_dtype_without_full_passes():
    spy = Spy(4, 5, 4, rng=0, dtype=F32)
    base = layers.AutoregressiveCategorical(spy, 4, length=3)
    context = tuple(numpy.random.default_rng(0).standard_normal((1, 6, 5), F32) for _ in "hc")
    base.sample(6, 0)
    base.sample(6, 0, context=context)
    assert spy.passes == 0 and spy.step_dtypes == {numpy.dtype(F32)}
    assert spy.starts == [(6, False), (6, True)]  # the batch size, and the context when given
    bad = layers.AutoregressiveCategorical(Spy(4, 5, 4, rng=0, step_shape=(6, 3)), 4, length=3)
    with pytest.raises(
        ValueError,
        match=r"^AutoregressiveCategorical: expected network.step output of shape \(6, 4\), "
        r"got \(6, 3\)$",
    ):
        bad.sample(6, 0)


def test_a_length_given_to_sample_or_sequential_overrides_the_bases_and_ids_are_int64():
    base = layers.AutoregressiveCategorical(FullPassOnly(3, 4, 3, rng=0, dtype=F64), 3, length=2)
    assert base.sample(5, 0, length=4).shape == (5, 4, 3)
    assert base.sample(5, 0).shape == (5, 2, 3)
    choose_first = lambda position, probs: numpy.zeros(len(probs), numpy.int64)  # noqa: E731
    ids = base.sequential(5, choose_first, length=4)
    assert ids.shape == (5, 4) and ids.dtype == numpy.int64
    assert base.sequential(5, choose_first).shape == (5, 2)


def test_the_network_is_probed_for_causality_once_on_first_use_naming_the_base():
    spy = Spy(4, 5, 4, rng=0, dtype=F64)
    base = layers.AutoregressiveCategorical(spy, 4)
    x = random_ids(0, 2, 3, 4)
    context = tuple(numpy.random.default_rng(0).standard_normal((1, 2, 5)) for _ in "hc")
    base.log_prob(x, context)
    probed = spy.passes
    base.log_prob(x, context)
    # the probe runs the network with the context it will get (D + 1 passes), once
    assert probed > 1 and spy.passes == spy.passes_with_context == probed + 1
    wrong = layers.AutoregressiveCategorical(layers.CausalMLP(3, 4, 8, 5, rng=0, dtype=F64), 4)
    with pytest.raises(
        ValueError,
        match=r"^AutoregressiveCategorical: expected network output of shape \(2, 3, 4\) "
        r"\(K logits per position\), got \(2, 3, 5\)$",
    ):
        wrong.log_prob(x)
    with pytest.raises(
        ValueError,
        match="^AutoregressiveCategorical: expected an npflows Module as network, got tuple$",
    ):
        layers.AutoregressiveCategorical((1, 2), 4)


@pytest.mark.parametrize("kind", ["factorized", "autoregressive"])
def test_sampling_on_a_device_gives_the_host_samples_with_one_host_read(kind):
    from npflows import backend
    from tests.fixtures.devices import strict_counting

    expected = build_base(kind, 4, 3, seed=6).sample(8, 3)
    with strict_counting() as counts:
        base = build_base(kind, 4, 3, seed=6)
        got = base.sample(8, 3)
        in_bases = [n for site, n in counts.syncs.items() if site.startswith("layers/bases.py")]
        assert in_bases == [1]  # the finiteness check, once per call (the probe reads its own)
    numpy.testing.assert_array_equal(backend.to_numpy(got), expected)


class ShapelessForOneRow(Module):
    """Causal (its output is constant); gives a list, no shape, for a batch of one row."""

    causal = True

    def forward(self, x):
        return numpy.zeros(x.shape) if len(x) > 1 else [0.0]


def test_a_network_output_without_a_shape_is_refused_saying_so():
    base = layers.AutoregressiveCategorical(ShapelessForOneRow(), 4)
    base.log_prob(random_ids(0, 2, 3, 4))  # probed on arrays
    with pytest.raises(
        ValueError,
        match=r"^AutoregressiveCategorical: expected network output of shape \(1, 3, 4\) "
        r".*, got \(\)$",
    ):
        base.log_prob(random_ids(0, 1, 3, 4))


class Shapeless(Module):
    """Declares itself causal but returns a list, never an array."""

    causal = True

    def forward(self, x):
        return [0.0]


def test_a_network_output_without_a_shape_on_the_first_call_is_one_error_naming_it():
    """The causality probe runs first and used to read `.dtype` of the output: a traceback
    (AttributeError) instead of a message."""
    base = layers.AutoregressiveCategorical(Shapeless(), 4)
    with pytest.raises(
        ValueError,
        match=r"^AutoregressiveCategorical: expected Shapeless\.forward to return an array, "
        r"got list$",
    ):
        base.log_prob(random_ids(0, 2, 3, 4))
