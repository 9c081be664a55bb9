"""warmup_decay: the learning rate at every step of each decay, written out from its formula."""

import math

import pytest

from npflows import optim


def _rates(schedule, steps):
    return [schedule(step) for step in range(steps)]


def test_linear_warmup_reaches_the_base_rate_at_its_last_step():
    rates = _rates(optim.warmup_decay(2.0, warmup_steps=4, decay="none"), 6)
    assert rates == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_cosine_decays_from_the_base_rate_to_min_ratio_at_total_steps_and_stays():
    schedule = optim.warmup_decay(1.0, warmup_steps=2, total_steps=6, min_ratio=0.1)
    expected = [0.5, 1.0] + [
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1, (step - 2) / 4))) for step in range(2, 9)
    ]
    assert _rates(schedule, 9) == pytest.approx(expected, rel=1e-15)
    assert schedule(4) == pytest.approx(0.55, rel=1e-15)  # halfway: the mean of 1 and 0.1
    assert schedule(6) == schedule(100) == pytest.approx(0.1, rel=1e-15)


def test_cosine_without_warmup_starts_at_the_base_rate():
    schedule = optim.warmup_decay(3.0, total_steps=4)
    assert _rates(schedule, 5) == pytest.approx(
        [3.0, 3.0 * 0.5 * (1 + math.sqrt(0.5)), 1.5, 3.0 * 0.5 * (1 - math.sqrt(0.5)), 0.0],
        rel=1e-15,
        abs=1e-15,
    )


def test_linear_decays_in_equal_steps_to_min_ratio():
    schedule = optim.warmup_decay(1.0, warmup_steps=1, total_steps=5, decay="linear", min_ratio=0.2)
    assert _rates(schedule, 7) == pytest.approx([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2], rel=1e-15)
    one_step = optim.warmup_decay(1.0, warmup_steps=1, total_steps=2, decay="linear")
    assert _rates(one_step, 3) == [1.0, 1.0, 0.0]  # a decay of one step ends at its step


def test_inverse_sqrt_keeps_the_base_rate_through_warmup_then_decays_as_one_over_sqrt_step():
    schedule = optim.warmup_decay(1.0, warmup_steps=4, decay="inverse_sqrt")
    assert _rates(schedule, 4) == [0.25, 0.5, 0.75, 1.0]
    assert schedule(15) == pytest.approx(0.5, rel=1e-15)  # sqrt(4 / 16)
    without_warmup = optim.warmup_decay(2.0, decay="inverse_sqrt")
    assert _rates(without_warmup, 4) == pytest.approx(
        [2.0, 2 / math.sqrt(2), 2 / math.sqrt(3), 1.0]
    )


def test_unknown_decay_or_a_decay_without_total_steps_is_refused():
    with pytest.raises(
        ValueError,
        match="^warmup_decay: expected decay in cosine/linear/inverse_sqrt/none, got 'step'$",
    ):
        optim.warmup_decay(1.0, decay="step")
    for decay in ("cosine", "linear"):
        with pytest.raises(ValueError, match=f"^warmup_decay: decay '{decay}' needs total_steps$"):
            optim.warmup_decay(1.0, decay=decay)
    assert optim.warmup_decay(1.0, decay="none")(10**6) == 1.0  # needs no total_steps
