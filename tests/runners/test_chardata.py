"""runners/chardata.py: PTB, text8 and plain-text loaders, their conventions, errors and cache."""

import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runners import chardata
from runners.chardata import EOS, PAD


def ptb_text(sentences, official_layout=True):
    """Sentences ('_' for spaces) in Mikolov's layout: the official files are every character and
    newline joined by single spaces, plus a final space; the plain layout has neither extra."""
    if official_layout:
        return " \n ".join(" ".join(sentence) for sentence in sentences) + " \n "
    return "\n".join(" ".join(sentence) for sentence in sentences) + "\n"


def write_ptb_dir(directory, train, valid=None, test=None, official_layout=True):
    """The three official files; valid and test default to the training sentences."""
    for name, sentences in (("train", train), ("valid", valid or train), ("test", test or train)):
        (Path(directory) / f"ptb.char.{name}.txt").write_text(ptb_text(sentences, official_layout))
    return Path(directory)


def test_ptb_rows_hold_characters_then_eos_then_pad_with_exact_mask(tmp_path):
    write_ptb_dir(tmp_path, ["ab_c", "b"], valid=["cab"], test=["a"])
    data = chardata.load_ptb(tmp_path, max_length=6, use_cache=False)
    train = data["train"]
    assert train.vocab == ["_", "a", "b", "c", EOS, PAD]
    assert (train.eos_id, train.pad_id) == (4, 5)
    np.testing.assert_array_equal(train.tokens, [[1, 2, 0, 3, 4, 5], [2, 4, 5, 5, 5, 5]])
    np.testing.assert_array_equal(train.mask, [[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]])
    assert train.tokens.dtype == np.int32 and train.mask.dtype == np.float32
    assert train.metadata["counted_positions"] == 5 + 2 == int(train.mask.sum())
    np.testing.assert_array_equal(data["valid"].tokens, [[3, 1, 2, 4, 5, 5]])
    assert data["test"].vocab == train.vocab
    assert train.decode(train.tokens) == ["ab c", "b"]


@given(
    st.lists(st.text(alphabet="ab_<>N.", min_size=1, max_size=12), min_size=1, max_size=6),
    st.booleans(),
)
def test_decode_inverts_loading_in_either_layout(sentences, official_layout):
    with tempfile.TemporaryDirectory() as directory:
        write_ptb_dir(directory, sentences, official_layout=official_layout)
        train = chardata.load_ptb(directory, max_length=13, use_cache=False)["train"]
    assert train.decode(train.tokens) == [sentence.replace("_", " ") for sentence in sentences]
    lengths = np.array([len(sentence) for sentence in sentences])
    np.testing.assert_array_equal(train.mask.sum(axis=1), lengths + 1)
    np.testing.assert_array_equal(train.tokens[np.arange(len(sentences)), lengths], train.eos_id)
    assert train.vocab[:-2] == sorted(set("".join(sentences)))


def test_sentences_that_do_not_fit_with_their_eos_are_dropped_and_counted(tmp_path):
    write_ptb_dir(tmp_path, ["aaa", "aaaa", "aaaaa", "aaaaaa", "a"], valid=["aaaaa", "aa"])
    data = chardata.load_ptb(tmp_path, max_length=5, use_cache=False)
    train, valid = data["train"], data["valid"]
    assert train.decode(train.tokens) == ["aaa", "aaaa", "a"]
    assert (train.metadata["dropped_too_long"], train.metadata["dropped_characters"]) == (2, 11)
    assert (valid.metadata["kept"], valid.metadata["dropped_too_long"]) == (1, 1)


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        (b"a b\nab c\n", 2, "'a' and 'b' not separated by a space"),
        (b"a\tb\n", 1, "tab at column 2"),
        (b"a b\na  b\n", 2, "two spaces"),
        (b"a b\n\nc\n", 2, "empty line"),
        (b"a b\r\n", 1, "carriage return"),
        (b"a b\n\xff a\n", 2, "not UTF-8"),
    ],
)
def test_format_errors_name_file_and_line(tmp_path, content, line, fragment):
    write_ptb_dir(tmp_path, ["a"])
    (tmp_path / "ptb.char.train.txt").write_bytes(content)
    with pytest.raises(ValueError, match=fragment) as error:
        chardata.load_ptb(tmp_path, use_cache=False)
    assert f"{tmp_path / 'ptb.char.train.txt'}:{line}:" in str(error.value)


def test_empty_file_is_an_error_naming_the_file(tmp_path):
    write_ptb_dir(tmp_path, ["a"])
    (tmp_path / "ptb.char.train.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"ptb\.char\.train\.txt: empty file"):
        chardata.load_ptb(tmp_path, use_cache=False)


def test_unknown_character_at_evaluation_names_character_file_and_line(tmp_path):
    write_ptb_dir(tmp_path, ["ab"], valid=["ab", "ba", "ac"])
    with pytest.raises(ValueError, match=r"ptb\.char\.valid\.txt:3: character 'c' does not occur"):
        chardata.load_ptb(tmp_path, use_cache=False)


def test_missing_official_files_are_named(tmp_path):
    (tmp_path / "ptb.char.valid.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match="ptb.char.train.txt.*ptb.char.test.txt"):
        chardata.load_ptb(tmp_path)


def test_bits_per_character_counts_eos_and_ignores_pad(tmp_path):
    write_ptb_dir(tmp_path, ["ab_c", "b"])
    train = chardata.load_ptb(tmp_path, max_length=8, use_cache=False)["train"]
    # one bit at every counted position, a huge loss on PAD: bpc must be exactly 1 up to the
    # rounding of a float64 sum of 7 equal terms (relative error < 1e-15).
    nll = np.where(train.mask == 1, math.log(2), 1e6)
    assert chardata.bits_per_character(nll, train.mask) == pytest.approx(1.0, rel=1e-14)


def test_dev_split_takes_the_first_sentences_for_training(tmp_path):
    sentences = [f"{'a' * (index + 1)}b" for index in range(10)]
    (tmp_path / "ptb.char.valid.txt").write_text(ptb_text(sentences))
    data = chardata.load_ptb_dev_split(tmp_path, train_fraction=0.7, use_cache=False)
    assert data["train"].decode(data["train"].tokens) == sentences[:7]
    assert data["eval"].decode(data["eval"].tokens) == sentences[7:]
    assert (data["train"].metadata["lines"], data["eval"].metadata["lines"]) == ((1, 7), (8, 10))


def test_dev_split_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothing.txt"))):
        chardata.load_ptb_dev_split(tmp_path / "nothing.txt")


def counts():
    return dict(chardata.cache_stats)


def test_cache_is_reused_until_the_source_changes(tmp_path):
    source = tmp_path / "ptb.char.valid.txt"
    source.write_text(ptb_text(["ab", "ba", "ab", "ba"]))
    before = counts()
    first = chardata.load_ptb_dev_split(source, train_fraction=0.5)
    assert (source.parent / "ptb.char.valid.txt.npflows.h5").is_file()
    again = chardata.load_ptb_dev_split(source, train_fraction=0.5)
    os.utime(source, ns=(10**18, 10**18))  # touched, same bytes: still reused
    touched = chardata.load_ptb_dev_split(source, train_fraction=0.5)
    assert counts() == {"parsed": before["parsed"] + 1, "reused": before["reused"] + 2}
    np.testing.assert_array_equal(again["eval"].tokens, first["eval"].tokens)
    np.testing.assert_array_equal(touched["eval"].tokens, first["eval"].tokens)
    source.write_text(ptb_text(["ab", "ba", "bb", "aa"]))  # same size, new content
    os.utime(source, ns=(10**18, 10**18))
    changed = chardata.load_ptb_dev_split(source, train_fraction=0.5)
    assert counts()["parsed"] == before["parsed"] + 2
    assert changed["eval"].decode(changed["eval"].tokens) == ["bb", "aa"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ptb.char.valid.txt",
        "ptb.char.valid.txt.npflows.h5",
    ]


def test_corrupt_cache_is_rebuilt(tmp_path):
    source = tmp_path / "text.txt"
    source.write_text("abcabcabcabc")
    (tmp_path / "text.txt.npflows.h5").write_bytes(b"not hdf5")
    before = counts()
    data = chardata.load_text(source, seq_len=2, fractions=(0.5, 0.25, 0.25))
    assert counts()["parsed"] == before["parsed"] + 1
    assert data["train"].decode(data["train"].tokens) == ["ab", "ca", "bc"]
    chardata.load_text(source, seq_len=2, fractions=(0.5, 0.25, 0.25))
    assert counts()["reused"] == before["reused"] + 1


def test_read_only_source_directory_falls_back_to_the_cache_directory(tmp_path, monkeypatch):
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    shared.mkdir()
    (shared / "ptb.char.valid.txt").write_text(ptb_text(["ab", "ba"]))
    monkeypatch.setenv("NPFLOWS_CACHE_DIR", str(cache))
    shared.chmod(0o555)  # no write bit: treated as read-only even when tests run as root
    try:
        before = counts()
        chardata.load_ptb_dev_split(shared, train_fraction=0.5)
        chardata.load_ptb_dev_split(shared, train_fraction=0.5)
        assert os.listdir(shared) == ["ptb.char.valid.txt"]
    finally:
        shared.chmod(0o755)
    [cached] = os.listdir(cache)
    assert cached.startswith("ptb.char.valid.txt.") and cached.endswith(".npflows.h5")
    assert counts() == {"parsed": before["parsed"] + 1, "reused": before["reused"] + 1}


def test_explicit_cache_dir_is_the_only_place_written(tmp_path):
    source, cache = tmp_path / "text.txt", tmp_path / "elsewhere"
    source.write_text("abab")
    chardata.load_text(source, seq_len=1, fractions=(0.5, 0.25, 0.25), cache_dir=cache)
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "text.txt"]
    assert len(os.listdir(cache)) == 1


def test_text8_split_sizes_are_proportional_and_chunks_exact(tmp_path):
    rng = np.random.default_rng(0)
    stream = "".join(rng.choice(list(chardata.TEXT8_ALPHABET), size=1003))
    (tmp_path / "text8").write_text(stream)
    data = chardata.load_text8(tmp_path / "text8", seq_len=10, use_cache=False)
    # bounds floor(1003 * 0.9 + 1/2) = 903 and floor(1003 * 0.95 + 1/2) = 953
    assert {split: data[split].tokens.shape for split in data} == {
        "train": (90, 10),
        "valid": (5, 10),
        "test": (5, 10),
    }
    assert [data[split].metadata["dropped_tail"] for split in data] == [3, 0, 0]
    assert data["valid"].decode(data["valid"].tokens.reshape(-1)) == stream[903:953]
    assert data["train"].vocab == list(" abcdefghijklmnopqrstuvwxyz")
    assert data["test"].mask.min() == 1.0
    assert chardata.split_bounds(100_000_000, (0.9, 0.05, 0.05)) == (90_000_000, 95_000_000)


def test_text8_rejects_characters_outside_its_alphabet(tmp_path):
    (tmp_path / "text8").write_text("abc def Ghi" * 10)
    with pytest.raises(ValueError, match=r"text8:1: character 'G' \(offset 8\)"):
        chardata.load_text8(tmp_path / "text8", seq_len=2, use_cache=False)


def test_text_vocabulary_comes_from_the_training_part(tmp_path):
    (tmp_path / "any.txt").write_text("aé\nb" * 5, encoding="utf-8")
    data = chardata.load_text(
        tmp_path / "any.txt", seq_len=2, fractions=(0.5, 0.25, 0.25), use_cache=False
    )
    assert data["train"].vocab == ["\n", "a", "b", "é"]
    assert data["train"].decode(data["train"].tokens.reshape(-1)) == ("aé\nb" * 5)[:10]
    assert [data[split].tokens.shape[0] for split in data] == [5, 2, 2]


def test_text_unknown_character_names_line(tmp_path):
    (tmp_path / "any.txt").write_text("ab\n" * 4 + "ac")
    with pytest.raises(ValueError, match=r"any\.txt:5: character 'c'"):
        chardata.load_text(
            tmp_path / "any.txt", seq_len=1, fractions=(0.5, 0.25, 0.25), use_cache=False
        )


@pytest.mark.skipif(
    not chardata.DEV_PTB_PATH.is_file(),
    reason=f"real PTB file missing: expected {chardata.DEV_PTB_PATH} (../shared/data/ptb_char/)",
)
def test_real_ptb_validation_file_matches_its_documented_facts():
    data = chardata.load_ptb_dev_split(max_length=391, use_cache=False)  # longest sentence: 390
    train, evaluation = data["train"], data["eval"]
    assert train.metadata["sentences"] + evaluation.metadata["sentences"] == 3370
    assert (train.metadata["sentences"], evaluation.metadata["sentences"]) == (3033, 337)
    assert train.metadata["characters"] + evaluation.metadata["characters"] == 389_672
    assert train.metadata["dropped_too_long"] + evaluation.metadata["dropped_too_long"] == 0
    # eval loaded without an unknown-character error, so its symbols are among train's 49
    assert train.vocab_size == 49 + 2 and int(train.mask.sum(axis=1).max()) == 390 + 1
    default = chardata.load_ptb_dev_split(use_cache=False)
    assert [default[split].metadata["dropped_too_long"] for split in default] == [13, 1]
