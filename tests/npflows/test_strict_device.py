"""The strict CPU stand-in for CuPy (NPFLOWS_DEVICE=strict): what it refuses, what it counts, and
the engine's device discipline checked under it (the audit, clear device errors, deferred checks)."""

import json

import numpy
import pytest

import layers
from npflows import backend, gradcheck, nn, strict_device
from tests.fixtures.devices import on_device, strict_counting


def test_host_operands_are_refused_like_cupy_refuses_them():
    with strict_counting():
        device = backend.asarray(numpy.arange(6.0))
        host = numpy.ones(6)
        for mix in (
            lambda: device + host,
            lambda: host * device,
            lambda: numpy.concatenate([device, host]),
            lambda: backend.xp().where(device > 2, host, device),
            lambda: backend.xp().exp(host),
        ):
            with pytest.raises(TypeError, match=r"NumPy \(host\) array of shape \(6,\)"):
                mix()
        with pytest.raises(TypeError, match="assignment into a device slice"):
            device[:3] = host[:3]
        device[:3] = 7.0  # a Python scalar is no host array
        assert backend.to_numpy(device).tolist() == [7.0, 7.0, 7.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("convert", [numpy.asarray, float, int, bool, lambda x: x.item()])
def test_implicit_host_copies_are_refused(convert):
    with strict_counting():
        scalar = backend.asarray(numpy.array([2.5])).sum()
        with pytest.raises((TypeError, AttributeError), match="strict device"):
            convert(scalar)
        assert backend.to_host_scalar(scalar) == 2.5  # the explicit, counted way


def test_syncs_and_uploads_are_counted_by_call_site():
    with strict_counting() as counts:
        device = backend.asarray(numpy.arange(5))
        picked = device[device > 2]  # a boolean mask: the host waits for its count
        total = backend.to_host_scalar(picked.sum())  # a device-to-host read
        before = counts.operations
        device + 1
    lines = open(__file__).read().splitlines()

    def source(sites):
        return sorted(lines[int(site.split(":")[1]) - 1].strip() for site in sites)

    assert (
        source(counts.uploads) == ["device = backend.asarray(numpy.arange(5))"]
        and sum(counts.uploads.values()) == 1
    )
    assert source(counts.syncs) == [
        "picked = device[device > 2]  # a boolean mask: the host waits for its count",
        "total = backend.to_host_scalar(picked.sum())  # a device-to-host read",
    ]
    assert all(site.startswith("tests/npflows/test_strict_device.py:") for site in counts.syncs)
    assert total == 7 and counts.operations == before + 1


def test_reductions_return_device_arrays_not_host_scalars():
    with strict_counting():
        total = backend.asarray(numpy.arange(4.0)).sum()
        assert backend.on_device(total) and total.shape == ()


def test_gradient_audit_passes_on_the_stand_in_device():

    with strict_counting():
        reports = gradcheck.run_all()
    failed = {
        report.name: report.error or report.max_rel_error
        for report in reports
        if not report.passed()
    }
    assert len(reports) == len(gradcheck.CASES) and failed == {}


def test_a_case_that_raises_is_reported_failed_and_the_audit_goes_on():
    def broken(rng):
        raise RuntimeError("cannot build")

    cases = {"Broken": broken, "Dense": gradcheck.CASES.get("Dense") or _dense_case}
    reports = gradcheck.run_all(cases=cases)
    assert [report.name for report in reports] == ["Broken", "Dense"]
    assert reports[0].error == "RuntimeError: cannot build" and not reports[0].passed()
    assert reports[1].passed() and reports[1].entries > 0
    assert "ERROR RuntimeError: cannot build" in gradcheck.format_table(reports)


def _dense_case(rng):
    return gradcheck.Case(
        nn.Dense(3, 2, rng=rng, dtype=numpy.float64), (rng.standard_normal((2, 3)),)
    )


@pytest.mark.parametrize(
    "build, host_input",
    [
        (lambda: nn.Dense(3, 2, rng=0), numpy.ones((2, 3), numpy.float32)),
        (lambda: nn.LSTM(3, 4, rng=0), numpy.ones((2, 5, 3), numpy.float32)),
        (lambda: nn.Embedding(5, 2, rng=0), numpy.array([[1, 2]])),
        (lambda: nn.LayerNorm(3), numpy.ones((2, 3), numpy.float32)),
    ],
)
def test_a_host_input_to_a_device_module_is_an_error_naming_both_devices(build, host_input):
    with on_device("strict"):
        module = build()
        with pytest.raises(
            ValueError,
            match=r"expected an input on the parameters' device \(strict\), got an array on cpu",
        ):
            module.forward(host_input)


def test_a_host_condition_for_a_device_flow_network_is_an_error_naming_both_devices():
    with on_device("strict"):
        conditioned = layers.Conditioned(nn.Dense(5, 3, rng=0), 3, 2)
        conditioned.set_condition(numpy.zeros((1, 2, 2), numpy.float32))
        with pytest.raises(
            ValueError, match=r"Conditioned: expected an input on the parameters' device"
        ):
            conditioned.forward(backend.asarray(numpy.eye(3, dtype=numpy.float32)[[[0, 1]]]))


def test_id_checks_on_a_device_wait_for_the_next_raise_failed_checks():
    with strict_counting() as counts:
        layers.onehot.check_ids(
            "Flow", backend.asarray(numpy.array([[0, 4]])), 4
        )  # out of range: no sync, no error yet
        layers.onehot.check_ids("Flow", backend.asarray(numpy.array([[1, 2]])), 4)
        assert counts.syncs == {}
        with pytest.raises(
            ValueError, match=r"Flow: expected token ids in \[0, 4\) \(a deferred device check\)"
        ):
            backend.raise_failed_checks()
        backend.raise_failed_checks()  # reported once, then cleared
    with pytest.raises(
        ValueError, match=r"Embedding: expected token ids in \[0, 4\), got min 0, max 4"
    ):
        nn.Embedding(4, 2, rng=0).forward(
            numpy.array([[0, 4]])
        )  # on the host: at once, with the values


def test_the_stand_in_trains_like_the_host(tmp_path):
    """Same seed, same arithmetic: the stand-in runs NumPy underneath, so every number agrees."""
    from runners import cli

    results = {}
    for device in ("cpu", "strict"):
        out = tmp_path / device
        assert (
            cli.main(
                [
                    "--device",
                    device,
                    "train",
                    "tests.fixtures.tiny_experiment:TinyClassifier",
                    "--steps",
                    "4",
                    "--batch-size",
                    "8",
                    "--out",
                    str(out),
                    "--log-every",
                    "2",
                ]
            )
            == 0
        )
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        results[device] = [
            {key: value for key, value in row.items() if "second" not in key} for row in rows
        ]
    backend.set_device("cpu")
    assert [row["step"] for row in results["cpu"]] == [2, 4]
    assert results["strict"] == results["cpu"]


def test_device_dropout_masks_come_from_splitmix64_outputs():
    # the published SplitMix64 from state 0: its first output is 0xE220A8397B1DCDAF
    first = nn.dropout.counter_uniform(numpy, 0, 0, (2,), numpy.float64)[1]
    assert first == (0xE220A8397B1DCDAF >> 11) * 2.0**-53


def test_device_dropout_draws_a_fresh_mask_each_call_with_no_copy_and_reseed_repeats_it():
    with strict_counting() as counts:
        dropout = nn.Dropout(0.3, rng=0)
        ones = backend.asarray(numpy.ones((200, 500), numpy.float32))
        uploads = dict(counts.uploads)
        first, second = (backend.to_numpy(dropout.forward(ones)) for _ in range(2))
        dropout.reseed(7)
        again = backend.to_numpy(dropout.forward(ones))
        dropout.reseed(7)
        assert dict(counts.uploads) == uploads  # drawing and reseeding copy nothing to the device
        numpy.testing.assert_array_equal(backend.to_numpy(dropout.forward(ones)), again)
    assert set(numpy.unique(first)) == {numpy.float32(0), numpy.float32(1 / 0.7)}
    # 100,000 draws: the kept share's standard deviation is 0.0014; 0.01 is 7 of them
    assert (
        abs((first != 0).mean() - 0.7) < 0.01 and (first != second).any() and (first != again).any()
    )


def test_npflows_evaluate_raises_a_deferred_device_check_before_printing(
    tmp_path, capsys, monkeypatch
):
    from runners import cli
    from tests.fixtures.tiny_experiment import TinyClassifier

    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "tests.fixtures.tiny_experiment:TinyClassifier",
                "--steps",
                "1",
                "--batch-size",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    evaluate = TinyClassifier.evaluate

    def evaluate_with_a_bad_input(self, model):  # as a module given bad ids on the device would
        backend.check_later(backend.asarray(numpy.array(False)), "Tiny: expected good ids")
        return evaluate(self, model)

    monkeypatch.setattr(TinyClassifier, "evaluate", evaluate_with_a_bad_input)
    try:
        with pytest.raises(
            ValueError, match=r"Tiny: expected good ids \(a deferred device check\)"
        ):
            cli.main(["--device", "strict", "evaluate", str(out / "checkpoint.h5")])
    finally:
        backend.set_device("cpu")
    assert capsys.readouterr().out == ""


def test_sorts_are_stable_as_cupys_and_other_kinds_are_refused():
    # CuPy sorts stably only; NumPy's default kind breaks ties in other orders for n > 16
    values = numpy.random.default_rng(0).integers(0, 3, (4, 40)).astype(numpy.float64)
    stable = numpy.argsort(values, axis=-1, kind="stable")
    assert not numpy.array_equal(numpy.argsort(values, axis=-1), stable)  # the host default
    with strict_counting():
        on_device = backend.asarray(values)
        orders = [xp_argsort(on_device) for xp_argsort in _SORT_CALLS]
        sorted_values = backend.to_numpy(strict_device.xp.sort(on_device, axis=-1))
        with pytest.raises(ValueError, match=r"argsort\(\) sorts stably only .*'quicksort'"):
            strict_device.xp.argsort(on_device, kind="quicksort")
        with pytest.raises(ValueError, match=r"\.sort\(\) sorts stably only .*'heapsort'"):
            on_device.copy().sort(kind="heapsort")
    for order in orders:
        numpy.testing.assert_array_equal(backend.to_numpy(order), stable)
    numpy.testing.assert_array_equal(sorted_values, numpy.sort(values, axis=-1))


_SORT_CALLS = [
    lambda a: strict_device.xp.argsort(a, axis=-1),
    lambda a: strict_device.xp.argsort(a, axis=-1, kind="stable"),
    lambda a: numpy.argsort(a, axis=-1),  # through __array_function__
    lambda a: a.argsort(axis=-1),
]
