"""npflows.testing: audit and property-test your own layers as npflows tests its own.

Assertions (each AssertionError names the first counterexample; docs/testing.md):
- assert_gradients(module, *inputs, rtol): the float64 finite-difference audit of any Module,
  flows included through the linearised straight-through argmax, with a per-tensor report;
- assert_bijection(flow, K, length): exact round trips on ids and one-hot, and onto-ness on
  every sequence when K**length is small;
- assert_normalized(model, K, length, atol): the exhaustive sum of probabilities;
- assert_causal(network, K, length): what an autoregressive flow needs of its network.
Adapters (Audited, linearise, LinearisedArgmax, training_pass), flow builders (build_flow,
build_base, FLOW_KINDS) and the gradient-audit cases (npflows.testing.cases.CASES) live here too;
hypothesis strategies in npflows.testing.strategies, which alone needs hypothesis.

Where it sits: above layers (it builds and audits flows), beside runners/cli on the top floor;
no engine module imports it (npflows.gradcheck reads the case table lazily).
"""

from .adapters import Audited, LinearisedArgmax, linearise, training_pass
from .builders import BASE_KINDS, FLOW_KINDS, MASK_CHOICES, build_base, build_flow
from .flows import all_sequences, assert_bijection, assert_causal, assert_normalized, random_ids
from .gradients import assert_gradients

__all__ = [
    "assert_gradients",
    "assert_bijection",
    "assert_normalized",
    "assert_causal",
    "Audited",
    "LinearisedArgmax",
    "linearise",
    "training_pass",
    "build_flow",
    "build_base",
    "FLOW_KINDS",
    "BASE_KINDS",
    "MASK_CHOICES",
    "all_sequences",
    "random_ids",
]
