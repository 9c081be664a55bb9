"""Generation speed of the character models (paper Table 3's "Generation" column), in one run.

Times drawing one sequence of --length characters (288, PTB) and a batch of --batch (64) for
  (a) the bipartite flow LM, bidirectional-LSTM networks   (one pass per flow, LSTM in time)
  (b) the bipartite flow LM, non-causal Transformer networks (one pass per flow, parallel)
  (c) the AR LSTM sampling with its (h, c) carried from step to step (the fair baseline)
  (d) the AR LSTM re-running the whole prefix at every one of the --length steps
and prints every ratio, those that go against the flow included. Defaults are the paper's sizes
(8 flows; LSTM embedding 400, hidden 915; Transformer 2 layers, 512, filter 2048, 8 heads; AR
LSTM 1 layer, 400/915: the size of the flow's per-direction LSTM, the reference figures' size).
Weights are random: generation time does not depend on their values. --flow-checkpoint,
--transformer-checkpoint and --lstm-checkpoint time trained `npflows train charlm` models
instead (their sizes, their held-out bpc printed beside).

    python benchmarks/generation_speed.py --threads 1            # the paper's sizes
    python benchmarks/generation_speed.py --threads 1 --quick    # small sizes, seconds
"""

import argparse
import json
import os
import sys
import time


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS/OpenMP threads (set before NumPy loads)"
    )
    parser.add_argument("--length", type=int, default=288)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--K", type=int, default=51)
    parser.add_argument("--flows", type=int, default=8)
    parser.add_argument("--lstm-embedding", type=int, default=400)
    parser.add_argument("--lstm-hidden", type=int, default=915)
    parser.add_argument("--tf-layers", type=int, default=2)
    parser.add_argument("--tf-width", type=int, default=512)
    parser.add_argument("--tf-filter", type=int, default=2048)
    parser.add_argument("--tf-heads", type=int, default=8)
    parser.add_argument("--ar-layers", type=int, default=1)
    parser.add_argument("--ar-embedding", type=int, default=400)
    parser.add_argument("--ar-hidden", type=int, default=915)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed repeats (the minimum is reported); (d) runs once",
    )
    parser.add_argument(
        "--skip-quadratic-batch", action="store_true", help="skip (d) at the large batch (minutes)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--flow-checkpoint", help="a trained charlm flow (LSTM networks) to time as (a)"
    )
    parser.add_argument(
        "--transformer-checkpoint",
        help="a trained charlm flow (Transformer networks) to time as (b)",
    )
    parser.add_argument("--lstm-checkpoint", help="a trained charlm AR LSTM to time as (c) and (d)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.flows, args.lstm_embedding, args.lstm_hidden, args.length = 2, 16, 32, 32
        args.tf_width, args.tf_filter, args.tf_heads, args.ar_embedding, args.ar_hidden = (
            32,
            64,
            4,
            16,
            32,
        )
        args.batch, args.repeats = 4, 1
    return args


def main(argv=None):
    args = parse(argv)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy

    import layers
    from npflows import backend, checkpoint, train
    from runners import charlm, lstm_language_model, registry

    backend.set_default_dtype("float32")
    rng = numpy.random.default_rng(0)

    def restore(path):
        state = checkpoint.load(path)
        experiment, model = train.restore(registry.resolve("charlm"), state, path)
        bpc = {
            f"{split}_bpc": value
            for split, value in charlm.bpc_by_split(experiment.evaluate(model)).items()
        }
        return model, f"{path} ({json.dumps({k: round(v, 3) for k, v in bpc.items()})})"

    models, notes = {}, {}
    options = {
        "K": args.K,
        "length": args.length,
        "num_flows": args.flows,
        "embedding": args.lstm_embedding,
        "hidden": args.lstm_hidden,
        "network": "lstm",
    }
    if args.flow_checkpoint:
        models["a"], notes["a"] = restore(args.flow_checkpoint)
    else:
        models["a"] = layers.build_flow_stack(layers.FlowStackSpec(**options), rng).eval()
        notes["a"] = (
            f"{args.flows} flows, BiLSTM embedding {args.lstm_embedding}, hidden {args.lstm_hidden} per direction"
        )
    if args.transformer_checkpoint:
        models["b"], notes["b"] = restore(args.transformer_checkpoint)
    else:
        options.update(
            network="transformer",
            num_layers=args.tf_layers,
            hidden=args.tf_width,
            filter=args.tf_filter,
            heads=args.tf_heads,
        )
        models["b"] = layers.build_flow_stack(layers.FlowStackSpec(**options), rng).eval()
        notes["b"] = (
            f"{args.flows} flows, Transformer {args.tf_layers} layers, {args.tf_width} wide, "
            f"filter {args.tf_filter}, {args.tf_heads} heads"
        )
    if args.lstm_checkpoint:
        models["c"], notes["c"] = restore(args.lstm_checkpoint)
    else:
        models["c"] = lstm_language_model.LSTMLanguageModel(
            args.K, args.ar_embedding, args.ar_hidden, args.ar_layers, rng=rng
        ).eval()
        notes["c"] = (
            f"AR LSTM {args.ar_layers} layer(s), embedding {args.ar_embedding}, hidden {args.ar_hidden}"
        )
    notes["d"] = notes["c"] + ", prefix re-run at every step"
    length = models["a"].base.length if hasattr(models["a"], "base") else args.length

    def run(key, n):
        if key in ("a", "b"):
            return layers.to_ids(models[key].sample(n, rng))
        return models["c"].sample(n, length, rng, carry_state=(key == "c"))

    results = {}
    for n in (1, args.batch):
        for key in "abcd":
            if key == "d" and n > 1 and args.skip_quadratic_batch:
                continue
            if key != "d":
                run(key, n)  # warm-up: first-call allocations and caches are not generation time
            times = []
            for _ in range(1 if key == "d" else args.repeats):
                started = time.perf_counter()
                ids = backend.to_numpy(
                    run(key, n)
                )  # on a GPU: waits for the device, the ids on the host
                times.append(time.perf_counter() - started)
            assert tuple(ids.shape) == (n, length)
            results[(key, n)] = min(times)
            print(f"({key}) batch {n:3d}: {min(times):9.4f} s   {notes[key]}", flush=True)
    print(
        f"\nlength {length}, {args.threads} thread(s), float32, NumPy {numpy.__version__}, device {backend.device()}"
    )
    for n in (1, args.batch):
        print(f"batch {n}:")
        for slow, fast in (("c", "a"), ("c", "b"), ("d", "a"), ("d", "b"), ("d", "c"), ("a", "b")):
            if (slow, n) in results and (fast, n) in results:
                ratio = results[(slow, n)] / results[(fast, n)]
                verdict = f"({fast}) faster" if ratio > 1 else f"({fast}) SLOWER"
                print(f"  t({slow}) / t({fast}) = {ratio:8.2f}   {verdict}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "args": vars(args),
                    "notes": notes,
                    "seconds": {f"{key}@{n}": value for (key, n), value in results.items()},
                },
                handle,
                indent=2,
            )
    return results


if __name__ == "__main__":
    main()
