"""What the training loop hands an experiment and what it records, pinned value by value: the
rows and dtype of every batch (tuple, dict, one array or streamed), named loss terms, the model
`restore` rebuilds, resume on another world size, every field of the stop messages and of
result.json. Written against the survivors of mutation testing (docs/reliability.md)."""

import copy
import dataclasses
import io
import json
import sys
import types

import numpy
import pytest

from npflows import backend, checkpoint, distributed, train
from npflows.checkpoint import CheckpointError
from npflows.train import ConfigError, NonFiniteError
from tests.fixtures.tiny_experiment import FEATURES, TinyClassifier
from tests.npflows.test_train import EXPERIMENT, _keep_backend_state  # noqa: F401  (autouse)
from tests.npflows.test_world_collectives import StandInComm, StandInCupy

SEED, BATCH, EXAMPLES = 5, 16, 200


class Recording(TinyClassifier):
    """The fixture, recording each batch (on the host), the rank stream's state when the step
    starts, and its evaluations; the newest instance is `Recording.last`."""

    last = None

    def __init__(self, config):
        super().__init__(config)
        self.batches, self.rank_states, self.evaluations = [], [], 0
        type(self).last = self

    def loss_and_backward(self, model, batch, rng):
        self.batches.append(_host(batch))
        self.rank_states.append(copy.deepcopy(rng.bit_generator.state))
        return super().loss_and_backward(model, batch, rng)

    def evaluate(self, model):
        self.evaluations += 1
        return super().evaluate(model)


def _host(batch):
    if isinstance(batch, dict):
        return {key: backend.to_numpy(value) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return [backend.to_numpy(value) for value in batch]
    return backend.to_numpy(batch)


def _run(out, experiment=Recording, resume=False, stream=None, **overrides):
    config = {
        "experiment": EXPERIMENT,
        "steps": 3,
        "batch_size": BATCH,
        "seed": SEED,
        "out": str(out),
        "dtype": "float64",
        "log_every": 1,
        "eval_every": 0,
        "checkpoint_every": 0,
        **overrides,
    }
    return train.train(experiment, config, resume=resume, stream=stream or io.StringIO())


def _rows(step):
    return distributed.global_batch_indices(SEED, EXAMPLES, step * BATCH, BATCH)


def test_each_step_trains_on_its_global_batchs_rows_with_floats_in_the_training_dtype(tmp_path):
    class Float32Data(Recording):
        @property
        def train_examples(self):
            return self.features.astype(numpy.float32), self.labels

    _run(tmp_path)
    features, labels = Recording.last.features, Recording.last.labels
    assert len(Recording.last.batches) == 3
    for step, (batch_features, batch_labels) in enumerate(Recording.last.batches):
        numpy.testing.assert_array_equal(batch_features, features[_rows(step)])
        numpy.testing.assert_array_equal(batch_labels, labels[_rows(step)])
    _run(tmp_path / "float32-data", Float32Data)
    batch_features, batch_labels = Float32Data.last.batches[0]
    assert batch_features.dtype == numpy.float64 and batch_labels.dtype == numpy.int64
    expected = features[_rows(0)].astype(numpy.float32).astype(numpy.float64)
    numpy.testing.assert_array_equal(batch_features, expected)


def test_examples_as_a_dict_or_as_one_array_are_indexed_row_by_row(tmp_path):
    class Named(Recording):
        @property
        def train_examples(self):
            return {"features": self.features, "labels": self.labels}

        def loss_and_backward(self, model, batch, rng):
            self.batches.append(_host(batch))
            return TinyClassifier.loss_and_backward(
                self, model, (batch["features"], batch["labels"]), rng
            )

    class RowIds(Recording):
        @property
        def train_examples(self):
            return numpy.arange(EXAMPLES)

        def loss_and_backward(self, model, batch, rng):
            ids = backend.to_numpy(batch)
            self.batches.append(ids)
            features = backend.asarray(self.features[ids], dtype=backend.default_dtype())
            pair = (features, backend.asarray(self.labels[ids]))
            return TinyClassifier.loss_and_backward(self, model, pair, rng)

    _run(tmp_path / "named", Named)
    for step, batch in enumerate(Named.last.batches):
        numpy.testing.assert_array_equal(batch["features"], Named.last.features[_rows(step)])
        numpy.testing.assert_array_equal(batch["labels"], Named.last.labels[_rows(step)])
    _run(tmp_path / "ids", RowIds)
    assert [batch.tolist() for batch in RowIds.last.batches] == [
        _rows(step).tolist() for step in range(3)
    ]


def test_a_streaming_experiment_is_asked_for_each_steps_global_batch(tmp_path):
    class Streamed(Recording):
        streams_examples = True

        def __init__(self, config):
            super().__init__(config)
            self.requests = []

        def streamed_examples(self, step, global_batch):
            self.requests.append((step, global_batch))
            rows = (step * global_batch + numpy.arange(global_batch)) % EXAMPLES
            return self.features[rows], self.labels[rows]

    _run(tmp_path, Streamed)
    assert Streamed.last.requests == [(0, BATCH), (1, BATCH), (2, BATCH)]
    for step, (features, labels) in enumerate(Streamed.last.batches):
        rows = step * BATCH + numpy.arange(BATCH)
        numpy.testing.assert_array_equal(features, Streamed.last.features[rows])
        numpy.testing.assert_array_equal(labels, Streamed.last.labels[rows])


def test_named_loss_terms_are_each_averaged_into_the_metrics(tmp_path):
    class Terms(Recording):
        def loss_and_backward(self, model, batch, rng):
            loss = super().loss_and_backward(model, batch, rng)
            return {"loss": loss, "half": loss * 0.5}

    _run(tmp_path, Terms, steps=4, log_every=2)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    for line in lines:
        assert line["half"] == line["loss"] * 0.5  # halving is exact in binary


def test_restore_rebuilds_the_model_in_the_checkpoints_dtype_or_the_one_asked(tmp_path):
    _run(tmp_path, steps=2, checkpoint_every=2)
    path = tmp_path / "checkpoint.h5"
    state = checkpoint.load(path)
    trained = state.params
    _, model = train.restore(TinyClassifier, state, path)
    restored = dict(model.state_dict())
    assert backend.default_dtype() == numpy.float64
    assert all(restored[name].dtype == numpy.float64 for name in trained)
    assert all(numpy.array_equal(restored[name], trained[name]) for name in trained)
    _, model = train.restore(TinyClassifier, state, path, dtype="float32")
    assert {value.dtype for value in model.state_dict().values()} == {numpy.dtype(numpy.float32)}
    older = dataclasses.replace(
        state, config={k: v for k, v in state.config.items() if k != "dtype"}
    )  # a checkpoint written before the dtype was recorded: float32, the default then
    _, model = train.restore(TinyClassifier, older, path)
    assert {value.dtype for value in model.state_dict().values()} == {numpy.dtype(numpy.float32)}
    _, model = train.restore(TinyClassifier, state, path, device="strict")
    assert {backend.device_of(p.data) for p in model.parameters()} == {"strict"}


def test_restore_rebuilds_random_structure_from_the_training_runs_init_stream(tmp_path):
    # a model may hold random choices that are not parameters (an order, a mask): the
    # checkpoint does not store them, so restore must draw them from the same stream
    class Shuffled(Recording):
        def build_model(self, rng):
            model = super().build_model(rng)
            self.order = rng.permutation(FEATURES)
            return model

    _run(tmp_path, Shuffled, steps=1, checkpoint_every=1)
    trained_order = Shuffled.last.order
    path = tmp_path / "checkpoint.h5"
    experiment, _ = train.restore(Shuffled, checkpoint.load(path), path)
    assert experiment is Shuffled.last and experiment.order.tolist() == trained_order.tolist()


def test_a_checkpoint_that_does_not_fit_or_whose_data_changed_is_refused_naming_it(
    tmp_path, monkeypatch
):
    _run(tmp_path, steps=2, checkpoint_every=2)
    path = tmp_path / "checkpoint.h5"
    state = checkpoint.load(path)
    renamed = dataclasses.replace(state, params={f"x{k}": v for k, v in state.params.items()})
    with pytest.raises(CheckpointError) as raised:
        train.restore(TinyClassifier, renamed, path)
    assert str(raised.value).startswith(
        f"checkpoint: {path} does not fit this experiment's model: "
    )
    monkeypatch.setattr(checkpoint, "load", lambda _: renamed)
    with pytest.raises(CheckpointError) as raised:
        _run(tmp_path, resume=True, steps=4)
    assert str(raised.value).startswith(
        f"checkpoint: {path} does not fit this experiment's model: "
    )
    recorded = {**state.data_fingerprint, "blake2b": "0" * 128}
    with pytest.raises(ConfigError, match=f"the data differ from those {path} was trained on"):
        train.restore(TinyClassifier, dataclasses.replace(state, data_fingerprint=recorded), path)


def test_an_optimiser_state_without_its_type_is_a_checkpoint_error(tmp_path, monkeypatch):
    _run(tmp_path, steps=2, checkpoint_every=2)
    path, state = tmp_path / "checkpoint.h5", checkpoint.load(tmp_path / "checkpoint.h5")
    del state.optimizer["type"]
    monkeypatch.setattr(checkpoint, "load", lambda _: state)
    with pytest.raises(CheckpointError) as raised:
        _run(tmp_path, resume=True, steps=4)
    assert str(raised.value) == f"checkpoint: {path} holds another optimiser's state"


def test_a_resume_on_another_number_of_ranks_draws_fresh_streams_from_seed_rank_and_step(
    tmp_path, monkeypatch
):
    _run(tmp_path, steps=4, checkpoint_every=4, input_noise=0.1)
    saved = checkpoint.load(tmp_path / "checkpoint.h5")
    _run(tmp_path, resume=True, steps=5, input_noise=0.1)  # the same world size: the saved stream
    assert Recording.last.rank_states[0] == saved.rng_states[0]
    two_ranks = dataclasses.replace(saved, rng_states=saved.rng_states * 2)
    monkeypatch.setattr(checkpoint, "load", lambda _: two_ranks)
    _run(tmp_path, resume=True, steps=5, input_noise=0.1)
    fresh = numpy.random.default_rng(numpy.random.SeedSequence(SEED, spawn_key=(1, 0, 4)))
    assert Recording.last.rank_states[0] == fresh.bit_generator.state


class FlushLog(io.StringIO):
    """A stream that remembers what it held at each flush."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        self.flushed.append(self.getvalue())
        super().flush()


def test_the_resume_line_is_flushed_as_soon_as_it_is_printed(tmp_path):
    _run(tmp_path, steps=2, checkpoint_every=2)
    stream = FlushLog()
    _run(tmp_path, resume=True, stream=stream, steps=4)
    line = "train: resuming at step 2, training to step 4\n"
    assert line in stream.getvalue()
    assert any(held.endswith(line) for held in stream.flushed)


def test_resume_lists_every_changed_setting_and_any_the_checkpoint_lacks(tmp_path):
    _run(tmp_path, steps=2, checkpoint_every=2, hidden=16, lr=0.01)
    with pytest.raises(ConfigError) as raised:
        _run(tmp_path, resume=True, steps=4, hidden=8, lr=0.02)
    assert str(raised.value) == (
        "train: --resume must keep the run's settings; changed hidden: 16 -> 8, lr: 0.01 -> 0.02"
    )
    with pytest.raises(ConfigError) as raised:
        _run(tmp_path, resume=True, steps=4, hidden=16, lr=0.01, note="x")
    assert str(raised.value).endswith("changed note: None -> 'x'")


def test_a_schedule_horizon_given_again_unchanged_is_named_as_given(tmp_path):
    _run(tmp_path, steps=10, checkpoint_every=10, schedule_steps=10, cosine=True, lr=0.05)
    stream = io.StringIO()
    _run(tmp_path, resume=True, stream=stream, steps=12, schedule_steps=10, cosine=True, lr=0.05)
    assert "the learning-rate schedule's horizon is 10 steps (--schedule-steps): lr " in (
        stream.getvalue()
    )


def _stop_message(out, **overrides):
    with pytest.raises(NonFiniteError) as raised:
        _run(out, steps=8, fail_rank=0, **overrides)
    return str(raised.value)


def test_a_stop_tells_the_step_the_mean_loss_the_count_and_the_checkpoint_kept(tmp_path):
    tail = "Lower the learning rate, or clip the gradient norm"
    message = _stop_message(tmp_path / "loss", poison_at_step=7, checkpoint_every=5)
    assert message == (
        "train: stopped in step 7: a loss, gradient or parameter is NaN or infinite (mean loss "
        "nan; 0 non-finite parameter and optimiser-state entries over 1 rank(s)); the last "
        f"checkpoint, {tmp_path / 'loss' / 'checkpoint.h5'} at step 5, is kept. {tail}"
    )
    message = _stop_message(
        tmp_path / "parameter", poison_at_step=3, poison="parameter", checkpoint_every=5
    )
    loss = json.loads((tmp_path / "parameter" / "metrics.jsonl").read_text().splitlines()[-1])
    assert loss["step"] == 2
    prefix = (
        "train: stopped in step 3: a loss, gradient or parameter is NaN or infinite (mean loss "
    )
    assert message.startswith(prefix)
    assert float(message[len(prefix) :].split(";")[0]) > 0  # this step's loss, finite
    assert message.endswith(
        "; 1 non-finite parameter and optimiser-state entries over 1 rank(s)); "
        f"no checkpoint was written. {tail}"
    )


def test_the_stop_message_means_the_loss_and_sums_the_non_finite_counts_over_ranks(monkeypatch):
    # rank 1 of 2 (the stand-in communicator, no MPI) contributes loss 3 and 2 non-finite entries
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=StandInComm))
    state = numpy.array([1.0, numpy.nan])
    run = types.SimpleNamespace(
        flat=types.SimpleNamespace(data=state),
        _state_arrays=lambda: [state],
        world=distributed.World(StandInComm(rank=0, size=2, peers={1: numpy.array([3.0, 2.0])})),
        directory=types.SimpleNamespace(checkpoint="OUT/checkpoint.h5"),
        saved_step=6,
    )
    error = train._Run._non_finite_error(run, numpy.float64(1.0), "stopped in step 7")
    assert str(error).startswith(
        "train: stopped in step 7: a loss, gradient or parameter is NaN or infinite (mean loss 2; "
        "3 non-finite parameter and optimiser-state entries over 2 rank(s)); the last checkpoint, "
        "OUT/checkpoint.h5 at step 6, is kept."
    )


def test_a_non_finite_optimiser_state_is_not_saved_over_the_last_checkpoint(tmp_path):
    class PoisonedState(Recording):
        def build_optimizer(self, flat):
            optimizer = super().build_optimizer(flat)
            update = optimizer.step

            def step(lr=None):
                update(lr)
                if optimizer.steps == 8:  # after step 8's update: parameters stay finite
                    optimizer.m[0] = numpy.nan

            optimizer.step = step
            return optimizer

    with pytest.raises(NonFiniteError) as raised:
        _run(tmp_path, PoisonedState, steps=8, checkpoint_every=4)
    assert str(raised.value).startswith(
        "train: not saving the checkpoint of step 8: a loss, gradient or parameter is NaN or "
        "infinite (1 non-finite parameter and optimiser-state entries over 1 rank(s)); the last "
        f"checkpoint, {tmp_path / 'checkpoint.h5'} at step 4, is kept."
    )
    assert checkpoint.load(tmp_path / "checkpoint.h5").step == 4


def test_config_json_records_the_data_fingerprint_the_checkpoint_holds(tmp_path):
    _run(tmp_path, steps=2, checkpoint_every=2)
    recorded = json.loads((tmp_path / "config.json").read_text())["data_fingerprint"]
    held = checkpoint.load(tmp_path / "checkpoint.h5").data_fingerprint
    assert recorded == json.loads(json.dumps(held)) and recorded["bytes"] > 0


def test_each_evaluation_step_evaluates_once_and_a_finished_run_once_more_only(tmp_path):
    result = _run(tmp_path, steps=6, eval_every=3, checkpoint_every=6)
    assert Recording.last.evaluations == 2  # steps 3 and 6; the result reuses step 6's
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["eval"] == {"loss": last["eval_loss"], "accuracy": last["eval_accuracy"]}
    again = _run(tmp_path, resume=True, steps=6, eval_every=3)  # nothing to train: evaluated once
    assert Recording.last.evaluations == 1 and again["eval"] == result["eval"]


def test_a_finished_run_keeps_the_loss_of_a_result_at_its_own_step_only(tmp_path):
    _run(tmp_path, steps=4, checkpoint_every=4)
    result = json.loads((tmp_path / "result.json").read_text())
    assert _run(tmp_path, resume=True, steps=4)["loss"] == result["loss"] is not None
    (tmp_path / "result.json").write_text(json.dumps({**result, "step": 3}))
    assert _run(tmp_path, resume=True, steps=4)["loss"] is None


def test_result_json_holds_its_fields_and_the_throughput_of_the_steps_trained(
    tmp_path, monkeypatch
):
    ticks = iter(range(10**6))  # a clock of 1 ms ticks: the run takes well under a second
    monkeypatch.setattr(
        train, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks) / 1e3)
    )
    result = _run(tmp_path, steps=4)
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert set(result) == {
        "experiment",
        "step",
        "world_size",
        "transport",
        "loss",
        "eval",
        "wall_seconds",
        "examples_per_second",
    }
    assert result["experiment"] == EXPERIMENT and result["step"] == 4
    assert 0 < result["wall_seconds"] < 1
    assert result["examples_per_second"] == 4 * BATCH / result["wall_seconds"]


def test_the_streams_are_the_seeds_children_0_for_initialisation_and_1_rank_per_rank():
    # docs/distributed.md: spawn_key (0,) initialises (every rank the same), (1, rank) is the
    # rank's own stream; neither is the plain default_rng(seed) an experiment may use for data
    init, own = train.random_streams(SEED, 3)
    expected = [numpy.random.SeedSequence(SEED, spawn_key=key) for key in ((0,), (1, 3))]
    assert init.bit_generator.state == numpy.random.default_rng(expected[0]).bit_generator.state
    assert own.bit_generator.state == numpy.random.default_rng(expected[1]).bit_generator.state
    assert init.random() != numpy.random.default_rng(SEED).random()


@pytest.fixture
def two_ranks(monkeypatch):
    """Rank 1 of 2 on the stand-in communicator; MPI would call itself CUDA-aware."""
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=StandInComm))
    monkeypatch.setattr(distributed, "cuda_aware_mpi", lambda: True)
    return distributed.World(StandInComm(rank=1, size=2))


def test_setting_up_a_gpu_gives_rank_r_its_gpu_and_buffers_the_transport_mpi_offers(
    two_ranks, monkeypatch
):
    cupy = StandInCupy(2)
    monkeypatch.setattr(backend, "_cupy", lambda: cupy)
    train.setup_device("gpu", "float64", two_ranks)
    assert cupy.used == [1] and two_ranks.transport == "cuda-aware"
    assert backend.device() == "gpu" and backend.default_dtype() == numpy.float64


def test_the_strict_stand_in_moves_buffers_through_host_memory_and_the_cpu_directly(two_ranks):
    # the stand-in plays a GPU without CUDA-aware MPI, whatever MPI says
    train.setup_device("strict", "float32", two_ranks)
    assert two_ranks.transport == "pinned-host" and backend.device() == "strict"
    on_cpu = distributed.World(StandInComm(rank=1, size=2))
    train.setup_device("cpu", "float32", on_cpu)
    assert on_cpu.transport == "host" and backend.device() == "cpu"


def test_a_float32_run_builds_float32_parameters(tmp_path):
    _run(tmp_path, steps=1, dtype="float32", checkpoint_every=1)
    params = checkpoint.load(tmp_path / "checkpoint.h5").params
    assert {value.dtype for value in params.values()} == {numpy.dtype(numpy.float32)}


def test_initialise_gets_the_model_it_trains_and_the_optimiser_its_parameter_names(tmp_path):
    class Seen(Recording):
        def initialise(self, model):
            self.initialised = model

        def build_optimizer(self, flat):
            self.names = flat.names
            return super().build_optimizer(flat)

    _run(tmp_path, Seen, steps=1)
    model = Seen.last.initialised
    assert isinstance(model, type(Seen.last.build_model(numpy.random.default_rng(0))))
    assert Seen.last.names == [name for name, _ in model.named_parameters()]
    assert Seen.last.names == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]


def test_an_optimiser_not_over_the_given_parameters_is_refused_naming_the_experiment(tmp_path):
    class Detached(Recording):
        def build_optimizer(self, flat):
            return types.SimpleNamespace(step=lambda lr=None: None)  # no .flat at all

    with pytest.raises(ConfigError) as raised:
        _run(tmp_path, Detached)
    assert str(raised.value) == (
        "Detached.build_optimizer: expected an optimiser over the FlatParameters it was given "
        "(its .flat), got another"
    )


def test_one_training_example_is_enough_and_none_is_refused_naming_the_experiment(tmp_path):
    class Sized(Recording):
        @property
        def train_examples(self):
            return self.features[: self.config["count"]], self.labels[: self.config["count"]]

    _run(tmp_path / "one", Sized, count=1, batch_size=1)
    assert [batch[1].tolist() for batch in Sized.last.batches] == [
        Sized.last.labels[:1].tolist()
    ] * 3
    with pytest.raises(ConfigError) as raised:
        _run(tmp_path / "none", Sized, count=0, batch_size=1)
    assert str(raised.value) == "Sized.train_examples: expected at least one example, got 0"


def test_a_fresh_run_into_earlier_records_is_told_exactly_what_it_found(tmp_path):
    _run(tmp_path / "checkpointed", steps=1, checkpoint_every=1)
    with pytest.raises(ConfigError) as raised:
        _run(tmp_path / "checkpointed", steps=1)
    checkpointed = tmp_path / "checkpointed" / "checkpoint.h5"
    assert str(raised.value) == (
        f"train: {checkpointed} exists; pass --resume to continue that run or choose another --out"
    )
    records = tmp_path / "records"  # a run killed before its first checkpoint, say
    records.mkdir()
    (records / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    (records / "result.json").write_text('{"step": 1}')
    with pytest.raises(ConfigError) as raised:
        _run(tmp_path / "records", steps=1)
    assert str(raised.value) == (
        f"train: {records} holds an earlier run's records (result.json and metrics.jsonl) and no "
        "checkpoint to --resume from; choose another --out (or move them away)"
    )


def test_resume_refuses_changed_data_unless_told_to_allow_them(tmp_path, monkeypatch):
    _run(tmp_path, steps=2, checkpoint_every=2)
    state = checkpoint.load(tmp_path / "checkpoint.h5")
    recorded = {**state.data_fingerprint, "blake2b": "0" * 128}
    monkeypatch.setattr(
        checkpoint, "load", lambda _: dataclasses.replace(state, data_fingerprint=recorded)
    )
    with pytest.raises(ConfigError, match="the data differ from those"):
        _run(tmp_path, resume=True, steps=4)


class Timed(Recording):
    """On a fake clock (`Timed.now`, from 100 s): each training step takes 0.25 s, each
    evaluation 10 s and returns one metric; the losses returned are kept."""

    now = 100.0

    def __init__(self, config):
        super().__init__(config)
        self.losses = []

    def loss_and_backward(self, model, batch, rng):
        type(self).now += 0.25
        loss = super().loss_and_backward(model, batch, rng)
        self.losses.append(float(backend.to_numpy(loss)))
        return loss

    def evaluate(self, model):
        type(self).now += 10.0
        return {"loss": super().evaluate(model)["loss"]}


@pytest.fixture
def fake_clock(monkeypatch):
    monkeypatch.setattr(Timed, "now", 100.0)
    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: Timed.now))


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_metrics_lines_time_training_apart_from_evaluation(tmp_path, fake_clock):
    result = _run(tmp_path, Timed, steps=4, log_every=2, eval_every=2)
    first, second = _metrics(tmp_path)
    losses = Timed.last.losses
    assert first["loss"] == (losses[0] + losses[1]) / 2 and second["loss"] == (
        (losses[2] + losses[3]) / 2
    )
    # 2 steps of 16 examples in 0.5 s of training each time; the 10 s evaluations left out
    assert first["examples_per_second"] == second["examples_per_second"] == 64.0
    assert (first["wall_seconds"], first["train_seconds"]) == (10.5, 0.5)
    assert (second["wall_seconds"], second["train_seconds"]) == (21.0, 1.0)
    assert result["wall_seconds"] == 21.0 and result["examples_per_second"] == 64 / 21.0


def test_an_evaluation_alone_makes_a_metrics_line(tmp_path, fake_clock):
    _run(tmp_path, Timed, steps=4, log_every=4, eval_every=2)
    first, second = _metrics(tmp_path)
    assert first == {
        "step": 2,
        "eval_loss": first["eval_loss"],
        "wall_seconds": 10.5,
        "train_seconds": 0.5,
    }
    assert second["step"] == 4 and second["examples_per_second"] == 4 * BATCH / 1.0


@pytest.fixture
def rank_1_of_2(monkeypatch):
    """train() as rank 1 of 2 in this process: rank 0 is the stand-in communicator, which
    contributes zeros to every sum and broadcast; the ranks' consistency check is skipped."""
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=StandInComm))
    world = distributed.World(StandInComm(rank=1, size=2, peers={0: 0.0}))
    monkeypatch.setattr(world, "check_consistent", lambda array, step: None)
    monkeypatch.setattr(distributed, "init", lambda *args, **kwargs: world)
    monkeypatch.setattr(distributed, "ABORT_GRACE_SECONDS", 0.0)
    return world


def test_a_rank_other_than_0_trains_and_returns_nothing_and_writes_nothing(tmp_path, rank_1_of_2):
    stream = io.StringIO()
    assert _run(tmp_path / "out", stream=stream, steps=2, checkpoint_every=1, eval_every=1) is None
    assert len(Recording.last.batches) == 2 and Recording.last.evaluations == 0
    assert not (tmp_path / "out").exists() and stream.getvalue() == ""


def test_a_user_error_on_one_rank_ends_the_job_with_one_line_and_no_traceback(
    tmp_path, rank_1_of_2, capsys
):
    class Detached(Recording):
        def build_optimizer(self, flat):
            return types.SimpleNamespace()

    with pytest.raises(SystemExit) as raised:
        _run(tmp_path, Detached)
    assert raised.value.code == 1 and rank_1_of_2.comm.calls[-1] == ("Abort", 1)
    assert capsys.readouterr().err == (
        "npflows: rank 1 of 2 failed: ConfigError: Detached.build_optimizer: expected an optimiser "
        "over the FlatParameters it was given (its .flat), got another\n"
    )
