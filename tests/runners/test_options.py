"""Every experiment states each default once: its options dataclass's field defaults are what
argparse gives (runners/options.py), and nothing in runners/ falls back to a second default
with config.get(key, fallback)."""

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from runners import registry
from runners.options import read_options
from tests.fixtures.tiny_experiment import TinyClassifier

RUNNERS = Path(__file__).resolve().parents[2] / "runners"


EXPERIMENTS = {name: registry.resolve(name) for name in registry.names()}
EXPERIMENTS["tests.fixtures.tiny_experiment:TinyClassifier"] = TinyClassifier


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_argparse_default_is_the_options_field_default(name):
    """And the experiment's config carries them: what the run used, in config.json."""
    experiment_class = EXPERIMENTS[name]
    parser = argparse.ArgumentParser()
    experiment_class.add_arguments(parser)
    parsed = vars(parser.parse_args([]))
    fields = {field.name: field.default for field in dataclasses.fields(experiment_class.Options)}
    assert parsed == fields
    assert dataclasses.asdict(experiment_class.Options()) == fields


@pytest.mark.parametrize("name", ["charlm", "potts", "fullrank"])
def test_the_defaults_the_published_runs_used_are_the_ones_stated(name):
    """Where argparse and a `.get` fallback disagreed, argparse's value is what the published runs
    (through the CLI and `npflows reproduce`) used: charlm identity margin 0.0 and base learning
    rate x10, potts identity margin 1.0."""
    expected = {
        "charlm": {"identity_margin": 0.0, "base_lr_scale": 10.0},
        "potts": {"identity_margin": 1.0, "min_count": 100},
        "fullrank": {"aux_weight": 1.0, "flows": 4},
    }[name]
    defaults = EXPERIMENTS[name].Options()
    assert {key: getattr(defaults, key) for key in expected} == expected


def test_a_missing_or_none_config_value_takes_the_field_default():
    options = read_options(TinyClassifier.Options, {"hidden": None, "lr": 0.5, "seed": 3})
    assert (options.hidden, options.lr, options.cosine) == (16, 0.5, False)


def test_no_runner_falls_back_to_a_second_default():
    fallbacks = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(RUNNERS.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"config\.get\(\s*\"\w+\"\s*,", line)
        or re.search(r"config\.get\(.*\) or ", line)
    ]
    assert fallbacks == []
