"""Experiments by name: what `npflows train NAME` (and evaluate/sample) build.

An experiment is a subclass of `Experiment` (the protocol lives in npflows.train, re-exported
here; docs/distributed.md). NAME is either a key of EXPERIMENTS or `package.module:attribute`,
which trains an unregistered experiment (a user's own, or a test fixture) without editing this
file. For `module:attribute` the current directory is importable, as with `python -m`.

To register a paper experiment, add one line to EXPERIMENTS; the module is imported only when
that experiment is asked for, so one experiment's imports never slow down another.
"""

import importlib
import os
import sys

from npflows.train import Experiment

__all__ = ["EXPERIMENTS", "Experiment", "names", "resolve"]

EXPERIMENTS = {
    # "name": "runners.module:ExperimentClass",   one line per paper experiment
    "mog": "runners.mog:MixtureOfGaussians",
    "fullrank": "runners.fullrank_experiment:FullRank",
    "charlm": "runners.charlm:CharLM",
    "addition": "runners.addition:AdditionExperiment",
    "potts": "runners.potts:PottsExperiment",
}


def names():
    return sorted(EXPERIMENTS)


def _names_missing(error, module_name):
    """True when `error` says the module itself (or a package above it) is missing, not
    something the module imports."""
    return error.name is not None and (module_name + ".").startswith(error.name + ".")


def _import(module_name):
    for attempt in range(2):
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not _names_missing(error, module_name):
                raise
            if attempt == 0 and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # `npflows train pkg.mod:Cls` from the project root
                continue
            raise ValueError(
                f"registry: no module {module_name!r} on sys.path or in the current "
                f"directory {os.getcwd()}"
            ) from None


def resolve(name):
    """The Experiment subclass for a registered name or a `package.module:attribute` path."""
    target = EXPERIMENTS.get(name, name)
    if ":" not in target:
        known = ", ".join(names()) or "none registered yet"
        raise ValueError(
            f"registry: unknown experiment {name!r}; expected one of [{known}] "
            "or package.module:attribute"
        )
    module_name, _, attribute = target.partition(":")
    module = _import(module_name)
    experiment = getattr(module, attribute, None)
    if not (isinstance(experiment, type) and issubclass(experiment, Experiment)):
        raise ValueError(
            f"registry: expected {target} to be a subclass of npflows.train.Experiment, "
            f"got {type(experiment).__name__ if experiment is not None else 'nothing'}"
        )
    return experiment
