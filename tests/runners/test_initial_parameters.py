"""Every experiment's initial model, built through its options, the layers.FlowStackSpec builder
and `initialise`, has exactly the parameters the builders before the flow-spec redesign made:
sha256 of every (name, float32 bytes) pair, pinned from the old code (git ded4ede, 2026-11-30)."""

import argparse
import hashlib

import numpy
import pytest

from npflows import backend
from runners import registry
from tests.runners.test_charlm import _ptb_file

CHARLM = ["--max-length", "40", "--embedding", "8", "--hidden", "8"]
FULLRANK = ["--dimension", "4", "--classes", "3", "--d-model", "8", "--d-ff", "8", "--heads", "2"]
FULLRANK += ["--train-samples", "0"]
ADDITION = ["--digits", "3", "--hidden", "8", "--train-examples", "10", "--eval-examples", "5"]
POTTS = ["--train-examples", "50", "--eval-examples", "10", "--mh-steps", "5", "--hidden", "8"]
MOG = ["--hidden", "8", "--train-samples", "50", "--heldout-samples", "10"]
CASES = {
    "charlm-default": ("charlm", [*CHARLM, "--num-flows", "2"], "b6b41d2c302d879d"),
    "charlm-scale-transformer-hier-strided": (
        "charlm",
        [*CHARLM, "--num-flows", "3", "--scale", "--network", "transformer", "--heads", "2"]
        + ["--masks", "hierarchical", "--strided-networks", "--identity-margin", "0.4"],
        "c69650ed98613009",
    ),
    "charlm-rank-prior": (
        "charlm",
        [*CHARLM, "--num-flows", "2", "--coupling", "rank", "--masks", "hierarchical"],
        "29bfad38486b4311",
    ),
    "charlm-random-ste": (
        "charlm",
        [*CHARLM, "--num-flows", "2", "--flow-init", "random", "--ste-weight", "1"]
        + ["--aux-weight", "0"],
        "126a26a22a873ef7",
    ),
    "charlm-factorized": ("charlm", [*CHARLM, "--model", "factorized"], "1cdb94e21f1b2eb6"),
    "fullrank-bipartite": ("fullrank", [*FULLRANK, "--model", "bipartite"], "5bcf182eb4048baf"),
    "fullrank-bipartite-noaux": (
        "fullrank",
        [*FULLRANK, "--model", "bipartite", "--aux-weight", "0", "--base-init-std", "0.5"],
        "4b22bae8133d58e7",
    ),
    "fullrank-ar-flow": ("fullrank", [*FULLRANK, "--model", "ar-flow"], "17f3c9393e733175"),
    "fullrank-ar-base-2x": ("fullrank", [*FULLRANK, "--model", "ar-base-2x"], "320aee42ebe3d745"),
    "addition-bipartite": (
        "addition",
        [*ADDITION, "--model", "bipartite-2", "--flow-init", "identity"],
        "944a966acf146b99",
    ),
    "addition-ar-flow": ("addition", [*ADDITION, "--model", "ar-flow"], "0fcb9b88d73e5ce7"),
    "addition-ar-flow-identity": (
        "addition",
        [*ADDITION, "--model", "ar-flow", "--flow-init", "identity"],
        "8bde71370f73349c",
    ),
    "potts-ar-flow": ("potts", [*POTTS, "--min-count", "2"], "71dc1406fad88d40"),
    "mog-bipartite": ("mog", MOG, "db843fe80a339cf5"),
    "mog-ar-flow": ("mog", [*MOG, "--model", "ar-flow"], "cbfc284c1739641e"),
}


def parameter_checksum(model):
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(numpy.ascontiguousarray(backend.to_numpy(param.data)).tobytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def ptb_path(tmp_path_factory):
    return _ptb_file(tmp_path_factory.mktemp("ptb") / "ptb.txt")


@pytest.mark.parametrize("case", sorted(CASES))
def test_initial_parameters_are_those_of_the_builders_before_the_redesign(case, ptb_path):
    name, argv, expected = CASES[case]
    experiment_class = registry.resolve(name)
    parser = argparse.ArgumentParser()
    experiment_class.add_arguments(parser)
    argv = [*argv, "--data-path", str(ptb_path)] if name == "charlm" else argv
    experiment = experiment_class(vars(parser.parse_args(argv)))
    model = experiment.build_model(numpy.random.default_rng(3))
    experiment.initialise(model)
    assert parameter_checksum(model) == expected
