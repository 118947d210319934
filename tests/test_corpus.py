"""The character-corpus reader and the stream helpers of ``minirtrl.corpus``.

Fixtures are written with the rule that generated the PTB char files (README of the data:
text with its newlines, every character followed by one space), so the expected symbols are
known independently of the reader. The real-data test checks the counts stated in the issue and
in the data README, and decodes the files a second, independent way (the character at every
even byte offset).
"""

import gzip
from pathlib import Path

import numpy as np
import pytest

from minirtrl.drivers.corpus import (
    EOL,
    UNK,
    CorpusError,
    Vocabulary,
    read_corpus,
    split_files,
    symbol_blocks,
)
from minirtrl.drivers.ptb import batch_at, eval_streams, stream_offsets, window_at
from minirtrl.testing import assert_close

PTB = Path(__file__).parents[1].parent / "shared" / "data" / "ptb"

def decode(vocab, ids):
    """The symbols of ``ids`` joined into one string (``UNK`` spelled out)."""
    return "".join(vocab.symbols[int(i)] for i in np.asarray(ids).reshape(-1))


def name(vocab, i):
    """Printable name of id ``i``: ``<eol>``, ``<unk>``, the character, or its repr."""
    s = vocab.symbols[i]
    if s == EOL:
        return "<eol>"
    return s if s == UNK or (s.isprintable() and not s.isspace()) else repr(s)


def read_text(file, format):
    """The symbols of one split file as a string (end of line = EOL)."""
    return "".join(symbol_blocks(Path(file), format))


TRAIN = [["the", "cat", "sat"], ["a", "dog's", "$", "N"], ["<unk>", "ran"]]
VALID = [["the", "dog"], ["a", "cat", "ran"]]
TEST = [["the", "rat", "sat"]]


def spaced(sentences):
    """Mikolov's char file for ``sentences`` (lists of words) and the text it spells."""
    text = "".join("_".join(words) + "\n" for words in sentences)
    return " ".join(text) + " ", text


def write(path, content, gz=False):
    data = content.encode("utf-8") if isinstance(content, str) else content
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_mikolov(d, train=TRAIN, valid=VALID, test=TEST, gz=(False, True, False)):
    texts = {}
    for split, sentences, z in zip(("train", "valid", "test"), (train, valid, test), gz):
        content, texts[split] = spaced(sentences)
        write(d / f"ptb.char.{split}.txt", content, z)
    return texts


def check_one_line(exc, *parts):
    msg = str(exc.value)
    assert "\n" not in msg
    for p in parts:
        assert str(p) in msg, (p, msg)


# ----------------------------------------------------------------------------- formats


def test_mikolov_plain_and_gz(tmp_path):
    texts = make_mikolov(tmp_path)
    c = read_corpus(tmp_path)
    chars = sorted(set(texts["train"]))
    assert c.vocab.symbols == tuple(chars)
    assert c.vocab.symbols[0] == EOL and c.vocab.eol == 0 and c.vocab.unk is None
    assert c.files["valid"].name == "ptb.char.valid.txt.gz"
    for split in ("train", "valid", "test"):
        ids = getattr(c, split)
        assert ids.ndim == 1 and ids.dtype.kind == "i" and ids.dtype.itemsize <= 8
        expected = np.array([chars.index(ch) for ch in texts[split]], dtype=ids.dtype)
        assert_close(ids, expected, rtol=0)
        assert decode(c.vocab, ids) == texts[split]
    assert c.train.shape[0] == sum(len("_".join(w)) + 1 for w in TRAIN)


@pytest.mark.parametrize(
    "content, text",
    [
        ("a b \n c \n ", "ab\nc\n"),  # PTB layout: trailing space, lone-space last piece
        ("a b\nc", "ab\nc\n"),  # last line without newline still ends a sentence
        ("a b \n \n c \n ", "ab\n\nc\n"),  # an interior lone-space line is an empty sentence
        ("a b \r\n c \r\n", "ab\nc\n"),  # CRLF
        ("a b \n \t \n", "ab\n\n"),
        ("x _ y \n  \n   ", "x_y\n\n"),
    ],
)
def test_mikolov_quirks(tmp_path, content, text):
    assert read_text(write(tmp_path / "f.txt", content), "mikolov") == text


def test_raw_plain_and_gz(tmp_path):
    texts = {
        "train": "héllo wörld\r\nsecond line\n\tend",
        "valid": "hello\nword ",
        "test": "öl",
    }
    for split, gz in zip(texts, (True, False, True)):
        write(tmp_path / f"{split}.txt", texts[split], gz)
    c = read_corpus(tmp_path, format="raw")
    assert c.vocab.symbols == tuple(sorted(set(texts["train"])))
    assert "\r" in c.vocab.symbols and " " in c.vocab.symbols and EOL in c.vocab.symbols
    for split, text in texts.items():
        ids = getattr(c, split)
        assert ids.shape == (len(text),)
        assert decode(c.vocab, ids) == text
        assert [c.vocab.symbols[i] for i in ids] == list(text)
    assert name(c.vocab, c.vocab.eol) == "<eol>"
    assert name(c.vocab, c.vocab.symbols.index(" ")) == "' '"


def test_plain_file_preferred_to_gz(tmp_path):
    make_mikolov(tmp_path, gz=(True, True, True))
    words = ["z", "the", "cat", "sat", "dog", "ran", "a"]
    write(tmp_path / "ptb.char.train.txt", spaced([words])[0])
    files = split_files(tmp_path)
    assert files["train"].name == "ptb.char.train.txt"
    assert files["test"].name == "ptb.char.test.txt.gz"
    assert "z" in read_corpus(tmp_path).vocab.symbols


# ----------------------------------------------------------------------------- unknown symbols


@pytest.mark.parametrize("fmt", ["mikolov", "raw"])
def test_symbol_missing_from_train(tmp_path, fmt):
    valid = [["the", "cat"], ["a", "cat"], ["the", "zebra"]]
    # 'z' and 'b' never occur in TRAIN; the first unknown symbol is 'z', on line 3.
    if fmt == "mikolov":
        make_mikolov(tmp_path, valid=valid)
        name = "ptb.char.valid.txt.gz"
    else:
        for split, s in (("train", TRAIN), ("valid", valid), ("test", TEST)):
            write(tmp_path / f"{split}.txt", spaced(s)[1])
        name = "valid.txt"
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path, format=fmt)
    check_one_line(exc, "'z'", "line 3", tmp_path / name)
    assert isinstance(exc.value, ValueError)

    c = read_corpus(tmp_path, format=fmt, unknown=True)
    v = c.vocab
    assert v.symbols[-1] == UNK and v.unk == len(v) - 1
    assert v.symbols[:-1] == tuple(sorted(set(spaced(TRAIN)[1])))
    text = spaced(valid)[1]
    expected = [v.unk if ch in "zb" else v.symbols.index(ch) for ch in text]
    assert_close(c.valid, np.array(expected, dtype=c.valid.dtype), rtol=0)
    assert int(np.sum(c.valid == v.unk)) == 2
    assert not np.any(c.train == v.unk)


def test_unknown_vocabulary_keeps_train_ids(tmp_path):
    make_mikolov(tmp_path)
    a, b = read_corpus(tmp_path), read_corpus(tmp_path, unknown=True)
    assert len(b.vocab) == len(a.vocab) + 1
    for split in ("train", "valid", "test"):
        assert_close(getattr(a, split), getattr(b, split), rtol=0)


def test_vocabulary_checks():
    with pytest.raises(ValueError):
        Vocabulary(("b", "a"))
    with pytest.raises(ValueError):
        Vocabulary(("a", "a"))
    with pytest.raises(ValueError):
        Vocabulary(("a", UNK, "b"))
    v = Vocabulary(("\n", "a", "b", UNK))
    assert v.symbols == ("\n", "a", "b", UNK) and v.eol == 0 and v.unk == 3
    assert v.encode("c").tolist() == [3]  # not a symbol: UNK
    with pytest.raises(CorpusError, match="'c'"):
        Vocabulary(("\n", "a", "b")).encode("c")


# ----------------------------------------------------------------------------- errors


def test_missing_directory(tmp_path):
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path / "nope")
    check_one_line(exc, tmp_path / "nope", "no such directory", "ptb.char.train.txt",
                   "ptb.char.valid.txt", "ptb.char.test.txt", ".gz")


def test_not_a_directory(tmp_path):
    f = write(tmp_path / "ptb.char.train.txt", "a \n ")
    with pytest.raises(CorpusError) as exc:
        read_corpus(f)
    check_one_line(exc, f, "not a directory", "ptb.char.valid.txt")


def test_missing_split(tmp_path):
    make_mikolov(tmp_path)
    (tmp_path / "ptb.char.valid.txt.gz").unlink()
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path)
    check_one_line(exc, tmp_path, "missing ptb.char.valid.txt", "ptb.char.train.txt",
                   "ptb.char.test.txt")


def test_wrong_directory_names_the_other_format(tmp_path):
    for split in ("train", "valid", "test"):
        write(tmp_path / f"{split}.txt", "some text\n")
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path)
    check_one_line(exc, tmp_path, "ptb.char.train.txt", "format 'raw'")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path / "empty", format="raw")
    check_one_line(exc, tmp_path / "empty", "train.txt", "valid.txt", "test.txt")
    assert read_corpus(tmp_path, format="raw").train.shape == (10,)


@pytest.mark.parametrize(
    "content, fmt, words",
    [
        ("", "mikolov", "empty split"),
        (" ", "mikolov", "empty split"),  # only the lone trailing space
        ("   \t ", "mikolov", "empty split"),
        ("", "raw", "empty split"),
        ("x", "raw", "only one symbol"),
    ],
)
@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_split(tmp_path, content, fmt, words, split):
    name = "ptb.char.{}.txt" if fmt == "mikolov" else "{}.txt"
    for s in ("train", "valid", "test"):
        write(tmp_path / name.format(s), content if s == split else "a b \n b a \n ")
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path, format=fmt)
    check_one_line(exc, tmp_path / name.format(split), words)


def test_undecodable_bytes(tmp_path):
    make_mikolov(tmp_path)
    write(tmp_path / "ptb.char.test.txt", b"a b \n c \xff d \n ", gz=True)
    (tmp_path / "ptb.char.test.txt").unlink()
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path)
    check_one_line(exc, tmp_path / "ptb.char.test.txt.gz", "line 2", "UTF-8", "0xff")


def test_bad_gzip_and_bad_token(tmp_path):
    make_mikolov(tmp_path)
    (tmp_path / "ptb.char.valid.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path)
    check_one_line(exc, tmp_path / "ptb.char.valid.txt.gz", "cannot read")

    make_mikolov(tmp_path)
    write(tmp_path / "ptb.char.train.txt", "a b \n the cat \n ")
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path)
    check_one_line(exc, tmp_path / "ptb.char.train.txt", "line 2", "'the'", "format 'raw'")


def test_unknown_format(tmp_path):
    with pytest.raises(CorpusError) as exc:
        read_corpus(tmp_path, format="words")
    check_one_line(exc, "mikolov", "raw", "'words'")


# ----------------------------------------------------------------------------- the real PTB


@pytest.mark.skipif(not PTB.is_dir(), reason=f"PTB data not found at {PTB}")
def test_real_ptb():
    c = read_corpus(PTB)
    # Counts of the issue = README: whitespace tokens + one end-of-line per line.
    assert c.train.shape == (4_975_414 + 42_068,) == (5_017_482,)
    assert c.valid.shape == (389_672 + 3_370,) == (393_042,)
    assert c.test.shape == (438_662 + 3_761,) == (442_423,)
    v = c.vocab
    assert len(v) == 50 and v.eol == 0 and v.unk is None
    assert "".join(v.symbols[1:]) == "#$&'*-./0123456789<>N\\_abcdefghijklmnopqrstuvwxyz"
    assert len(np.unique(c.valid)) == 50 and len(np.unique(c.test)) == 48
    for split, lines in (("train", 42_068), ("valid", 3_370), ("test", 3_761)):
        ids = getattr(c, split)
        assert ids.dtype.kind == "i" and ids.dtype.itemsize <= 8
        assert int(np.sum(ids == v.eol)) == lines
        assert ids[-1] == v.eol
        # Independent decoding: the file is the text with one space after every character
        # (newlines included), so the symbols are the bytes at even offsets.
        raw = np.frombuffer(gzip.decompress((PTB / f"ptb.char.{split}.txt.gz").read_bytes()),
                            dtype=np.uint8)
        assert np.all(raw[1::2] == ord(" "))
        codes = np.array([ord(s) for s in v.symbols], dtype=np.uint8)
        assert_close(codes[ids], raw[0::2], rtol=0)
    assert decode(v, c.valid[:9]) == "consumers"


# ----------------------------------------------------------------------------- streams


@pytest.mark.parametrize("n, b", [(10, 3), (5_017_482, 32), (7, 7), (100, 1), (13, 5)])
def test_stream_offsets(n, b):
    off = stream_offsets(n, b)
    assert off.shape == (b,) and off.dtype == np.int64
    assert off[0] == 0 and off[-1] < n
    gaps = np.diff(np.append(off, n))  # the B stretches between offsets cover the text
    assert gaps.sum() == n and set(gaps.tolist()) <= {n // b, -(-n // b)}
    assert_close(off, [i * n // b for i in range(b)], rtol=0)


def test_stream_offsets_rejects():
    with pytest.raises(ValueError):
        stream_offsets(1, 2)
    with pytest.raises(ValueError):
        stream_offsets(10, 0)


def test_batch_at_next_symbol_and_wraparound():
    ids = np.arange(10, dtype=np.int32)  # id = position, so positions can be read off
    off = stream_offsets(10, 3)
    assert_close(off, [0, 3, 6], rtol=0)
    x, y = batch_at(ids, off, 3)
    assert_close(x, ids[[3, 6, 9]], rtol=0)
    assert_close(y, ids[[4, 7, 0]], rtol=0)  # after the last symbol comes the first
    x, y = batch_at(ids, off, 25)
    assert_close(x, ids[[5, 8, 1]], rtol=0)
    assert_close(y, ids[[6, 9, 2]], rtol=0)
    assert x.shape == (3,) and x.dtype == ids.dtype


def test_batch_at_targets_are_next_inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=97).astype(np.int32)
    off = stream_offsets(97, 8)
    steps = [batch_at(ids, off, t) for t in range(250)]  # wraps around twice
    for t in range(249):
        assert_close(steps[t][1], steps[t + 1][0], rtol=0)
    for t in (0, 96, 200):
        assert_close(steps[t][0], ids[(off + t) % 97], rtol=0)
    xs, ys = window_at(ids, off, 90, 20)
    assert xs.shape == ys.shape == (20, 8)
    assert_close(xs, np.stack([steps[t][0] for t in range(90, 110)]), rtol=0)
    assert_close(ys, np.stack([steps[t][1] for t in range(90, 110)]), rtol=0)


@pytest.mark.parametrize("n, s", [(2, 1), (101, 1), (101, 2), (101, 3), (101, 7), (101, 100),
                                  (393_042, 2)])
def test_eval_streams_every_prediction_once(n, s):
    ids = np.arange(n, dtype=np.int32)  # id = position: each prediction is identifiable
    x, y, mask = eval_streams(ids, s)
    t = -(-(n - 1) // s)
    assert x.shape == y.shape == mask.shape == (t, s)
    assert x.dtype == y.dtype == ids.dtype
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    assert mask.sum() == n - 1
    on = mask == 1
    assert_close(np.sort(x[on]), ids[: n - 1], rtol=0)  # each input once
    assert_close(y[on], x[on] + 1, rtol=0)  # target = next symbol
    # Each stream is one contiguous stretch, padded (by at most one step) only at its end.
    assert np.all(np.diff(mask, axis=0) <= 0)
    assert np.all(mask.sum(axis=0) >= t - 1)
    for j in range(s):
        col = x[on[:, j], j]
        assert np.all(np.diff(col) == 1)
    assert np.all(x[~on] == 0) and np.all(y[~on] == 0)


def test_eval_streams_random_ids():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, size=50).astype(np.int32)
    x, y, mask = eval_streams(ids, 3)
    pairs = sorted(zip(x[mask == 1].tolist(), y[mask == 1].tolist()))
    assert pairs == sorted(zip(ids[:-1].tolist(), ids[1:].tolist()))


def test_eval_streams_rejects():
    ids = np.arange(5)
    with pytest.raises(ValueError):
        eval_streams(ids, 0)
    with pytest.raises(ValueError):
        eval_streams(ids, 5)  # only 4 predictions
