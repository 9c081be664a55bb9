"""Experiments by name: what `npflows train NAME` (and evaluate/sample) build.

An experiment is a subclass of `Experiment` (the protocol lives in npflows.train, re-exported
here; docs/distributed.md). NAME is either a key of EXPERIMENTS or `package.module:attribute`,
which trains an unregistered experiment (a user's own, or a test fixture) without editing this
file. EXPERIMENTS is an npflows.registry.Table, the convention of every registry in npflows.

To register a paper experiment, add one line to EXPERIMENTS; the module is imported only when
that experiment is asked for, so one experiment's imports never slow down another.
"""

from npflows.errors import ConfigError
from npflows.registry import Table
from npflows.train import Experiment

__all__ = ["EXPERIMENTS", "Experiment", "names", "resolve"]

EXPERIMENTS = Table(
    "registry",
    "experiment",
    {
        # "name": "runners.module:ExperimentClass",   one line per paper experiment
        "mog": "runners.mog:MixtureOfGaussians",
        "fullrank": "runners.fullrank_experiment:FullRank",
        "charlm": "runners.charlm:CharLM",
        "addition": "runners.addition:AdditionExperiment",
        "potts": "runners.potts:PottsExperiment",
    },
)


def names():
    return EXPERIMENTS.names()


def resolve(name):
    """The Experiment subclass for a registered name or a `package.module:attribute` path."""
    experiment = EXPERIMENTS.resolve(name)
    if not (isinstance(experiment, type) and issubclass(experiment, Experiment)):
        raise ConfigError(
            f"registry: expected {name} to be a subclass of npflows.train.Experiment, "
            f"got {type(experiment).__name__}"
        )
    return experiment
