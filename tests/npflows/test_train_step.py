"""What one training step hands the optimiser: the clipped gradient, the schedule's rate for
that step; and the random streams each rank draws from."""

import io

import numpy
import pytest

from npflows import backend, optim, train
from tests.fixtures.tiny_experiment import TinyClassifier


@pytest.fixture(autouse=True)
def _keep_backend_state():
    saved = dict(backend._state)
    yield
    backend._state.update(saved)


class RecordingSGD(optim.SGD):
    """SGD that records, at each step, the learning rate it is given and the gradient's norm."""

    def step(self, lr=None):
        self.seen.append((lr, float(optim.global_norm(self.flat))))
        super().step(lr)


class RecordingClassifier(TinyClassifier):
    def build_optimizer(self, flat):
        optimizer = RecordingSGD(flat, lr=0.05)
        optimizer.seen = type(self).seen = []
        return optimizer


def _seen(tmp_path, **settings):
    config = {
        "experiment": "tests.fixtures.tiny_experiment:TinyClassifier",
        "steps": 6,
        "batch_size": 16,
        "seed": 3,
        "out": str(tmp_path),
        "dtype": "float64",
        "checkpoint_every": 0,
        **settings,
    }
    train.train(RecordingClassifier, config, stream=io.StringIO())
    return RecordingClassifier.seen


def test_every_step_clips_the_gradient_to_max_grad_norm_before_the_update(tmp_path):
    unclipped = _seen(tmp_path / "free")
    assert min(norm for _, norm in unclipped) > 0.01  # so that clipping to 0.01 acts every step
    clipped = _seen(tmp_path / "clipped", max_grad_norm=0.01)
    # float64: the clipped norm is 0.01 * norm / (norm + 1e-12), within 1e-12 relative of 0.01
    numpy.testing.assert_allclose([norm for _, norm in clipped], 0.01, rtol=1e-10)


def test_step_k_is_taken_with_the_schedules_rate_for_step_k(tmp_path):
    seen = _seen(tmp_path, cosine=True, lr=0.2)
    schedule = optim.warmup_decay(0.2, total_steps=6)
    assert [lr for lr, _ in seen] == [schedule(step) for step in range(6)]
    assert seen[0][0] == 0.2 and seen[-1][0] < 0.02  # the cosine's start and its tail


def test_ranks_share_the_initialisation_stream_and_draw_their_own_rank_streams():
    (init_0, rank_0), (init_1, rank_1) = train.random_streams(9, 0), train.random_streams(9, 1)
    assert init_0.random() == init_1.random()
    first, second = rank_0.random(4), rank_1.random(4)
    assert not numpy.intersect1d(first, second).size
    expected = numpy.random.default_rng(numpy.random.SeedSequence(9, spawn_key=(1, 1)))
    numpy.testing.assert_array_equal(second, expected.random(4))


class ModeRecordingClassifier(TinyClassifier):
    """Records whether the model is in training mode at each step (dropout depends on it)."""

    def loss_and_backward(self, model, batch, rng):
        type(self).modes.append(model.training)
        return super().loss_and_backward(model, batch, rng)


def test_the_model_trains_in_training_mode_after_every_evaluation(tmp_path):
    ModeRecordingClassifier.modes = []
    config = {"experiment": "x", "steps": 5, "batch_size": 8, "out": str(tmp_path)}
    train.train(ModeRecordingClassifier, {**config, "eval_every": 1}, stream=io.StringIO())
    assert ModeRecordingClassifier.modes == [True] * 5
