"""`npflows compress` / `npflows decompress` end to end on tiny checkpoints (char-LM on a tiny PTB
file, a full-rank synthetic run), and the file-level refusals: another checkpoint, a truncated,
damaged or foreign file, a decoder whose probabilities are not the encoder's. Each ends in one
`npflows: error:` line, exit code 2, and no output file."""

import json

import pytest
from run_files import train_run

from runners import cli, compress
from tests.runners.test_charlm import TINY, _ptb_file

TRAIN = ["--steps", "3", "--batch-size", "8", "--dtype", "float64", "--log-every", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny char-LM checkpoints (factorised base, bipartite flow, AR LSTM; a second factorised one
    with another seed), the held-out rows as text, and a full-rank run with its samples."""
    root = tmp_path_factory.mktemp("compress")
    ptb = _ptb_file(root / "ptb.char.valid.txt")
    charlm = ["--data-path", str(ptb), "--max-length", "40", *TINY]
    results = {}
    for name, extra in (
        ("factorized", ["--model", "factorized"]),
        ("flow", ["--model", "flow"]),
        ("lstm", ["--model", "lstm"]),
        ("other", ["--model", "factorized", "--seed", "1", "--lr", "0.1"]),
    ):
        results[name] = train_run("charlm", root / name, *TRAIN, *charlm, *extra)["eval"]
    held_out = ptb.read_text().splitlines()[36:]  # ptb-dev: the last 10% of 40 sentences
    (root / "heldout.txt").write_text(
        "".join(line.replace(" ", "").replace("_", " ") + "\n" for line in held_out)
    )
    train_run(
        "fullrank",
        root / "fullrank",
        *TRAIN,
        "--model",
        "bipartite",
        "--dimension",
        "3",
        "--classes",
        "4",
        "--flows",
        "2",
        "--d-model",
        "8",
        "--d-ff",
        "8",
        "--heads",
        "1",
        "--train-samples",
        "64",
        "--heldout-samples",
        "16",
    )
    return root, results


def _run(capsys, *arguments):
    code = cli.main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("model", ["factorized", "flow", "lstm"])
def test_held_out_text_comes_back_and_costs_the_models_bpc(runs, capsys, model):
    root, results = runs
    checkpoint, packed, unpacked = (
        root / model / "checkpoint.h5",
        root / f"{model}.npz",
        root / f"{model}.txt",
    )
    code, out, err = _run(
        capsys, "compress", str(checkpoint), str(root / "heldout.txt"), str(packed)
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["model_bits_per_symbol"] == pytest.approx(results[model]["heldout_bpc"], rel=1e-9)
    model_bits, payload_bits = report["model_bits_per_symbol"], report["payload_bits_per_symbol"]
    assert (
        model_bits < payload_bits < 1.01 * model_bits + 64 / report["symbols"]
    )  # < 1% + the coder's last words
    code, _, err = _run(capsys, "decompress", str(checkpoint), str(packed), str(unpacked))
    assert code == 0, err
    assert unpacked.read_bytes() == (root / "heldout.txt").read_bytes()


@pytest.fixture
def samples(runs, capsys):
    """20 sequences as `npflows sample` prints them for the full-rank run."""
    root, _ = runs
    assert cli.main(["sample", str(root / "fullrank" / "checkpoint.h5"), "-n", "20"]) == 0
    (root / "samples.txt").write_text(capsys.readouterr().out)
    return root / "samples.txt"


def test_samples_of_a_synthetic_run_come_back(runs, capsys, samples):
    root, _ = runs
    checkpoint = str(root / "fullrank" / "checkpoint.h5")
    assert (
        _run(capsys, "compress", checkpoint, str(root / "samples.txt"), str(root / "samples.npz"))[
            0
        ]
        == 0
    )
    assert (
        _run(
            capsys, "decompress", checkpoint, str(root / "samples.npz"), str(root / "samples.out")
        )[0]
        == 0
    )
    assert (root / "samples.out").read_bytes() == samples.read_bytes()


def _refused(capsys, root, packed, message, checkpoint="factorized"):
    output = root / "refused.txt"
    code, out, err = _run(
        capsys, "decompress", str(root / checkpoint / "checkpoint.h5"), str(packed), str(output)
    )
    assert (
        (code, out, err.count("\n")) == (2, "", 1)
        and err.startswith("npflows: error: ")
        and message in err
    ), err
    assert not output.exists()


def test_another_checkpoint_a_truncated_a_damaged_or_a_foreign_file_is_refused(runs, capsys):
    root, _ = runs
    packed = root / "refusals.npz"
    assert (
        _run(
            capsys,
            "compress",
            str(root / "factorized" / "checkpoint.h5"),
            str(root / "heldout.txt"),
            str(packed),
        )[0]
        == 0
    )
    _refused(capsys, root, packed, "compressed with another checkpoint", checkpoint="other")
    _refused(capsys, root, packed, "compressed with another checkpoint", checkpoint="lstm")
    blob = packed.read_bytes()
    for name, damaged, message in (
        ("truncated", blob[:-3], "truncated or damaged"),
        ("payload", blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:], "truncated or damaged"),
        ("header", blob[:50] + bytes([blob[50] ^ 1]) + blob[51:], "damaged or truncated header"),
        ("foreign", b"x" * 100, "not an npflows compressed file"),
    ):
        (root / name).write_bytes(damaged)
        _refused(capsys, root, root / name, message)


@pytest.mark.parametrize("model", ["lstm", "fullrank"])
def test_a_decoder_whose_probabilities_differ_writes_nothing(
    runs, capsys, monkeypatch, samples, model
):
    """Another BLAS or GPU, simulated: the decoder's tables are reversed. Decoded PTB rows come
    out malformed (the layout refuses them); decoded sequences are well-formed, and only the
    checksum refuses them. OUTPUT is not written."""
    root, _ = runs
    packed, original = (
        root / "mismatch.npz",
        samples if model == "fullrank" else root / "heldout.txt",
    )
    assert (
        _run(capsys, "compress", str(root / model / "checkpoint.h5"), str(original), str(packed))[0]
        == 0
    )
    code = compress._SymbolCoder.code
    monkeypatch.setattr(
        compress._SymbolCoder,
        "code",
        lambda self, probs, symbols=None: code(self, probs[:, ::-1], symbols),
    )
    _refused(
        capsys, root, packed, "the decoder's probabilities were not the encoder's", checkpoint=model
    )


def test_input_outside_the_vocabulary_is_refused_at_compress_time(runs, capsys):
    root, _ = runs
    (root / "unknown.txt").write_text("the cat\nthe dog Sat\n")
    checkpoint, packed = root / "flow" / "checkpoint.h5", root / "unknown.npz"
    code, out, err = _run(
        capsys, "compress", str(checkpoint), str(root / "unknown.txt"), str(packed)
    )
    assert (code, out) == (
        2,
        "",
    ) and "line 2, column 9: character 'S' is not in the checkpoint's vocabulary" in err
    assert not packed.exists()
