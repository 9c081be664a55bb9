"""Encode and decode speed of `npflows compress` per checkpoint, and each against the last one given
(the peer: the AR LSTM), on one input file.

Times runners.compress.encode_rows / decode_rows alone (rows in memory to words in memory and
back; not the checkpoint restore or the file I/O), the minimum over --repeats, and checks that
every decode gives the encoded rows back. Prints one JSON line per checkpoint, then the ratios.

    python benchmarks/compression_speed.py --input heldout.txt runs/ptb/flow/checkpoint.h5 runs/ptb/lstm/checkpoint.h5
"""

import argparse
import json
import os
import time


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "checkpoints", nargs="+", help="the last one is the peer the others are compared with"
    )
    parser.add_argument(
        "--input", required=True, help="a file that `npflows compress` accepts for every checkpoint"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="rows per batched pass")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of each direction (the minimum is kept)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS/OpenMP threads (set before NumPy loads)"
    )
    return parser.parse_args(argv)


def fastest(function, repeats):
    """(result, the minimum wall seconds over `repeats` calls)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, min(seconds)


def measure(path, data, options):
    from npflows import checkpoint, train
    from runners import compress, registry

    state = checkpoint.load(path)
    experiment, model = train.restore(registry.resolve(state.config["experiment"]), state, path)
    layout = compress.layout_of(experiment, model)
    tokens, extra = layout.to_rows(data, options.input)
    (words, model_bits), encode = fastest(
        lambda: compress.encode_rows(model, layout, tokens, extra, options.batch_size),
        options.repeats,
    )
    decoded, decode = fastest(
        lambda: compress.decode_rows(model, layout, len(tokens), extra, options.batch_size, words),
        options.repeats,
    )
    assert (decoded == tokens).all(), f"{path}: the decoded rows differ from the encoded ones"
    symbols = layout.symbols(tokens, extra)
    return {
        "checkpoint": path,
        "symbols": symbols,
        "model_bits_per_symbol": model_bits / symbols,
        "payload_bits_per_symbol": 32 * len(words) / symbols,
        "encode_seconds": encode,
        "decode_seconds": decode,
        "encode_symbols_per_second": symbols / encode,
        "decode_symbols_per_second": symbols / decode,
    }


def main(argv=None):
    options = parse(argv)
    os.environ.update(
        OMP_NUM_THREADS=str(options.threads), OPENBLAS_NUM_THREADS=str(options.threads)
    )
    with open(options.input, "rb") as handle:
        data = handle.read()
    results = [measure(path, data, options) for path in options.checkpoints]
    for result in results:
        print(json.dumps(result))
    peer = results[-1]
    for result in results[:-1]:
        print(
            f"{result['checkpoint']} against {peer['checkpoint']}: encode "
            f"{result['encode_seconds'] / peer['encode_seconds']:.2f}x the time, decode "
            f"{result['decode_seconds'] / peer['decode_seconds']:.2f}x the time"
        )


if __name__ == "__main__":
    main()
