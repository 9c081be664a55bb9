"""Log-softmax and softmax cross-entropy: values, reductions, masks and refusals (the gradients
at one call: the audit cases in test_gradients.py)."""

import numpy
import pytest

from npflows import backend, gradcheck, nn
from npflows.gradcheck import Case
from tests.fixtures.devices import strict_counting

LOGITS = numpy.array([[[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]], [[3.0, -1.0, 0.5], [2.0, 2.0, -2.0]]])


def _log_softmax_by_definition(logits):
    return numpy.log(numpy.exp(logits) / numpy.exp(logits).sum(axis=-1, keepdims=True))


def test_log_softmax_and_softmax_equal_their_definitions_and_survive_huge_logits():
    # float64 with three terms per row: agreement to ~1e-15; 1e-13 leaves room, a bug is O(1)
    expected = _log_softmax_by_definition(LOGITS)
    numpy.testing.assert_allclose(nn.log_softmax(LOGITS), expected, rtol=1e-13, atol=1e-13)
    numpy.testing.assert_allclose(nn.softmax(LOGITS), numpy.exp(expected), rtol=1e-13)
    numpy.testing.assert_allclose(nn.LogSoftmax().forward(LOGITS), expected, rtol=1e-13, atol=1e-13)
    # shifted by 1000 the definition overflows; the max shift leaves the values unchanged
    numpy.testing.assert_allclose(nn.log_softmax(LOGITS + 1000), expected, atol=1e-12)
    numpy.testing.assert_allclose(nn.softmax(LOGITS + 1000), numpy.exp(expected), atol=1e-15)


def _per_position_nll(targets):
    log_probs = _log_softmax_by_definition(LOGITS)
    return -numpy.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


TARGETS = numpy.array([[2, 0], [1, 1]])
MASK = numpy.array([[1.0, 0.0], [1.0, 1.0]])


def test_the_reductions_mean_over_unmasked_positions_sum_and_none():
    nll = _per_position_nll(TARGETS)
    mean = nn.SoftmaxCrossEntropy().forward(LOGITS, TARGETS, mask=MASK)
    numpy.testing.assert_allclose(mean, (nll * MASK).sum() / 3, rtol=1e-14)
    total = nn.SoftmaxCrossEntropy("sum").forward(LOGITS, TARGETS, mask=MASK)
    numpy.testing.assert_allclose(total, (nll * MASK).sum(), rtol=1e-14)
    each = nn.SoftmaxCrossEntropy("none").forward(LOGITS, TARGETS, mask=MASK)
    numpy.testing.assert_allclose(each, nll * MASK, rtol=1e-14)
    unmasked = nn.SoftmaxCrossEntropy().forward(LOGITS, TARGETS)
    numpy.testing.assert_allclose(unmasked, nll.mean(), rtol=1e-14)
    one_hot = numpy.eye(3)[TARGETS]
    numpy.testing.assert_allclose(
        nn.SoftmaxCrossEntropy("none").forward(LOGITS, one_hot), nll, rtol=1e-14
    )


def test_a_fully_masked_mean_is_zero_with_zero_gradient_not_nan():
    loss = nn.SoftmaxCrossEntropy()
    assert loss.forward(LOGITS, TARGETS, mask=numpy.zeros((2, 2))) == 0.0
    grad_logits, grad_targets = loss.backward()
    numpy.testing.assert_array_equal(grad_logits, numpy.zeros_like(LOGITS))
    assert grad_targets is None


def test_the_gradient_is_probs_minus_one_hot_over_the_unmasked_count_times_the_upstream():
    loss = nn.SoftmaxCrossEntropy()
    loss.forward(LOGITS, TARGETS, mask=MASK)
    grad_logits, _ = loss.backward(2.0)
    expected = (nn.softmax(LOGITS) - numpy.eye(3)[TARGETS]) * (2.0 * MASK / 3)[..., None]
    numpy.testing.assert_allclose(grad_logits, expected, rtol=1e-14, atol=1e-16)
    per_position = nn.SoftmaxCrossEntropy("none")
    per_position.forward(LOGITS, TARGETS)
    upstream = numpy.array([[1.0, -2.0], [0.5, 3.0]])
    grad_logits, _ = per_position.backward(upstream)
    expected = (nn.softmax(LOGITS) - numpy.eye(3)[TARGETS]) * upstream[..., None]
    numpy.testing.assert_allclose(grad_logits, expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_soft_unnormalised_targets_pass_the_finite_difference_audit(reduction):
    # the audit case uses one-hot targets, whose sum is 1: here the targets' mass (1.7 on
    # average) is not, so a gradient that drops sum(targets) fails
    rng = numpy.random.default_rng(5)
    targets = rng.random((2, 3, 4))
    mask = numpy.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    logits = rng.standard_normal((2, 3, 4))
    case = Case(nn.SoftmaxCrossEntropy(reduction), (logits, targets), {"mask": mask})
    report = gradcheck.check_case("soft targets", case, rng)
    assert report.entries == 48 and report.max_rel_error < gradcheck.RTOL, report.as_dict()


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: nn.SoftmaxCrossEntropy("avg"),
            "expected reduction in ('mean', 'sum', 'none'), got 'avg'",
        ),
        (
            lambda: nn.SoftmaxCrossEntropy().forward(LOGITS, numpy.ones((2, 2, 4))),
            "expected float targets of shape (2, 2, 3), got (2, 2, 4)",
        ),
        (
            lambda: nn.SoftmaxCrossEntropy().forward(LOGITS, numpy.ones((2, 3), numpy.int64)),
            "expected integer targets of shape (2, 2), got (2, 3)",
        ),
        (
            lambda: nn.SoftmaxCrossEntropy().forward(LOGITS, TARGETS, mask=numpy.ones(2)),
            "expected mask of shape (2, 2), got (2,)",
        ),
        (
            lambda: nn.SoftmaxCrossEntropy().forward(LOGITS, TARGETS + 1),
            "expected token ids in [0, 3), got min 1, max 3",
        ),
        (
            lambda: nn.SoftmaxCrossEntropy().forward(TARGETS, TARGETS),
            "expected a floating-point array, got int64",
        ),
    ],
)
def test_wrong_reductions_shapes_ids_and_dtypes_are_refused_naming_the_loss(call, message):
    with pytest.raises(ValueError) as raised:
        call()
    assert str(raised.value) == f"SoftmaxCrossEntropy: {message}"


def test_rows_at_very_different_scales_are_each_shifted_by_their_own_max():
    # one max over the whole array would send the first row's exps to 0 and its logs to -inf
    logits = numpy.array([[0.0, 1.0], [1000.0, 1001.0]])
    expected = numpy.log(numpy.exp([0.0, 1.0]) / numpy.exp([0.0, 1.0]).sum())
    numpy.testing.assert_allclose(nn.log_softmax(logits), [expected, expected], rtol=1e-14)
    numpy.testing.assert_allclose(nn.softmax(logits), numpy.exp([expected, expected]), rtol=1e-14)


def test_one_unmasked_position_is_its_own_mean_and_backward_defaults_to_an_upstream_of_1():
    loss = nn.SoftmaxCrossEntropy()
    mask = numpy.array([[0.0, 0.0], [0.0, 1.0]])
    numpy.testing.assert_allclose(
        loss.forward(LOGITS, TARGETS, mask=mask), _per_position_nll(TARGETS)[1, 1], rtol=1e-14
    )
    grad_logits, _ = loss.backward()
    expected = (nn.softmax(LOGITS) - numpy.eye(3)[TARGETS]) * mask[..., None]
    numpy.testing.assert_allclose(grad_logits, expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("one_hot, masked", [(False, False), (True, False), (True, True)])
def test_float32_logits_and_targets_give_float32_losses_and_gradients(reduction, one_hot, masked):
    logits = LOGITS.astype(numpy.float32)
    targets = numpy.eye(3, dtype=numpy.float32)[TARGETS] if one_hot else TARGETS
    mask = MASK.astype(numpy.float32) if masked else None
    loss = nn.SoftmaxCrossEntropy(reduction)
    value = loss.forward(logits, targets, mask=mask)
    grads = loss.backward(numpy.ones(value.shape, numpy.float32))
    assert value.dtype == numpy.float32
    assert [grad.dtype for grad in grads if grad is not None] == [numpy.float32] * (1 + one_hot)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_integer_targets_without_a_mask_on_a_device_give_the_host_values(reduction):
    host = nn.SoftmaxCrossEntropy(reduction)
    expected = host.forward(LOGITS, TARGETS), host.backward(2.0)[0]
    with strict_counting():
        device = nn.SoftmaxCrossEntropy(reduction)
        value = device.forward(backend.asarray(LOGITS), backend.asarray(TARGETS))
        got = backend.to_numpy(value), backend.to_numpy(device.backward(2.0)[0])
    numpy.testing.assert_array_equal(got[0], expected[0])
    numpy.testing.assert_array_equal(got[1], expected[1])
