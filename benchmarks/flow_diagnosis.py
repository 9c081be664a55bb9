"""Where a trained charlm flow spends its bits (docs/results.md, PTB study).

    python benchmarks/flow_diagnosis.py runs/ptb/flow_final/checkpoint.h5 [--rows 200]

For each predictive bipartite flow, on the first --rows held-out rows: how often its network's
best guess is the symbol it transforms (real characters only, PAD excluded), and how many of those
symbols it moves; then the base's bits per counted character by position class d = 2^l mod 2^(l+1)
(the hierarchical masks' levels) and the PAD positions' share.
"""

import argparse
import math

import numpy


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="an `npflows train charlm --model flow` checkpoint.h5")
    parser.add_argument("--rows", type=int, default=200, help="held-out rows to read")
    args = parser.parse_args(argv)

    import layers
    from layers.bipartite import kept_positions
    from npflows import backend, checkpoint, train
    from runners import registry

    state = checkpoint.load(args.checkpoint)
    experiment, model = train.restore(
        registry.resolve(state.config["experiment"]), state, args.checkpoint, "cpu", None
    )
    split = next(iter(experiment.heldout.values()))
    tokens = numpy.asarray(split.tokens[: args.rows]).astype(numpy.int64)
    counted = numpy.asarray(split.mask[: args.rows]) > 0
    K, length, dtype = experiment.K, tokens.shape[1], model.base.logits.data.dtype
    current = tokens
    print(f"{args.checkpoint}: {len(tokens)} held-out rows, {int(counted.sum())} counted positions")
    for index, flow in enumerate(model.flows):
        keep = kept_positions(flow.mask, length)
        transformed = (~keep)[None, :] & counted
        if isinstance(flow, layers.PredictiveBipartiteFlow):
            conditioning = layers.one_hot(current, K, dtype) * keep[:, None]
            guess = numpy.argmax(
                backend.to_numpy(flow.network.inner.forward(conditioning))[..., :K], axis=-1
            )
            accuracy = f"best guess right {(guess == current)[transformed].mean():.3f}"
        else:
            accuracy = "not a predictive flow"
        following = backend.to_numpy(flow.reverse(current))
        print(
            f"flow {index}: {int(transformed.sum())} counted positions transformed, {accuracy}, "
            f"moved {(following != current)[transformed].mean():.3f}"
        )
        current = following
    log_probs = backend.to_numpy(model.base.logits.data).astype(numpy.float64)
    log_probs -= numpy.log(numpy.exp(log_probs).sum(axis=-1, keepdims=True))
    bits = -log_probs[numpy.arange(length)[None, :], current] / math.log(2)
    print(
        f"base: {bits[counted].mean():.3f} bits per counted position + {bits[~counted].sum() / counted.sum():.3f} "
        f"for the PAD positions after EOS = {bits.sum() / counted.sum():.3f} bpc"
    )
    positions = numpy.arange(length)
    for level in range(int(math.ceil(math.log2(length)))):
        step = 2**level
        chosen = counted & (positions % (2 * step) == step)[None, :]
        if chosen.any():
            print(
                f"  d = {step} mod {2 * step}: {bits[chosen].mean():.3f} bits over {int(chosen.sum())} positions"
            )
    chosen = counted & (positions == 0)[None, :]
    print(f"  d = 0: {bits[chosen].mean():.3f} bits over {int(chosen.sum())} positions")


if __name__ == "__main__":
    main()
