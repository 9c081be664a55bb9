"""The gradient-audit cases of npflows, by name: the table `npflows gradcheck` reads.

One line per case: NAME -> "module:builder" under this package, imported only when the case is
built (npflows.registry.Table). A builder takes a numpy.random.Generator and returns a
gradcheck.Case with float64 modules of random small shapes. Nothing registers itself by being
imported: a new case is a builder in one of these files plus one line here. Order matters only
for `npflows gradcheck` seeds (case i is built from seed + i) and its table's row order.
Files: engine.py (Dense ... cross-entropy), lstm.py, transformer.py (LayerNorm, attention,
Transformer), flow_ops.py (one-hot maps, bases, flows through the linearised STE),
flow_networks.py (the flow layers' networks), objective.py (the training objective,
layers/objective.py); draws.py holds the random draws they share.
"""

from ...registry import Table

P = "npflows.testing.cases."

CASES = Table(
    "gradcheck",
    "case",
    listed_by="npflows gradcheck --list",
    entries={
        "Dense": P + "engine:dense",
        "Embedding": P + "engine:embedding",
        "ReLU": P + "engine:relu",
        "Tanh": P + "engine:tanh",
        "GELU": P + "engine:gelu",
        "Sequential(Dense,GELU,Dense)": P + "engine:sequential",
        "LogSoftmax": P + "engine:log_softmax",
        "SoftmaxCrossEntropy(ids, mask)": P + "engine:cross_entropy_ids",
        "SoftmaxCrossEntropy(one-hot, sum)": P + "engine:cross_entropy_one_hot",
        "LSTM": P + "lstm:lstm",
        "LSTM(2 layers, initial state)": P + "lstm:lstm_two_layers_initial_state",
        "LSTM(fused cell, 2 layers, initial state)": P + "lstm:lstm_fused_cell",
        "LayerNorm": P + "transformer:layer_norm",
        "Dropout": P + "transformer:dropout",
        "MultiHeadAttention(full)": P + "transformer:attention_full",
        "MultiHeadAttention(causal)": P + "transformer:attention_causal",
        "MultiHeadAttention(padding mask)": P + "transformer:attention_padding",
        "TransformerBlock(gelu)": P + "transformer:transformer_block",
        "Transformer(causal, in/out projections)": P + "transformer:transformer_causal",
        "Transformer(full, padding, dropout)": P + "transformer:transformer_padding_dropout",
        "OneHotShift(reverse)": P + "flow_ops:one_hot_shift_reverse",
        "OneHotShift(forward)": P + "flow_ops:one_hot_shift_forward",
        "OneHotScale(reverse)": P + "flow_ops:one_hot_scale_reverse",
        "OneHotScale(forward)": P + "flow_ops:one_hot_scale_forward",
        "SoftmaxTemperature(masked)": P + "flow_ops:softmax_temperature",
        "MaskedDense": P + "flow_networks:masked_dense",
        "CausalMLP": P + "flow_networks:causal_mlp",
        "MLP": P + "flow_networks:mlp",
        "FactorizedCategorical": P + "flow_ops:factorized",
        "AutoregressiveCategorical": P + "flow_ops:autoregressive_base",
        "AutoregressiveFlow(MLP, STE)": P + "flow_ops:autoregressive_flow",
        "BipartiteFlow(MLP, STE)": P + "flow_ops:bipartite_flow",
        "Permute.reverse": P + "flow_ops:permute",
        "FlowModel(stack, STE)": P + "flow_ops:flow_model",
        "LSTMNetwork(initial state)": P + "flow_networks:lstm_network",
        "AutoregressiveCategorical(context)": P + "flow_ops:autoregressive_base_context",
        "AutoregressiveFlow(LSTM, STE)": P + "flow_ops:autoregressive_flow_lstm",
        "BipartiteFlow(Transformer, STE)": P + "flow_ops:bipartite_flow_transformer",
        "PrefixTable": P + "flow_networks:prefix_table",
        "AutoregressiveFlow(PrefixTable, STE)": P + "flow_ops:autoregressive_flow_table",
        "Conditioned(LSTMNetwork)": P + "flow_networks:conditioned_network",
        "BidirectionalLSTMNetwork": P + "flow_networks:bidirectional_lstm_network",
        "PredictiveNetwork(BiLSTM, scale)": P + "flow_networks:predictive_network",
        "RankBipartiteFlow(MLP)": P + "flow_ops:rank_bipartite_flow",
        "StridedNetwork(BiLSTM)": P + "flow_networks:strided_network",
        "FlowObjective(predictive, STE)": P + "objective:flow_objective",
    },
)
