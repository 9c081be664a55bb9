"""How a file's bytes become a model's rows of token ids and back, exactly (runners/compress.py).

Three layouts, one per kind of experiment data:
- `TextRows` (char-LM on PTB rows): one row a line, the characters, EOS, then PAD up to the
  model's length L; a line holds at most L - 1 characters. Vocabularies whose word boundary is
  `_` and that lack a space (PTB) read a space as `_`, so plain text works; a literal `_` is
  then an error (it would come back as a space).
- `TextChunks` (char-LM on text8 or any text file): one stream cut into rows of L; the last,
  partial row is padded with id 0 (a flow codes the padding too; an AR model stops at the
  length). A final newline outside the vocabulary (text8) is kept aside.
- `Sequences` (the synthetic experiments): a file as `npflows sample` writes it; it must be
  exactly the experiment's own rendering of its integers (plus one optional final newline).

`to_rows(data) -> (tokens (N, L) int64, extra)`; `extra` goes into the file's header and back
into `from_rows(tokens, rows, extra) -> bytes` and `lengths(rows, extra)`: an AR model codes
positions t < lengths[n] of row n (and stops after `stop_id`). `symbols(tokens, extra)` counts
what bits per symbol divide by (PTB: characters + one EOS a row, as bits_per_character does).
Every problem with the input is a CompressionError naming line and column.
"""

import numpy

from npflows.errors import UsageError

from . import chardata


class CompressionError(UsageError):
    """An input, a compressed file or a checkpoint that cannot be used; the message says why."""


def _text(data, name):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CompressionError(
            f"{name}: not UTF-8 at byte {error.start} ({error.reason})"
        ) from None


def _where(codepoints, position):
    """'line L, column C' of a position in a code-point array (1-based)."""
    newlines = numpy.flatnonzero(codepoints[:position] == ord("\n"))
    column = position - (newlines[-1] + 1 if len(newlines) else 0) + 1
    return f"line {len(newlines) + 1}, column {column}"


def _string(codepoints):
    return numpy.asarray(codepoints, dtype="<u4").tobytes().decode("utf-32-le")


class _Layout:
    """Defaults: every row codes all L positions; no stop symbol; padding is id 0."""

    stop_id, fill_id = None, 0

    def lengths(self, rows, extra):
        return numpy.full(rows, self.length)


class _CharacterLayout(_Layout):
    """What TextRows and TextChunks share: the vocabulary's characters as code points."""

    def __init__(self, dataset, length):
        self.vocab, self.length = list(dataset.vocab), int(length)
        characters = [symbol for symbol in self.vocab if len(symbol) == 1]
        self.vocab_codepoints = numpy.array(
            [ord(symbol) for symbol in characters], dtype=numpy.int64
        )
        self.space_as = (
            dataset.word_boundary if dataset.word_boundary and " " not in characters else None
        )

    def description(self):
        return {"kind": self.kind, "vocab": self.vocab, "length": self.length}

    def _ids(self, data, name):
        text = _text(data, name)
        if self.space_as and self.space_as in text:
            position = text.index(self.space_as)
            raise CompressionError(
                f"{name}: {_where(chardata._codepoints(text), position)}: {self.space_as!r} is this "
                f"vocabulary's word boundary, read from a space; it would come back as a space"
            )
        if self.space_as:
            text = text.replace(" ", self.space_as)
        codepoints = chardata._codepoints(text).astype(numpy.int64)
        return codepoints, chardata._lookup(codepoints, self.vocab_codepoints).astype(numpy.int64)

    def _unknown(self, name, codepoints, ids, allowed=()):
        unknown = (ids < 0) & ~numpy.isin(codepoints, allowed)
        if unknown.any():
            position = int(numpy.argmax(unknown))
            raise CompressionError(
                f"{name}: {_where(codepoints, position)}: character {chr(codepoints[position])!r} is "
                f"not in the checkpoint's vocabulary of {len(self.vocab_codepoints)} characters"
            )

    def _bytes(self, codepoints):
        text = _string(codepoints)
        return (text.replace(self.space_as, " ") if self.space_as else text).encode("utf-8")


class TextRows(_CharacterLayout):
    """One row a line: characters, EOS, PAD (PTB rows)."""

    kind, unit = "text-rows", "character (+ EOS a line)"

    def __init__(self, dataset, length):
        super().__init__(dataset, length)
        self.stop_id, self.fill_id = dataset.eos_id, dataset.pad_id

    def to_rows(self, data, name="input"):
        codepoints, ids = self._ids(data, name)
        self._unknown(name, codepoints, ids, allowed=(ord("\n"),))
        final_newline = bool(len(codepoints)) and codepoints[-1] == ord("\n")
        if final_newline:
            codepoints, ids = codepoints[:-1], ids[:-1]
        ends = numpy.append(numpy.flatnonzero(codepoints == ord("\n")), len(codepoints))
        starts = numpy.concatenate([[0], ends[:-1] + 1])
        line_lengths = ends - starts
        if line_lengths.max() >= self.length:
            line = int(numpy.argmax(line_lengths >= self.length))
            raise CompressionError(
                f"{name}: line {line + 1} has {line_lengths[line]} characters; this checkpoint's rows "
                f"hold at most {self.length - 1} (and EOS)"
            )
        rows = len(line_lengths)
        tokens = numpy.full((rows, self.length), self.fill_id, dtype=numpy.int64)
        in_line = codepoints != ord("\n")
        row_of = numpy.repeat(numpy.arange(rows), line_lengths)
        tokens[
            row_of, numpy.arange(len(codepoints))[in_line] - numpy.repeat(starts, line_lengths)
        ] = ids[in_line]
        tokens[numpy.arange(rows), line_lengths] = self.stop_id
        return tokens, {"final_newline": bool(final_newline)}

    def from_rows(self, tokens, rows, extra):
        """Inverse of to_rows; rows that are not characters, EOS, PAD* are a CompressionError."""
        is_stop = tokens == self.stop_id
        ends = numpy.argmax(is_stop, axis=1)
        positions = numpy.arange(self.length)
        well_formed = (
            is_stop.any(axis=1)
            & ((tokens < self.stop_id) | (positions >= ends[:, None])).all(axis=1)
            & ((tokens == self.fill_id) | (positions <= ends[:, None])).all(axis=1)
        )
        if not well_formed.all():
            raise CompressionError(
                f"decoded row {int(numpy.argmin(well_formed))} is not characters, EOS, PAD"
            )
        codepoints = numpy.full((len(tokens), self.length + 1), -1, dtype=numpy.int64)
        characters = positions < ends[:, None]
        codepoints[:, :-1][characters] = self.vocab_codepoints[tokens[characters]]
        codepoints[numpy.arange(len(tokens)), ends] = ord("\n")
        codepoints = codepoints[codepoints >= 0]
        return self._bytes(codepoints if extra["final_newline"] else codepoints[:-1])

    def symbols(self, tokens, extra):
        return int((numpy.cumsum(tokens == self.stop_id, axis=1) == 0).sum()) + len(tokens)


class TextChunks(_CharacterLayout):
    """One character stream in rows of L, the last one partial (text8, any text file)."""

    kind, unit = "text-chunks", "character"

    def to_rows(self, data, name="input"):
        codepoints, ids = self._ids(data, name)
        final_newline = bool(len(codepoints)) and codepoints[-1] == ord("\n") and ids[-1] < 0
        if final_newline:
            codepoints, ids = codepoints[:-1], ids[:-1]
        self._unknown(name, codepoints, ids)
        rows = -(-len(ids) // self.length)
        tokens = numpy.full(rows * self.length, self.fill_id, dtype=numpy.int64)
        tokens[: len(ids)] = ids
        return tokens.reshape(rows, self.length), {
            "final_newline": bool(final_newline),
            "characters": len(ids),
        }

    def from_rows(self, tokens, rows, extra):
        codepoints = self.vocab_codepoints[tokens.ravel()[: extra["characters"]]]
        return self._bytes(
            numpy.append(codepoints, ord("\n")) if extra["final_newline"] else codepoints
        )

    def lengths(self, rows, extra):
        return numpy.minimum(self.length, extra["characters"] - self.length * numpy.arange(rows))

    def symbols(self, tokens, extra):
        return extra["characters"]


class Sequences(_Layout):
    """A file as `npflows sample` writes it for a synthetic experiment: `render(ids)` is its text."""

    kind, unit = "sequences", "sequence"

    def __init__(self, render, length, K):
        self.render, self.length, self.K = render, int(length), int(K)

    def description(self):
        return {"kind": self.kind, "length": self.length, "K": self.K}

    def to_rows(self, data, name="input"):
        text = _text(data, name)
        words = text.split()
        if not all(word.isdecimal() and word.isascii() for word in words):
            bad = next(word for word in words if not (word.isdecimal() and word.isascii()))
            raise CompressionError(
                f"{name}: expected class ids (integers) separated by whitespace, got {bad!r}"
            )
        ids = numpy.array([int(word) for word in words], dtype=numpy.int64)
        if len(ids) % self.length or (len(ids) and ids.max() >= self.K):
            raise CompressionError(
                f"{name}: expected sequences of {self.length} ids in [0, {self.K}), got {len(ids)} "
                f"ids, max {ids.max(initial=0)}"
            )
        tokens = ids.reshape(-1, self.length)
        canonical = self.render(tokens)
        if text not in (canonical, canonical + "\n"):
            position = next(
                (i for i, (a, b) in enumerate(zip(text, canonical + "\n")) if a != b),
                len(canonical),
            )
            raise CompressionError(
                f"{name}: {_where(chardata._codepoints(text), position)}: not written as `npflows "
                f"sample` writes this experiment's sequences (spacing or line breaks differ)"
            )
        return tokens, {"final_newline": text != canonical}

    def from_rows(self, tokens, rows, extra):
        return (self.render(tokens) + ("\n" if extra["final_newline"] else "")).encode("ascii")

    def symbols(self, tokens, extra):
        return len(tokens)
