"""What a run refuses and records around a checkpoint: the optimiser it resumes, the message
for a directory that holds a run, the throughput of a resumed run that trains nothing."""

import io

import pytest

from npflows import backend, checkpoint, optim, train
from tests.fixtures.tiny_experiment import TinyClassifier


@pytest.fixture(autouse=True)
def _keep_backend_state():
    saved = dict(backend._state)
    yield
    backend._state.update(saved)


class SGDClassifier(TinyClassifier):
    def build_optimizer(self, flat):
        return optim.SGD(flat, lr=0.05)


def _run(experiment, out, resume=False, steps=4):
    config = {
        "experiment": "tests.fixtures.tiny_experiment:TinyClassifier",
        "steps": steps,
        "batch_size": 8,
        "out": str(out),
        "dtype": "float64",
    }
    return train.train(experiment, config, resume=resume, stream=io.StringIO())


def test_resuming_with_another_optimiser_is_refused_naming_the_checkpoint(tmp_path):
    _run(TinyClassifier, tmp_path)  # Adam
    with pytest.raises(
        checkpoint.CheckpointError,
        match=f"^checkpoint: {tmp_path / 'checkpoint.h5'} holds another optimiser's state$",
    ):
        _run(SGDClassifier, tmp_path, resume=True, steps=8)


def test_a_fresh_run_into_a_run_with_a_checkpoint_is_told_to_resume(tmp_path):
    _run(TinyClassifier, tmp_path)
    with pytest.raises(
        train.ConfigError,
        match=f"^train: {tmp_path / 'checkpoint.h5'} exists; pass --resume to continue that run",
    ):
        _run(TinyClassifier, tmp_path)


def test_a_resumed_run_that_trains_nothing_reports_no_throughput(tmp_path):
    first = _run(TinyClassifier, tmp_path)
    again = _run(TinyClassifier, tmp_path, resume=True)
    assert first["examples_per_second"] > 0
    assert (again["step"], again["examples_per_second"]) == (4, 0.0)
    assert (again["world_size"], again["transport"]) == (1, "none")
