"""Discrete flows (Tran et al., 2019, sec. 3) on the npflows engine, with hand-written backward passes.

Directions everywhere: `forward` maps base -> data (sampling), `reverse` maps data -> base
(log-likelihood); a flow's `backward` is the backward of its `reverse` on one-hot input.
Representations: one-hot floats (B, D, K) for training, integer ids (B, D) for sampling and
evaluation (`one_hot`, `to_ids` convert). See docs/flows.md.
"""

from .autoregressive import DiscreteAutoregressiveFlow
from .bases import AutoregressiveCategorical, FactorizedCategorical
from .bipartite import DiscreteBipartiteFlow
from .causality import check_causal
from .conditioning import Conditioned
from .flow_spec import FlowStackSpec, base_side_log_frequencies, build_flow_stack, flow_masks
from .location_scale import LocationScale
from .model import FlowModel
from .modular import (
    OneHotScale,
    OneHotShift,
    extended_euclid,
    inverse_table,
    invertible_mask,
    mod_forward,
    mod_reverse,
)
from .networks import (
    MLP,
    BidirectionalLSTMNetwork,
    CausalMLP,
    LSTMNetwork,
    MaskedDense,
    StridedNetwork,
    zero_output_layers,
)
from .objective import AuxiliaryCrossEntropy, FlowObjective, flow_objective
from .onehot import one_hot, to_ids
from .permute import Permute, Reverse
from .predictive import PredictiveBipartiteFlow, PredictiveNetwork
from .prefix_table import PrefixTable
from .rank import RankBipartiteFlow, RankTransform
from .straight_through import OneHotArgmax, SoftmaxTemperature, one_hot_argmax

__all__ = [
    "DiscreteAutoregressiveFlow",
    "DiscreteBipartiteFlow",
    "Permute",
    "Reverse",
    "FactorizedCategorical",
    "AutoregressiveCategorical",
    "FlowModel",
    "OneHotArgmax",
    "SoftmaxTemperature",
    "one_hot_argmax",
    "OneHotShift",
    "OneHotScale",
    "LocationScale",
    "extended_euclid",
    "inverse_table",
    "invertible_mask",
    "mod_forward",
    "mod_reverse",
    "one_hot",
    "to_ids",
    "MaskedDense",
    "CausalMLP",
    "MLP",
    "LSTMNetwork",
    "BidirectionalLSTMNetwork",
    "StridedNetwork",
    "zero_output_layers",
    "PrefixTable",
    "Conditioned",
    "PredictiveNetwork",
    "PredictiveBipartiteFlow",
    "RankBipartiteFlow",
    "RankTransform",
    "check_causal",
    "FlowStackSpec",
    "build_flow_stack",
    "base_side_log_frequencies",
    "flow_masks",
    "AuxiliaryCrossEntropy",
    "FlowObjective",
    "flow_objective",
]
