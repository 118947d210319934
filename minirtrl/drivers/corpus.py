"""Character corpora for the PTB driver: read a split directory, encode it, cut it into streams.

Host-side I/O (NumPy and the standard library only); nothing here touches an array backend.
The driver moves the integer arrays it gets from here to the backend itself.

What it computes:

* :func:`read_corpus` reads the ``train``/``valid``/``test`` splits of a directory, builds the
  :class:`Vocabulary` from the training split and encodes every split as a 1-D integer array.
  Cost: O(file size), vectorised in NumPy except one Python pass over the lines of a Mikolov
  file.
* :func:`stream_offsets`, :func:`batch_at`, :func:`window_at`: the ``B`` training streams,
  started at evenly spaced offsets of the training text and read as a circular text. They are
  pure functions of the step counter ``t``, so a resumed run only needs ``t``.
* :func:`eval_streams`: a validation or test split cut into ``S`` long streams (the state is
  carried through, never reset), with a 0/1 mask such that the masked sum over all positions
  counts every next-symbol prediction of the split exactly once.

Protocol: char-PTB of Mikolov et al. (2012) as the OK authors use it (Benzing et al. 2019:
50 symbols, 32 streams at evenly spaced offsets, evaluation as a few long streams); the
driver is ``python -m minirtrl.ptb``.

Formats (``format=``):

``"mikolov"`` (default): ``ptb.char.train.txt``, ``ptb.char.valid.txt``, ``ptb.char.test.txt``,
    each optionally gzip-compressed (``.gz``; the plain file wins when both exist, as after
    ``gunzip -k``). Characters separated by spaces, ``_`` between words, one sentence a line.
    A file is read as lines ending in ``\\n``; each line gives its whitespace-separated
    characters followed by one end-of-line symbol :data:`EOL`. Quirks of the real files, handled:

    - every line ends with ``" \\n"`` and every line after the first starts with a space
      (whitespace split ignores both; ``\\r`` of CRLF files is whitespace too);
    - the file ends with ``"\\n "``: the piece after the last newline is a lone space, which is
      *not* a line (no end-of-line symbol). Any whitespace-only piece there is dropped; a final
      piece holding characters but no newline is a last sentence and gets its end-of-line;
    - a whitespace-only line that *does* end in ``\\n`` is an empty sentence (one end-of-line
      symbol): this is the exact inverse of the rule that generated the files (text with its
      newlines, every character followed by one space). The PTB files have no such line.
    - a token of more than one character is an error (the file is not in this format).

    PTB: 49 characters + end-of-line = 50 symbols; 5,017,482 / 393,042 / 442,423 symbols
    (train / valid / test) including one end-of-line per line.

``"raw"``: ``train.txt``, ``valid.txt``, ``test.txt`` (optionally ``.gz``) of any UTF-8 text;
    every character is a symbol, the newline included (it plays the end-of-line role). No
    newline translation (a ``\\r`` is a symbol) and nothing is added or stripped.

Errors: a missing or non-directory path, missing files, undecodable bytes, an empty split and
a validation/test symbol absent from the training split raise :class:`CorpusError` (a
``ValueError``) with one line naming the path and what was expected, for the driver to print
before exiting with status 2.

Notation (shapes in docstrings):
    N   number of symbols of a split (``len(ids)``); it has N - 1 next-symbol predictions
    V   vocabulary size (``len(vocab)``), 50 for PTB
    B   training streams (``--batch``), one offset each
    t   position counter of the training streams (one step = one symbol per stream)
    S   evaluation streams, T their common length (the last few padded by at most one step)
"""

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EOL = "\n"  # the end-of-line symbol (end of sentence in PTB)
UNK = "<unk>"  # the added unknown symbol; never a single character, so it cannot collide
FORMATS = ("mikolov", "raw")
SPLITS = ("train", "valid", "test")
_NAMES = {"mikolov": "ptb.char.{}.txt", "raw": "{}.txt"}
ID_DTYPE = np.int32  # dtype of encoded splits


class CorpusError(ValueError):
    """A corpus cannot be read; the message is one line naming the path and what was expected."""


# ----------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Symbols of a corpus; id ``i`` is ``symbols[i]``.

    ``symbols`` are single characters in increasing code-point order (so the order depends only
    on the set of characters), followed by :data:`UNK` when unknown symbols are allowed. The
    end-of-line symbol is the character :data:`EOL` (``"\\n"``; id 0 for PTB); :meth:`name`
    prints it as ``<eol>``.
    """

    symbols: tuple
    _codes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "symbols", tuple(self.symbols))
        chars = self.symbols[:-1] if self.symbols[-1:] == (UNK,) else self.symbols
        if not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError(f"symbols must be single characters (then optionally {UNK!r})")
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        if np.any(np.diff(codes) <= 0):
            raise ValueError("symbols must be distinct and in increasing code-point order")
        object.__setattr__(self, "_codes", codes)

    @classmethod
    def from_text(cls, text, *, unknown=False):
        """The characters of ``text``, sorted, plus :data:`UNK` if ``unknown``."""
        chars = tuple(chr(c) for c in np.unique(_code_points(text)))
        return cls(chars + ((UNK,) if unknown else ()))

    def __len__(self):
        return len(self.symbols)

    @property
    def eol(self):
        """Id of the end-of-line symbol, or None if the text had no newline."""
        return self.index(EOL) if EOL in self.symbols else None

    @property
    def unk(self):
        """Id of :data:`UNK`, or None when unknown symbols are not allowed."""
        return len(self.symbols) - 1 if self.symbols[-1:] == (UNK,) else None

    def index(self, symbol):
        """Id of ``symbol`` (KeyError if absent)."""
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(symbol) from None

    def name(self, i):
        """Printable name of id ``i``: ``<eol>``, ``<unk>``, the character, or its repr."""
        s = self.symbols[i]
        if s == EOL:
            return "<eol>"
        return s if s == UNK or (s.isprintable() and not s.isspace()) else repr(s)

    def encode(self, text, *, where="text"):
        """``text`` as a (len(text),) int32 array of ids.

        A character not in the vocabulary maps to :data:`UNK` when present, else raises
        :class:`CorpusError` naming the character, ``where`` and the line (1-based) it is on.
        """
        cp = _code_points(text)  # (N,)
        pos = np.minimum(np.searchsorted(self._codes, cp), max(len(self._codes) - 1, 0))
        known = self._codes[pos] == cp if len(self._codes) else np.zeros(cp.shape, dtype=bool)
        if not np.all(known):
            if self.unk is None:
                i = int(np.argmin(known))  # first unknown character
                c = text[i]
                line = text.count(EOL, 0, i) + 1
                raise CorpusError(
                    f"{where} line {line}: symbol {c!r} (U+{ord(c):04X}) does not occur in the "
                    f"training split (allow unknown symbols to map them to {UNK!r})"
                )
            pos = np.where(known, pos, self.unk)
        return pos.astype(ID_DTYPE)

    def decode(self, ids):
        """The symbols of ``ids`` joined into one string (:data:`UNK` spelled out)."""
        return "".join(self.symbols[int(i)] for i in np.asarray(ids).reshape(-1))


@dataclass(frozen=True)
class Corpus:
    """A vocabulary and the three encoded splits, each a (N,) int32 array of ids < len(vocab)."""

    vocab: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    files: dict  # split name -> Path of the file read

    def summary(self):
        """One line: symbol counts and vocabulary size."""
        counts = ", ".join(f"{s} {getattr(self, s).shape[0]:,}" for s in SPLITS)
        return f"{counts} symbols; vocabulary {len(self.vocab)}"


# ----------------------------------------------------------------------------- reading


def split_files(path, format="mikolov"):
    """``{split: Path}`` of the files of ``path`` for ``format`` (plain file preferred to .gz).

    Raises :class:`CorpusError` if ``path`` is not a directory or a split is missing; the
    message lists the accepted file names.
    """
    if format not in FORMATS:
        raise CorpusError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    path = Path(path)
    expected = _expected(format)
    if not path.exists():
        raise CorpusError(f"{path}: no such directory (expected a directory holding {expected})")
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (expected a directory holding {expected})")
    found, missing = _find(path, format)
    if missing:
        hint = ""
        other = next(f for f in FORMATS if f != format)
        if not _find(path, other)[1]:
            hint = f"; it holds the {other!r} files instead: use format {other!r}"
        raise CorpusError(f"{path}: missing {', '.join(missing)} (expected {expected}){hint}")
    return found


def read_corpus(path, format="mikolov", *, unknown=False):
    """Read the directory ``path`` (see the module docstring for the formats) into a Corpus.

    The vocabulary is the sorted set of training symbols (plus :data:`UNK`, last, when
    ``unknown``). A validation/test symbol not in it raises :class:`CorpusError` naming the
    symbol, the file and the line, unless ``unknown`` maps it to :data:`UNK`.
    """
    files = split_files(path, format)
    texts = {}
    for split in SPLITS:
        texts[split] = read_text(files[split], format)
    vocab = Vocabulary.from_text(texts["train"], unknown=unknown)
    ids = {s: vocab.encode(texts[s], where=str(files[s])) for s in SPLITS}
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], files)


def read_text(file, format="mikolov"):
    """The symbols of one split file as a string (end of line = ``"\\n"``), at least 2 long."""
    file = Path(file)
    data = _decode(file, _read_bytes(file))
    text = _parse_mikolov(data, file) if format == "mikolov" else data
    if len(text) < 2:
        what = "empty split (no symbols)" if not text else "only one symbol (nothing to predict)"
        raise CorpusError(f"{file}: {what}; expected {_FORMAT_WORDS[format]}")
    return text


_FORMAT_WORDS = {
    "mikolov": "characters separated by spaces, one sentence a line",
    "raw": "UTF-8 text",
}


def _expected(format):
    names = ", ".join(_NAMES[format].format(s) for s in SPLITS)
    return f"{names}, each optionally .gz"


def _find(path, format):
    found, missing = {}, []
    for split in SPLITS:
        name = _NAMES[format].format(split)
        hits = [path / n for n in (name, name + ".gz") if (path / n).is_file()]
        if hits:
            found[split] = hits[0]
        else:
            missing.append(name)
    return found, missing


def _read_bytes(file):
    try:
        if file.name.endswith(".gz"):
            with gzip.open(file, "rb") as f:
                return f.read()
        return file.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        reason = " ".join(reason.split())  # one line
        raise CorpusError(f"{file}: cannot read ({reason})") from None


def _decode(file, raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"{file} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); expected {_FORMAT_WORDS['raw']}"
        ) from None


def _parse_mikolov(data, file):
    """Mikolov's spaced characters -> the text they spell, one ``"\\n"`` per sentence."""
    lines = data.split("\n")
    tail = lines.pop()  # after the last newline: "" or the lone space of the PTB files
    if tail.strip():
        lines.append(tail)  # a last sentence without its newline
    words = []
    for number, line in enumerate(lines, 1):
        chars = line.split()
        word = "".join(chars)
        if len(word) != len(chars):
            bad = next(c for c in chars if len(c) != 1)
            raise CorpusError(
                f"{file} line {number}: token {bad[:20]!r} is not one character; expected "
                f"{_FORMAT_WORDS['mikolov']} (use format 'raw' for plain text)"
            )
        words.append(word)
    return EOL.join(words) + EOL if words else ""


def _code_points(text):
    """(len(text),) uint32 code points of ``text``."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


# ----------------------------------------------------------------------------- streams


def stream_offsets(n_symbols, n_streams):
    """(B,) int64 start positions ``b·N // B`` of ``B = n_streams`` training streams."""
    if n_symbols < 2 or n_streams < 1:
        raise ValueError(f"need n_symbols >= 2 and n_streams >= 1; got {n_symbols}, {n_streams}")
    return (np.arange(n_streams, dtype=np.int64) * n_symbols) // n_streams


def window_at(ids, offsets, t, length):
    """Inputs and targets of steps ``t .. t+length-1``, each (length, B) like ``ids``.

    ``inputs[j, b] = ids[(offsets[b] + t + j) % N]`` and ``targets[j, b]`` is the symbol after
    it, ``ids[(offsets[b] + t + j + 1) % N]``: the text is read as a circle, so after its last
    symbol comes its first again. Cost O(length·B).
    """
    n = ids.shape[0]
    steps = int(t) + np.arange(length + 1, dtype=np.int64)  # (length+1,)
    pos = (np.asarray(offsets, dtype=np.int64)[None, :] + steps[:, None]) % n  # (length+1, B)
    window = ids[pos]
    return window[:-1, :], window[1:, :]


def batch_at(ids, offsets, t):
    """(B,) input ids and (B,) target ids of step ``t`` (see :func:`window_at`)."""
    inputs, targets = window_at(ids, offsets, t, 1)
    return inputs[0, :], targets[0, :]


def eval_streams(ids, n_streams):
    """A split as ``S = n_streams`` contiguous streams: (T, S) inputs, targets and mask.

    The N - 1 predictions ``ids[i] -> ids[i+1]`` (i = 0..N-2) are cut into S consecutive
    chunks, chunk s holding i in ``[s(N-1)//S, (s+1)(N-1)//S)``; so lengths differ by at most
    one, T = ceil((N-1)/S), and a stream shorter than T is padded by one step at its end.
    ``inputs[j, s] = ids[i]``, ``targets[j, s] = ids[i+1]`` for the j-th prediction i of chunk
    s; padding holds ids 0 (valid symbols) with ``mask`` 0.0, elsewhere ``mask`` is 1.0
    (float64). Run each stream from a zero state and carry the state through all T steps:
    ``sum(mask · loss) / sum(mask)`` is then the mean over every prediction of the split,
    each counted once (``sum(mask) == N - 1``).
    """
    m = ids.shape[0] - 1  # predictions
    if not 1 <= n_streams <= m:
        raise ValueError(f"n_streams must be between 1 and len(ids) - 1 = {m}; got {n_streams}")
    bounds = (np.arange(n_streams + 1, dtype=np.int64) * m) // n_streams  # (S+1,)
    lengths = np.diff(bounds)  # (S,)
    steps = np.arange(int(lengths.max()), dtype=np.int64)[:, None]  # (T, 1)
    mask = steps < lengths[None, :]  # (T, S)
    pos = np.where(mask, bounds[None, :-1] + steps, 0)  # (T, S) index of the input symbol
    inputs = np.where(mask, ids[pos], 0).astype(ids.dtype)
    targets = np.where(mask, ids[pos + 1], 0).astype(ids.dtype)
    return inputs, targets, mask.astype(np.float64)
