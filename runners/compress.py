"""Lossless compression with a trained model: `npflows compress` / `npflows decompress`.

A discrete flow is a bijection with a tractable base, so it is a lossless compressor: z =
model.reverse(x), z entropy-coded under the base; decoding decodes z and returns model.forward(z).
The entropy coder is constriction's range coder (a queue: symbols come back in the order they
went in) with one categorical table per symbol, `Categorical(perfect=False)`: a fast fixed-point
quantisation that leaves every symbol a nonzero probability. Three model kinds:
- FlowModel over a FactorizedCategorical (bipartite flows, or the base alone): one parallel
  reverse pass per batch of rows to encode, one forward pass to decode; every row shares the
  base's (D, K) table.
- FlowModel over an AutoregressiveCategorical (AR base, AR flows): reverse in one pass, then z
  walked position by position by `base.sequential`, in the encoder as in the decoder.
- charlm's LSTMLanguageModel: walked by its `sequential`, one LSTM step per position, up to EOS.

Determinism: the decoder must see the encoder's probabilities bit for bit. Both run the same code
on the same shapes: rows in file order, batches of `batch_size` rows (in the header), sequential
models walked by the one function that decodes. What is left is the machine: another BLAS, a GPU
or another dtype can round a logit differently, flip a flow's near-tied argmax or move a
quantised probability. The header records device and dtype (decompress uses that dtype), and the
sha256 of the original bytes turns any mismatch into an error, never into wrong output.

File: MAGIC, u32 header length, sha256 of the header, the header (JSON), the payload
(constriction's u32 words, little-endian). The header's fingerprint (sha256 of the checkpoint's
parameters and configuration and of the layout, vocabulary included) refuses another checkpoint.
"""

import hashlib
import json
import os
import struct
import tempfile
import time
from importlib.metadata import version

import constriction
import numpy

import layers
from npflows import backend
from npflows.nn import log_softmax

from . import charlm
from .compress_layouts import CompressionError, Sequences, TextChunks, TextRows
from .lstm_language_model import LSTMLanguageModel

MAGIC, FORMAT, VERSION = b"NPFLOWSZ", "npflows-compressed", 1
_PREFIX = struct.Struct("<8sI32s")  # magic, header length, sha256 of the header
CODER = f"constriction {version('constriction')} queue.RangeEncoder, stream.model.Categorical(perfect=False)"


def layout_of(experiment, model):
    """The file layout of an experiment's data (char-LM text, or a synthetic experiment's samples)."""
    if isinstance(experiment, charlm.CharLM):
        split = experiment.train_split
        return (TextRows if split.eos_id is not None else TextChunks)(split, experiment.length)
    render = getattr(experiment, "format_sequences", None)
    if callable(render) and isinstance(model, layers.FlowModel):
        return Sequences(render, model.base.length, model.K)
    raise CompressionError(
        f"compress: expected a char-LM or synthetic-sequence experiment, got {type(experiment).__name__}"
    )


def fingerprint(state, layout):
    """sha256 (hex) of a checkpoint's configuration, parameters (names, dtypes, shapes, bytes) and layout."""
    digest = hashlib.sha256(
        json.dumps(
            {"config": state.config, "layout": layout.description()}, sort_keys=True
        ).encode()
    )
    for name, array in state.params.items():
        array = numpy.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class _SymbolCoder:
    """constriction's range coder, one categorical table per symbol; the encoder also sums the
    model's own code length, -log2 p(symbol), to compare the file with."""

    family = constriction.stream.model.Categorical(perfect=False)

    def __init__(self, words=None):
        self.encoder = constriction.stream.queue.RangeEncoder() if words is None else None
        self.decoder = None if words is None else constriction.stream.queue.RangeDecoder(words)
        self.model_bits = 0.0

    def code(self, probs, symbols=None):
        """Encode symbols (m,) under probs (m, K), or decode m symbols: -> host int64 (m,)."""
        table = numpy.ascontiguousarray(backend.to_numpy(probs), dtype=numpy.float64)
        if self.decoder is not None:
            return self.decoder.decode(self.family, table).astype(numpy.int64)
        symbols = numpy.asarray(symbols, dtype=numpy.int32)
        chosen = table[numpy.arange(len(symbols)), symbols] / table.sum(axis=1)
        self.model_bits -= float(numpy.log2(chosen).sum())
        self.encoder.encode(symbols, self.family, table)
        return symbols.astype(numpy.int64)


def _sequential_choose(coder, layout, lengths, known=None):
    """choose(t, probs) for a model's `sequential` walk: codes position t of the rows still open
    (t < length and no stop symbol yet) and returns the column on the device: the known symbols
    (encoder) or the decoded ones, and layout.fill_id in closed rows on both sides, so that the
    two walks feed the network the same inputs at every step."""
    stopped = numpy.zeros(len(lengths), dtype=bool)

    def choose(t, probs):
        open_rows = (t < lengths) & ~stopped
        column = numpy.full(len(lengths), layout.fill_id, dtype=numpy.int64)
        if open_rows.any():
            column[open_rows] = coder.code(
                backend.to_numpy(probs)[open_rows], None if known is None else known[open_rows, t]
            )
        if layout.stop_id is not None:
            stopped[column == layout.stop_id] = True
        return backend.asarray(column)

    return choose


def _factorized_table(base, rows):
    """(rows * D, K) host probabilities of a FactorizedCategorical, row-major like z.ravel()."""
    probs = backend.to_numpy(
        backend.array_module(base.logits.data).exp(log_softmax(base.logits.data))
    )
    return numpy.broadcast_to(probs, (rows, *probs.shape)).reshape(-1, probs.shape[-1])


def _encode_batch(model, layout, tokens, lengths, coder):
    if isinstance(model, LSTMLanguageModel):
        model.sequential(
            len(tokens),
            layout.length,
            _sequential_choose(coder, layout, lengths, tokens),
            layout.stop_id,
        )
        return
    base_side = backend.to_numpy(model.reverse(backend.asarray(tokens)))
    if isinstance(model.base, layers.FactorizedCategorical):
        coder.code(_factorized_table(model.base, len(tokens)), base_side.ravel())
    else:
        model.base.sequential(len(tokens), _sequential_choose(coder, layout, lengths, base_side))


def _decode_batch(model, layout, lengths, coder):
    rows = len(lengths)
    if isinstance(model, LSTMLanguageModel):
        ids = backend.to_numpy(
            model.sequential(
                rows, layout.length, _sequential_choose(coder, layout, lengths), layout.stop_id
            )
        )
        after_stop = numpy.cumsum(ids == layout.stop_id, axis=1) - (ids == layout.stop_id) > 0
        ids[after_stop | (numpy.arange(layout.length) >= lengths[:, None])] = (
            layout.fill_id
        )  # the walk stops early
        return ids
    if isinstance(model.base, layers.FactorizedCategorical):
        base_side = backend.asarray(
            coder.code(_factorized_table(model.base, rows)).reshape(rows, -1)
        )
    else:
        base_side = model.base.sequential(rows, _sequential_choose(coder, layout, lengths))
    return backend.to_numpy(model.forward(base_side))


def encode_rows(model, layout, tokens, extra, batch_size):
    """Entropy-code a layout's rows (N, L) in batches -> (u32 words, the model's own code length in bits)."""
    lengths, coder = layout.lengths(len(tokens), extra), _SymbolCoder()
    for start in range(0, len(tokens), batch_size):
        _encode_batch(
            model,
            layout,
            tokens[start : start + batch_size],
            lengths[start : start + batch_size],
            coder,
        )
    return coder.encoder.get_compressed(), coder.model_bits


def decode_rows(model, layout, rows, extra, batch_size, words):
    """The rows (rows, L) host int64 that encode_rows coded into `words`, batch by batch as it did."""
    lengths, coder = layout.lengths(rows, extra), _SymbolCoder(words)
    parts = [
        _decode_batch(model, layout, lengths[start : start + batch_size], coder)
        for start in range(0, rows, batch_size)
    ]
    return numpy.concatenate(parts) if parts else numpy.zeros((0, layout.length), dtype=numpy.int64)


def _check_model(model):
    if isinstance(model, LSTMLanguageModel):
        return
    if not isinstance(model, layers.FlowModel) or not isinstance(
        model.base, (layers.FactorizedCategorical, layers.AutoregressiveCategorical)
    ):
        raise CompressionError(
            f"compress: expected a FlowModel over a factorised or autoregressive base, or the "
            f"char-LM's LSTM, got {type(model).__name__}"
        )


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise CompressionError(f"cannot read {path}: {error.strerror}") from None


def _write(path, blob):
    """Write atomically (temporary file, rename): OUTPUT is complete or untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp"
        )
        with os.fdopen(handle, "wb") as stream:
            stream.write(blob)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(
            temporary, 0o666 & ~umask
        )  # mkstemp's 0600: give OUTPUT the mode a plain open() would
        os.replace(temporary, path)
    except OSError as error:
        raise CompressionError(f"cannot write {path}: {error.strerror}") from None


def _sha256(blob):
    return hashlib.sha256(blob).hexdigest()


def _report(header, seconds, **values):
    symbols = max(header["symbols"], 1)
    return {
        **values,
        "original_bytes": header["original_bytes"],
        "symbols": header["symbols"],
        "unit": header["unit"],
        "seconds": seconds,
        "symbols_per_second": header["symbols"] / max(seconds, 1e-9),
        "model_bits_per_symbol": header["model_bits"] / symbols,
        "payload_bits_per_symbol": 32 * header["payload_words"] / symbols,
    }


def compress(state, experiment, model, input_path, output_path, batch_size=128):
    """Compress INPUT with a restored checkpoint's model into OUTPUT; -> a report dict."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CompressionError(f"compress: expected a batch size >= 1, got {batch_size!r}")
    _check_model(model)
    layout, data = layout_of(experiment, model), _read(input_path)
    tokens, extra = layout.to_rows(data, input_path)
    started = time.perf_counter()
    words, model_bits = encode_rows(model, layout, tokens, extra, batch_size)
    words, seconds = words.astype("<u4").tobytes(), time.perf_counter() - started
    header = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": fingerprint(state, layout),
        "experiment": state.config.get("experiment"),
        "step": state.step,
        "layout": layout.kind,
        "extra": extra,
        "rows": len(tokens),
        "batch_size": batch_size,
        "original_bytes": len(data),
        "original_sha256": _sha256(data),
        "symbols": layout.symbols(tokens, extra),
        "unit": layout.unit,
        "model_bits": model_bits,
        "device": backend.device(),
        "dtype": numpy.dtype(backend.default_dtype()).name,
        "coder": CODER,
        "payload_words": len(words) // 4,
        "payload_sha256": _sha256(words),
    }
    text = json.dumps(header, sort_keys=True).encode()
    blob = _PREFIX.pack(MAGIC, len(text), hashlib.sha256(text).digest()) + text + words
    _write(output_path, blob)
    return _report(
        header,
        seconds,
        compressed_bytes=len(blob),
        bits_per_symbol_on_disk=8 * len(blob) / max(header["symbols"], 1),
    )


def read_compressed(path):
    """(header dict, payload words) of a file written by `compress`; CompressionError when it is
    not one, or truncated, or damaged."""
    blob = _read(path)
    if len(blob) < _PREFIX.size or blob[: len(MAGIC)] != MAGIC:
        raise CompressionError(
            f"{path}: not an npflows compressed file (expected {MAGIC!r} at its start)"
        )
    _, size, digest = _PREFIX.unpack_from(blob)
    text = blob[_PREFIX.size : _PREFIX.size + size]
    if len(text) != size or hashlib.sha256(text).digest() != digest:
        raise CompressionError(f"{path}: damaged or truncated header (its sha256 does not match)")
    header = json.loads(text)
    if header.get("format") != FORMAT or header.get("version", VERSION + 1) > VERSION:
        raise CompressionError(
            f"{path}: expected format {FORMAT} version <= {VERSION}, got {header.get('format')} "
            f"version {header.get('version')}"
        )
    payload = blob[_PREFIX.size + size :]
    if len(payload) != 4 * header["payload_words"] or _sha256(payload) != header["payload_sha256"]:
        raise CompressionError(
            f"{path}: truncated or damaged: expected {4 * header['payload_words']} payload bytes "
            f"with the header's sha256, got {len(payload)} bytes that do not match"
        )
    return header, numpy.frombuffer(payload, dtype="<u4").astype(numpy.uint32)


def decompress(
    state, experiment, model, header, words, output_path, checkpoint_path="the checkpoint"
):
    """Decode (header, words) of `read_compressed` with the same checkpoint into OUTPUT; -> a report dict.
    Nothing is written unless the decoded bytes have the original's length and sha256."""
    _check_model(model)
    layout = layout_of(experiment, model)
    if header["fingerprint"] != fingerprint(state, layout):
        raise CompressionError(
            f"decompress: the file was compressed with another checkpoint (fingerprint "
            f"{header['fingerprint'][:12]}...), not {checkpoint_path} ({fingerprint(state, layout)[:12]}...)"
        )
    rows, started = header["rows"], time.perf_counter()
    tokens = decode_rows(model, layout, rows, header["extra"], header["batch_size"], words)
    machine = (
        f"compressed on {header['device']}/{header['dtype']}, decoded on "
        f"{backend.device()}/{numpy.dtype(backend.default_dtype()).name}"
    )
    try:
        data = layout.from_rows(tokens, rows, header["extra"])
        if len(data) != header["original_bytes"] or _sha256(data) != header["original_sha256"]:
            raise CompressionError("the decoded bytes differ from the original (length or sha256)")
    except CompressionError as error:
        raise CompressionError(
            f"decompress: {error}; the decoder's probabilities were not the encoder's ({machine}; "
            f"another BLAS, GPU or dtype can flip a near-tied argmax). Nothing written."
        ) from None
    seconds = time.perf_counter() - started
    _write(output_path, data)
    return _report(header, seconds, decompressed_bytes=len(data))
