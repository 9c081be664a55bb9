# Hypothesis profiles: "ci" by default, HYPOTHESIS_PROFILE=nightly for 10x the examples
# (tests/fixtures/hypothesis_profiles.py; how to run: README.md).
from tests.fixtures import hypothesis_profiles  # noqa: F401  (registers and loads the profile)
