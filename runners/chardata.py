"""Character-level data for the paper's language models (sections 4.4 PTB and 4.5 text8).

Every loader returns a dict of `CharDataset` by split name: `tokens: (N, L)` int32,
`mask: (N, L)` float32 (1.0 where a position counts in bits per character), `vocab` (list of
symbols; id i is vocab[i]), `metadata` and `decode(ids) -> str`.

PTB, Mikolov et al. (2012) format (`load_ptb`: ptb.char.{train,valid,test}.txt in a directory)
    One sentence a line, characters separated by single spaces, `_` a word boundary; a line may
    open and close with one space and the file may end with " \\n " (the official files do).
    Anything else (two characters without a space between them, two spaces, a tab, a carriage
    return, an empty line, an empty file, bytes that are not UTF-8) is a ValueError naming file
    and line. Row n holds sentence n: characters at positions 0..len_n-1, EOS at len_n, PAD at
    len_n+1..L-1, L = max_length = 288 (the paper's D). A sentence is kept when it and its EOS
    fit (len_n + 1 <= 288, i.e. at most 287 characters); longer ones are dropped from every
    split and counted in metadata["dropped_too_long"] (and "dropped_characters").
    Bits per character count the real characters plus one EOS per sentence:
        mask[n, t] = 1.0 if t <= len_n else 0.0        (PAD positions after EOS are masked out)
        bpc = sum(mask * nll_nats) / (sum(mask) * ln 2)  (`bits_per_character`)
    so the denominator is metadata["counted_positions"] = characters + sentences. PAD is a
    symbol of the vocabulary that the model predicts (a flow models all L positions); it just
    does not count in bpc. Vocabulary: the distinct characters of the kept training sentences
    sorted by code point, then EOS "<eos>" (id K-2) and PAD "<pad>" (id K-1): K = 49 + 2 = 51 on
    PTB, the paper's K. A character of a kept evaluation sentence outside it is a ValueError
    naming the character, file and line.
    Development machines only have ptb.char.valid.txt (`load_ptb_dev_split`, default path
    ../shared/data/ptb_char/ relative to the repository root): its first
    round(train_fraction * n_sentences) sentences are "train", the rest "eval"; dropping
    over-long sentences happens after this split. (round means half up: floor(x + 1/2).)

text8 (`load_text8`) and any UTF-8 text (`load_text`)
    The file is one stream of characters (newlines are characters). It is cut at
    round(n * f_train) and round(n * (f_train + f_valid)) into train/valid/test: 90M/5M/5M for
    text8's 100,000,000 characters with fractions (0.9, 0.05, 0.05), the same proportions for
    a smaller file (`split_bounds`). Each part is cut into non-overlapping chunks of seq_len
    (256 for text8), no padding, no EOS; the tail shorter than seq_len is dropped and counted
    in metadata["dropped_tail"]; mask is all ones (a read-only broadcast view). text8 has a
    fixed vocabulary of 27 symbols, " abcdefghijklmnopqrstuvwxyz"; one final newline is
    ignored, any other character is a ValueError. For other text the vocabulary is the sorted
    distinct characters of the train part; an unseen character in valid/test is a ValueError
    naming character, file and line.

Cache
    The vocabulary-independent parse of each source file (its code points and, for PTB, sentence
    offsets) is cached in HDF5, so one cache serves every length, fraction and vocabulary. It
    lives at `<source>.npflows.h5` when the source's directory grants write permission in its
    mode bits (checked on the bits, so that root does not write into read-only shared folders),
    else at `<cache_dir>/<source name>.<12 hex of its absolute path>.npflows.h5`, cache_dir being
    $NPFLOWS_CACHE_DIR or ~/.cache/npflows; an explicit `cache_dir=` is the only place used.
    The cache stores the source's size, mtime_ns and sha256; the source is hashed at every load
    and the cache reused when size and sha256 match (a touched but unchanged file is reused),
    rebuilt otherwise. Writes go to a temporary file in the same directory, then os.replace
    (atomic: concurrent MPI ranks each write a whole file, the last rename wins). A corrupt
    cache is rebuilt; `use_cache=False` skips caching; `cache_stats` counts parses and reuses.
"""

import hashlib
import math
import os
import re
import stat
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from npflows import backend
from npflows.errors import UsageError

EOS, PAD = "<eos>", "<pad>"
PTB_MAX_LENGTH = 288
PTB_FILES = {
    "train": "ptb.char.train.txt",
    "valid": "ptb.char.valid.txt",
    "test": "ptb.char.test.txt",
}
DEV_PTB_PATH = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb_char" / PTB_FILES["valid"]
)
TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"
TEXT8_SEQ_LEN = 256
CACHE_VERSION = 1
cache_stats = {"parsed": 0, "reused": 0}


class DataError(UsageError):
    """A data file (or a data option) that cannot be used; the message names the file and line."""


class MissingDataError(DataError, FileNotFoundError):
    """No file (or not a regular file) where the data should be."""


@dataclass
class CharDataset:
    """One split. tokens: (N, L) int32 ids into vocab; mask: (N, L) float32, 1.0 where counted."""

    name: str
    tokens: np.ndarray
    mask: np.ndarray
    vocab: list
    metadata: dict = field(default_factory=dict)
    eos_id: Optional[int] = None
    pad_id: Optional[int] = None
    word_boundary: Optional[str] = None

    @property
    def vocab_size(self):
        return len(self.vocab)

    def decode(self, ids):
        """ids: (L,) -> str, or (N, L) -> list of str. Stops at the first EOS, skips PAD, and
        turns the word boundary `_` into a space (PTB)."""
        ids = backend.to_numpy(ids)
        if ids.ndim == 2:
            return [self.decode(row) for row in ids]
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(
                f"CharDataset.decode: expected integer ids of shape (L,) or (N, L), got {ids.dtype} {ids.shape}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"CharDataset.decode: expected ids in [0, {self.vocab_size}), got [{ids.min()}, {ids.max()}]"
            )
        if self.eos_id is not None and (ids == self.eos_id).any():
            ids = ids[: int(np.argmax(ids == self.eos_id))]
        text = "".join(self.vocab[i] for i in ids.tolist() if i != self.pad_id)
        return text.replace(self.word_boundary, " ") if self.word_boundary else text


def bits_per_character(nll_nats, mask):
    """nll_nats: (N, L) per-position negative log-likelihood in nats; mask: (N, L) -> bpc."""
    if nll_nats.shape != mask.shape:
        raise ValueError(
            f"bits_per_character: expected nll and mask of one shape, got {nll_nats.shape} and {mask.shape}"
        )
    # float64 sums: a float32 count of ones stops being exact past 2**24 positions (text8 train)
    return float((nll_nats * mask).sum(dtype="float64")) / (
        float(mask.sum(dtype="float64")) * math.log(2)
    )


# ---------------------------------------------------------------- parsing (cached per file)
_PTB_LINE = re.compile(r" ?\S(?: \S)* ?")


def _decode_utf8(path, data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 at byte {error.start} ({error.reason})"
        ) from None


def _codepoints(text):
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    narrow = np.uint8 if codepoints.max(initial=0) < 256 else np.uint32
    return codepoints.astype(narrow)


def _ptb_format_problem(line):
    for column, char in enumerate(line, 1):
        if char == "\t":
            return f"tab at column {column}"
        if char == "\r":
            return f"carriage return at column {column} (Windows line ending?)"
        if char.isspace() and char != " ":
            return f"whitespace {char!r} at column {column}"
    if "  " in line:
        return f"two spaces at column {line.index('  ') + 1}"
    if not line.strip(" "):
        return "empty line"
    for column in range(1, len(line)):
        if line[column - 1] != " " and line[column] != " ":
            return f"characters {line[column - 1]!r} and {line[column]!r} not separated by a space at column {column}"
    return "unexpected format"  # pragma: no cover - the regex and the checks above agree


def _parse_ptb(path, data):
    lines = _decode_utf8(path, data).split("\n")
    if lines[-1].strip(" ") == "":  # the final newline, and the official files' " " after it
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty file, expected one sentence a line")
    sentences = []
    for number, line in enumerate(lines, 1):
        if not _PTB_LINE.fullmatch(line):
            raise DataError(
                f"{path}:{number}: {_ptb_format_problem(line)}; expected characters separated by single spaces"
            )
        sentences.append(line.strip(" ")[0::2])
    lengths = np.fromiter(map(len, sentences), np.int64, len(sentences))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return {"codepoints": _codepoints("".join(sentences)), "offsets": offsets}


def _parse_text(path, data):
    text = _decode_utf8(path, data)
    if not text:
        raise DataError(f"{path}: empty file")
    return {"codepoints": _codepoints(text)}


def _writable(directory):
    mode = directory.stat().st_mode
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(
        directory, os.W_OK
    )


def _cache_paths(source, cache_dir):
    fallback_dir = Path(
        cache_dir or os.environ.get("NPFLOWS_CACHE_DIR", "~/.cache/npflows")
    ).expanduser()
    tag = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    fallback = fallback_dir / f"{source.name}.{tag}.npflows.h5"
    if cache_dir is None and _writable(source.parent):
        return [source.with_name(source.name + ".npflows.h5"), fallback]
    return [fallback]


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_cache(candidate, kind, size, sha256):
    if not candidate.is_file():
        return None
    try:
        with h5py.File(candidate, "r") as cache:
            expected = {
                "version": CACHE_VERSION,
                "kind": kind,
                "source_size": size,
                "source_sha256": sha256,
            }
            if any(cache.attrs.get(key) != value for key, value in expected.items()):
                return None
            return {name: cache[name][()] for name in cache}
    except (OSError, KeyError):  # unreadable or half-written by another tool: rebuild
        return None


def _write_cache(candidates, kind, source, data, mtime_ns, arrays):
    for target in candidates:
        temp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(
                dir=target.parent, prefix=target.name + ".", suffix=".tmp"
            )
            os.close(handle)
            with h5py.File(temp, "w") as cache:
                cache.attrs.update(
                    version=CACHE_VERSION,
                    kind=kind,
                    source_path=str(source.resolve()),
                    source_size=len(data),
                    source_mtime_ns=mtime_ns,
                    source_sha256=hashlib.sha256(data).hexdigest(),
                )
                for name, array in arrays.items():
                    cache.create_dataset(name, data=array)
            os.replace(temp, target)
            return target
        except OSError:
            if temp is not None and os.path.exists(temp):
                os.unlink(temp)
    warnings.warn(
        f"chardata: could not write a cache for {source} (tried {[str(c) for c in candidates]})"
    )
    return None


def _read_source(path, kind, parser, cache_dir, use_cache):
    """The parse of one source file: from its cache when size and sha256 match, else parsed."""
    if not path.is_file():
        what = "a directory" if path.is_dir() else "nothing"
        raise MissingDataError(f"chardata: expected a data file at {path.resolve()}, found {what}")
    try:
        return _parse_or_reuse(path, kind, parser, cache_dir, use_cache)
    except OSError as error:  # unreadable (permissions), or gone since is_file()
        raise DataError(
            f"chardata: cannot read {path.resolve()}: {error.strerror or error}"
        ) from None


def _parse_or_reuse(path, kind, parser, cache_dir, use_cache):
    candidates = _cache_paths(path, cache_dir) if use_cache else []
    if candidates:
        size, sha256 = path.stat().st_size, _sha256_file(path)
        for candidate in candidates:
            arrays = _load_cache(candidate, kind, size, sha256)
            if arrays is not None:
                cache_stats["reused"] += 1
                return arrays
    mtime_ns, data = path.stat().st_mtime_ns, path.read_bytes()
    arrays = parser(path, data)
    cache_stats["parsed"] += 1
    if candidates:
        _write_cache(candidates, kind, path, data, mtime_ns, arrays)
    return arrays


# ---------------------------------------------------------------- tokens, splits, datasets
def _lookup(codepoints, vocab_codepoints):
    """Ids of `codepoints` in the sorted `vocab_codepoints`; -1 where a code point is absent."""
    size = int(max(codepoints.max(initial=0), vocab_codepoints.max(initial=0))) + 1
    table = np.full(size, -1, np.int32)
    table[vocab_codepoints] = np.arange(len(vocab_codepoints), dtype=np.int32)
    return table[codepoints]


def _ptb_split(name, path, parsed, first, stop, vocab_codepoints, max_length, vocab_source):
    """Sentences first..stop-1 (lines first+1..stop) -> (CharDataset, vocab code points);
    vocab_codepoints None builds the vocabulary from these sentences."""
    offsets = parsed["offsets"][first : stop + 1]
    lengths = np.diff(offsets)
    keep = lengths + 1 <= max_length
    kept_lengths, kept_lines = lengths[keep], first + 1 + np.flatnonzero(keep)
    if not keep.any():
        raise DataError(
            f"{path}: no sentence of at most {max_length - 1} characters in lines {first + 1}-{stop}"
        )
    codepoints = parsed["codepoints"][offsets[0] : offsets[-1]][np.repeat(keep, lengths)]
    if vocab_codepoints is None:
        vocab_codepoints = np.unique(codepoints)
    ids = _lookup(codepoints, vocab_codepoints)
    if (ids < 0).any():
        position = int(np.argmax(ids < 0))
        line = kept_lines[np.searchsorted(np.cumsum(kept_lengths), position, side="right")]
        raise DataError(
            f"{path}:{line}: character {chr(codepoints[position])!r} does not occur in the "
            f"training split ({vocab_source}) that defines the vocabulary"
        )
    count, eos, pad = len(kept_lengths), len(vocab_codepoints), len(vocab_codepoints) + 1
    tokens = np.full((count, max_length), pad, np.int32)
    rows = np.repeat(np.arange(count), kept_lengths)
    columns = np.arange(len(codepoints)) - np.repeat(
        np.cumsum(kept_lengths) - kept_lengths, kept_lengths
    )
    tokens[rows, columns] = ids
    tokens[np.arange(count), kept_lengths] = eos
    mask = (np.arange(max_length) <= kept_lengths[:, None]).astype(np.float32)
    metadata = {
        "source": str(path),
        "lines": (first + 1, stop),
        "sentences": len(lengths),
        "kept": count,
        "dropped_too_long": int((~keep).sum()),
        "dropped_characters": int(lengths[~keep].sum()),
        "characters": int(kept_lengths.sum()),
        "counted_positions": int(kept_lengths.sum()) + count,
        "max_length": max_length,
    }
    vocab = [chr(c) for c in vocab_codepoints] + [EOS, PAD]
    dataset = CharDataset(
        name, tokens, mask, vocab, metadata, eos_id=eos, pad_id=pad, word_boundary="_"
    )
    return dataset, vocab_codepoints


def _check_max_length(max_length):
    if not isinstance(max_length, (int, np.integer)) or max_length < 2:
        raise DataError(
            f"chardata: expected max_length an integer >= 2 (a character and EOS), got {max_length!r}"
        )


def load_ptb(directory, *, max_length=PTB_MAX_LENGTH, cache_dir=None, use_cache=True):
    """Mikolov's ptb.char.{train,valid,test}.txt in `directory` -> {"train", "valid", "test"}."""
    _check_max_length(max_length)
    directory = Path(directory)
    paths = {split: directory / filename for split, filename in PTB_FILES.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise MissingDataError(
            f"load_ptb: missing {', '.join(missing)} (looked in {directory.resolve()})"
        )
    datasets, vocab_codepoints = {}, None
    for split, path in paths.items():
        parsed = _read_source(path, "ptb", _parse_ptb, cache_dir, use_cache)
        datasets[split], vocab_codepoints = _ptb_split(
            f"ptb/{split}",
            path,
            parsed,
            0,
            len(parsed["offsets"]) - 1,
            vocab_codepoints,
            max_length,
            paths["train"],
        )
    return datasets


def load_ptb_dev_split(
    path=DEV_PTB_PATH,
    train_fraction=0.9,
    *,
    max_length=PTB_MAX_LENGTH,
    cache_dir=None,
    use_cache=True,
):
    """One PTB file (a directory means its ptb.char.valid.txt) -> {"train", "eval"} by sentences."""
    _check_max_length(max_length)
    path = Path(path)
    if path.is_dir():
        path = path / PTB_FILES["valid"]
    if not path.is_file():
        raise MissingDataError(
            f"load_ptb_dev_split: looked for the PTB file at {path.resolve()} and found nothing "
            f"(the development copy lives at ../shared/data/ptb_char/ relative to the repository root)"
        )
    if not 0 < train_fraction < 1:
        raise DataError(
            f"load_ptb_dev_split: expected train_fraction in (0, 1), got {train_fraction!r}"
        )
    parsed = _read_source(path, "ptb", _parse_ptb, cache_dir, use_cache)
    count = len(parsed["offsets"]) - 1
    n_train = _round_half_up(train_fraction * count)
    if not 0 < n_train < count:
        raise DataError(
            f"load_ptb_dev_split: {path} has {count} sentences; train_fraction {train_fraction} leaves a part empty"
        )
    train, vocab_codepoints = _ptb_split(
        "ptb-dev/train", path, parsed, 0, n_train, None, max_length, f"{path} lines 1-{n_train}"
    )
    evaluation, _ = _ptb_split(
        "ptb-dev/eval",
        path,
        parsed,
        n_train,
        count,
        vocab_codepoints,
        max_length,
        f"{path} lines 1-{n_train}",
    )
    return {"train": train, "eval": evaluation}


def _round_half_up(value):
    return int(math.floor(value + 0.5))


def split_bounds(n_characters, fractions):
    """(valid start, test start) = (round(n f_train), round(n (f_train + f_valid))), half up."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise DataError(
            f"chardata: expected three positive (train, valid, test) fractions summing to 1, got {fractions!r}"
        )
    return _round_half_up(n_characters * fractions[0]), _round_half_up(
        n_characters * (fractions[0] + fractions[1])
    )


def _load_stream(path, kind, seq_len, fractions, alphabet, cache_dir, use_cache):
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise DataError(f"chardata: expected seq_len a positive integer, got {seq_len!r}")
    path = Path(path)
    codepoints = _read_source(path, "text", _parse_text, cache_dir, use_cache)["codepoints"]
    if alphabet is not None and codepoints[-1] == ord("\n"):
        codepoints = codepoints[:-1]
    bounds = (0, *split_bounds(len(codepoints), fractions), len(codepoints))
    if alphabet is not None:
        vocab_codepoints, vocab_source = (
            np.array(sorted(map(ord, alphabet))),
            f"the {kind} alphabet {alphabet!r}",
        )
    else:
        vocab_codepoints = np.unique(codepoints[: bounds[1]])
        vocab_source = f"the training part (characters 0-{bounds[1] - 1})"
    ids = _lookup(codepoints, vocab_codepoints)
    if (ids < 0).any():
        position = int(np.argmax(ids < 0))
        line = int(np.count_nonzero(codepoints[:position] == ord("\n"))) + 1
        raise DataError(
            f"{path}:{line}: character {chr(codepoints[position])!r} (offset {position}) does not "
            f"occur in {vocab_source} that defines the vocabulary"
        )
    vocab, datasets = [chr(c) for c in vocab_codepoints], {}
    for split, start, stop in zip(("train", "valid", "test"), bounds[:-1], bounds[1:]):
        count = (stop - start) // seq_len
        if count == 0:
            raise DataError(
                f"{path}: the {split} part has {stop - start} characters, fewer than seq_len={seq_len}"
            )
        tokens = ids[start : start + count * seq_len].reshape(count, seq_len)
        metadata = {
            "source": str(path),
            "characters": (start, stop),
            "seq_len": seq_len,
            "dropped_tail": stop - start - count * seq_len,
            "counted_positions": count * seq_len,
        }
        mask = np.broadcast_to(
            np.float32(1), tokens.shape
        )  # read-only view: text8's would be 360 MB
        datasets[split] = CharDataset(f"{kind}/{split}", tokens, mask, list(vocab), metadata)
    return datasets


def load_text8(
    path, *, seq_len=TEXT8_SEQ_LEN, fractions=(0.9, 0.05, 0.05), cache_dir=None, use_cache=True
):
    """text8 (one line over a-z and space) -> {"train", "valid", "test"} of (N, seq_len) chunks."""
    return _load_stream(path, "text8", seq_len, fractions, TEXT8_ALPHABET, cache_dir, use_cache)


def load_text(path, *, seq_len=256, fractions=(0.9, 0.05, 0.05), cache_dir=None, use_cache=True):
    """Any UTF-8 file -> {"train", "valid", "test"} of (N, seq_len) chunks, vocabulary from train."""
    return _load_stream(path, "text", seq_len, fractions, None, cache_dir, use_cache)
