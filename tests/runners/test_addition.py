"""runners/addition.py: (a + b) mod 10^D on digits, most significant first (section 4.2)."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runners import addition


def as_int(digits):
    return int("".join(str(digit) for digit in digits))


def as_digits(value, D):
    return [int(character) for character in str(value % 10**D).zfill(D)]


@given(D=st.integers(1, 25), seed=st.integers(0, 2**32 - 1))
def test_add_digits_equals_python_integer_addition_mod_10_to_the_d(D, seed):
    rng = numpy.random.default_rng(seed)
    a = rng.integers(0, 10, size=(20, D))
    b = rng.integers(0, 10, size=(20, D))
    total = addition.add_digits(a, b)
    assert total.dtype == numpy.int64 and total.shape == (20, D)
    for row in range(20):  # Python ints: exact at D = 25 where int64 would overflow
        assert total[row].tolist() == as_digits(as_int(a[row]) + as_int(b[row]), D)


@pytest.mark.parametrize("D", [1, 10, 20])
def test_carries_propagate_across_every_digit_and_the_last_carry_is_dropped(D):
    nines = numpy.full((1, D), 9)
    one = numpy.zeros((1, D), dtype=numpy.int64)
    one[0, -1] = 1
    numpy.testing.assert_array_equal(addition.add_digits(nines, one), numpy.zeros((1, D)))
    numpy.testing.assert_array_equal(addition.add_digits(nines, nines)[0], [9] * (D - 1) + [8])


def test_digits_are_most_significant_first():
    a = numpy.array([[0, 0, 5]])
    b = numpy.array([[0, 0, 7]])
    numpy.testing.assert_array_equal(addition.add_digits(a, b), [[0, 1, 2]])


@pytest.mark.parametrize("D", [10, 20])
def test_sample_returns_uniform_digit_operands_and_their_exact_sum(D):
    a, b, total = addition.sample(300, D, numpy.random.default_rng(D))
    for digits in (a, b, total):
        assert digits.shape == (300, D) and digits.dtype == numpy.int64
        assert digits.min() == 0 and digits.max() == 9  # 9000 draws: each digit value appears
    for row in range(300):
        assert total[row].tolist() == as_digits(as_int(a[row]) + as_int(b[row]), D)


def test_sample_is_deterministic_under_a_seed():
    first = addition.sample(50, 10, 3)
    second = addition.sample(50, 10, numpy.random.default_rng(3))
    for left, right in zip(first, second):
        numpy.testing.assert_array_equal(left, right)


def test_exact_match_rate_and_digit_accuracy_count_matches():
    target = numpy.array([[1, 2, 3], [4, 5, 6]])
    predicted = numpy.array([[1, 2, 3], [4, 0, 6]])
    assert addition.exact_match_rate(predicted, target) == 0.5
    assert addition.digit_accuracy(predicted, target) == 5 / 6


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: addition.sample(5, 0, 0), "addition.sample: expected an integer D >= 1"),
        (
            lambda: addition.add_digits(numpy.array([[10]]), numpy.array([[0]])),
            "addition.add_digits: expected a digits in [0, 10)",
        ),
        (
            lambda: addition.add_digits(numpy.zeros((2, 3), int), numpy.zeros((2, 4), int)),
            "addition.add_digits: expected a and b of the same shape",
        ),
        (
            lambda: addition.exact_match_rate(numpy.zeros((2, 3), int), numpy.zeros((3, 3), int)),
            "addition.exact_match_rate: expected equal",
        ),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_function(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
