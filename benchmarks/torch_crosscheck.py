"""Cross-check npflows' reference vectors with PyTorch autograd: a second gradient oracle.

    npflows reference export DIR && python benchmarks/torch_crosscheck.py DIR

For Dense, LSTM (from zeros, and two layers from a given state), LayerNorm, attention (full,
causal, padding mask), a Transformer block and a causal Transformer with in/out projections,
this reads the file (h5py only: no npflows code, so nothing of ours is reused), recomputes the
outputs from the stored parameters and inputs with PyTorch, builds L = sum_j <cotangent_j,
output_j> and lets autograd differentiate it. It prints, per tensor, the max relative
difference max |ours - torch| / max(|ours|, |torch|) and exits 1 if any exceeds 1e-10
(float64 rounding alone stays near 1e-15). Where PyTorch has the module, PyTorch's own code
runs: torch.nn.LSTM, layer_norm, scaled_dot_product_attention, the tanh-form gelu.
PyTorch is optional (not an npflows dependency): `pip install torch` (the CPU wheel is enough).
"""

import argparse
import json
import sys
from pathlib import Path

import h5py

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("torch_crosscheck: PyTorch is not installed; `pip install torch` (CPU is enough)")

THRESHOLD = 1e-10


def dense(p, prefix, x):
    return x @ p[prefix + "weight"] + p[prefix + "bias"]


def layer_norm(p, prefix, x, config):
    eps = config[prefix.rstrip(".")]["eps"]
    return F.layer_norm(x, x.shape[-1:], p[prefix + "gain"], p[prefix + "bias"], eps)


def attention(p, prefix, x, config, padding_mask=None):
    """qkv = x W_qkv + b (columns: q, k, v, each heads x head_dim), softmax(q k^T / sqrt(d)) v."""
    settings = config[prefix.rstrip(".")]
    batch, length, d_model = x.shape
    heads = settings["num_heads"]
    qkv = dense(p, prefix + "qkv.", x).reshape(batch, length, 3, heads, d_model // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    mask = None
    if padding_mask is not None:  # True = may attend: the real keys
        mask = torch.as_tensor(padding_mask != 0)[:, None, None, :]
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=settings["causal"])
    return dense(p, prefix + "output.", context.transpose(1, 2).reshape(batch, length, d_model))


def transformer_block(p, prefix, x, config):
    """Pre-LayerNorm: h = x + Attn(LN1(x)); y = h + W2 gelu(W1 LN2(h)) (tanh-form gelu)."""
    if config[prefix + "activation"]["class"] != "GELU":
        raise SystemExit("torch_crosscheck: only the GELU blocks are cross-checked")
    h = x + attention(
        p, prefix + "attention.", layer_norm(p, prefix + "attention_norm.", x, config), config
    )
    inner = F.gelu(
        dense(
            p, prefix + "feedforward_in.", layer_norm(p, prefix + "feedforward_norm.", h, config)
        ),
        approximate="tanh",
    )
    return h + dense(p, prefix + "feedforward_out.", inner)


def transformer(p, x, config):
    """[Dense in] + learned positions -> pre-LN blocks -> LayerNorm -> [Dense out]."""
    h = dense(p, "input.", x) if "input" in config else x
    h = h + p["position"][: x.shape[1]]
    blocks = sorted({key.split(".")[1] for key in config if key.startswith("blocks.")}, key=int)
    for index in blocks:
        h = transformer_block(p, f"blocks.{index}.", h, config)
    h = layer_norm(p, "final_norm.", h, config)
    return dense(p, "output.", h) if "output" in config else h


def lstm(p, x, config, state=None):
    """torch.nn.LSTM with our fused weights: W_ih = W_x^T, W_hh = W_h^T (gate order i, f, g, o
    in both), bias_ih = our bias, bias_hh = 0 (PyTorch adds the two)."""
    settings = config[""]
    module = torch.nn.LSTM(
        settings["input_size"],
        settings["hidden_size"],
        settings["num_layers"],
        batch_first=True,
        dtype=torch.float64,
    )
    weights = {}
    for layer in range(settings["num_layers"]):
        weights[f"weight_ih_l{layer}"] = p[f"layers.{layer}.weight_x"].T
        weights[f"weight_hh_l{layer}"] = p[f"layers.{layer}.weight_h"].T
        weights[f"bias_ih_l{layer}"] = p[f"layers.{layer}.bias"]
        weights[f"bias_hh_l{layer}"] = torch.zeros_like(p[f"layers.{layer}.bias"])
    output, (h, c) = torch.func.functional_call(
        module, weights, (x,) if state is None else (x, state)
    )
    return output, (h, c)


def run(case, p, inputs, options, config):
    """The module's outputs as a flat list, in the file's order (outputs/0, 1.0, 1.1 ...)."""
    cls = config[""]["class"]
    if cls == "Dense":
        return [dense(p, "", inputs["0"])]
    if cls == "LayerNorm":
        return [layer_norm(p, "", inputs["0"], config)]
    if cls == "MultiHeadAttention":
        return [attention(p, "", inputs["0"], config, options.get("padding_mask"))]
    if cls == "TransformerBlock":
        return [transformer_block(p, "", inputs["0"], config)]
    if cls == "Transformer":
        return [transformer(p, inputs["0"], config)]
    if cls == "LSTM":
        state = (inputs["1.0"], inputs["1.1"]) if "1.0" in inputs else None
        output, (h, c) = lstm(p, inputs["0"], config, state)
        return [output, h, c]
    raise SystemExit(f"torch_crosscheck: no PyTorch version of {cls} ({case})")


def group(handle, name):
    return {key: handle[name][key][()] for key in handle[name]} if name in handle else {}


def leaf(array):
    tensor = torch.as_tensor(array)
    return tensor.requires_grad_() if tensor.is_floating_point() else tensor


def max_rel(ours, theirs):
    difference = (ours - theirs).abs().max().item()
    scale = max(ours.abs().max().item(), theirs.abs().max().item())
    return difference / scale if scale > 0 else difference


def crosscheck(path):
    """[(tensor, max relative difference)] for one reference file."""
    with h5py.File(path, "r") as handle:
        config = json.loads(handle.attrs["configuration"])
        case = handle.attrs["case"]
        params = {key: leaf(value) for key, value in group(handle, "params").items()}
        inputs = {key: leaf(value) for key, value in group(handle, "inputs").items()}
        options = group(handle, "options")
        stored = {
            name: group(handle, name)
            for name in ("outputs", "cotangents", "input_grads", "param_grads")
        }
    outputs = run(case, params, inputs, options, config)
    order = sorted(stored["outputs"], key=lambda key: tuple(map(int, key.split("."))))
    loss = sum(
        (out * torch.as_tensor(stored["cotangents"][key])).sum() for key, out in zip(order, outputs)
    )
    loss.backward()
    rows = [
        (f"outputs/{key}", max_rel(torch.as_tensor(stored["outputs"][key]), out.detach()))
        for key, out in zip(order, outputs)
    ]
    for key, grad in stored["input_grads"].items():
        rows.append((f"input_grads/{key}", max_rel(torch.as_tensor(grad), inputs[key].grad)))
    for key, grad in stored["param_grads"].items():
        rows.append((f"param_grads/{key}", max_rel(torch.as_tensor(grad), params[key].grad)))
    return rows


FILES = (
    "dense",
    "lstm",
    "lstm_2_layers_initial_state",
    "layernorm",
    "multiheadattention_full",
    "multiheadattention_causal",
    "multiheadattention_padding_mask",
    "transformerblock_gelu",
    "transformer_causal_in_out_projections",
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="a directory written by `npflows reference export`")
    args = parser.parse_args(argv)
    worst = 0.0
    print(f"{'file':<40} {'tensor':<44} {'max rel diff':>12}")
    for stem in FILES:
        path = Path(args.directory) / f"{stem}.h5"
        if not path.is_file():
            sys.exit(f"torch_crosscheck: {path}: no such file (run `npflows reference export`)")
        for tensor, difference in crosscheck(path):
            worst = max(worst, difference)
            print(f"{path.name:<40} {tensor:<44} {difference:>12.2e}")
    print(
        f"largest relative difference {worst:.2e} (threshold {THRESHOLD:g}), "
        f"torch {torch.__version__}"
    )
    return 0 if worst <= THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
