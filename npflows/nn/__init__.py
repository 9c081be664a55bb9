"""Networks with hand-written backward passes, batch first. One file per family."""

from .activations import GELU, ReLU, Tanh
from .dense import Dense
from .embedding import Embedding
from .losses import LogSoftmax, SoftmaxCrossEntropy, log_softmax, softmax

# -- families added below, one import line each --
from .lstm import LSTM
from .sequential import Sequential
from .transformer import (
    Dropout,
    LayerNorm,
    MultiHeadAttention,
    Transformer,
    TransformerBlock,
)  # family: norm, dropout, attention, transformer

__all__ = [
    "GELU",
    "ReLU",
    "Tanh",
    "Dense",
    "Embedding",
    "LogSoftmax",
    "SoftmaxCrossEntropy",
    "log_softmax",
    "softmax",
    "LSTM",
    "Sequential",
    "Dropout",
    "LayerNorm",
    "MultiHeadAttention",
    "Transformer",
    "TransformerBlock",
]
