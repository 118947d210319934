"""Character corpora for the PTB driver: read a split directory and encode it.

Host-side I/O (NumPy and the standard library only); nothing here touches an array backend.
The streams cut from the encoded splits are ``drivers.streams``.

:func:`read_corpus` reads the ``train``/``valid``/``test`` splits of a directory, builds the
:class:`Vocabulary` from the training split and encodes every split as a 1-D array of the
smallest signed integer type that holds every id (int8 for up to 127 symbols, as PTB).
It streams: each file is read twice in blocks of :data:`BLOCK` bytes (once for its
symbols and their count, once to encode them into an array allocated once), so the memory
it needs is the encoded splits plus a few blocks, about 1 byte per symbol of a PTB-sized
vocabulary, whatever the size of the text. Cost: O(file size), vectorised in NumPy except
one Python pass over the lines of a Mikolov file.

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

Notation (shapes in docstrings): ``N`` number of symbols of a split (``len(ids)``), ``V``
vocabulary size (``len(vocab)``, 50 for PTB).
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

    def encode(self, text, *, where="text", first_line=1):
        """``text`` as a (len(text),) array of ids, of the dtype ``id_dtype(len(self))``.

        A character not in the vocabulary maps to :data:`UNK` when present, else raises
        :class:`CorpusError` naming the character, ``where`` and the line it is on (``text``
        starting at line ``first_line``). Cost O(len(text) log V); about 16 bytes of
        temporaries per character.
        """
        cp = _code_points(text)  # (N,)
        pos = np.minimum(np.searchsorted(self._codes, cp), max(len(self._codes) - 1, 0))
        known = self._codes[pos] == cp if len(self._codes) else np.zeros(cp.shape, dtype=bool)
        if not np.all(known):
            if self.unk is None:
                i = int(np.argmin(known))  # first unknown character
                c = text[i]
                line = text.count(EOL, 0, i) + first_line
                raise CorpusError(
                    f"{where} line {line}: symbol {c!r} (U+{ord(c):04X}) does not occur in the "
                    f"training split (allow unknown symbols to map them to {UNK!r})"
                )
            pos = np.where(known, pos, self.unk)
        return pos.astype(id_dtype(len(self)))

    def decode(self, ids):
        """The symbols of ``ids`` joined into one string (:data:`UNK` spelled out)."""
        return "".join(self.symbols[int(i)] for i in np.asarray(ids).reshape(-1))


@dataclass(frozen=True)
class Corpus:
    """A vocabulary and the three encoded splits, each a (N,) array of ids < len(vocab)
    (of the dtype ``id_dtype(len(vocab))``)."""

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
    chars, counts = {}, {}
    for split in SPLITS:  # pass 1: the training symbols, every split's length
        chars[split], counts[split] = _scan(files[split], format)
    vocab = Vocabulary(tuple(chr(c) for c in sorted(chars["train"])) + ((UNK,) if unknown else ()))
    ids = {s: _encode_file(files[s], format, vocab, counts[s]) for s in SPLITS}  # pass 2
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], files)


def read_text(file, format="mikolov"):
    """The symbols of one split file as a string (end of line = ``"\\n"``), at least 2 long."""
    file = Path(file)
    _scan(file, format)  # the checks: decodable, at least 2 symbols
    return "".join(_symbol_blocks(file, format))


def id_dtype(size):
    """The smallest signed integer NumPy dtype that holds the ids ``0 .. size - 1``."""
    for dtype in (np.int8, np.int16, np.int32):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _scan(file, format):
    """The set of code points in ``file`` and its number of symbols (>= 2, else an error)."""
    chars, count = set(), 0
    for block in _symbol_blocks(file, format):
        chars.update(np.unique(_code_points(block)).tolist())
        count += len(block)
    if count < 2:
        what = "empty split (no symbols)" if not count else "only one symbol (nothing to predict)"
        raise CorpusError(f"{file}: {what}; expected {_FORMAT_WORDS[format]}")
    return chars, count


def _encode_file(file, format, vocab, count):
    """The ``count`` symbols of ``file`` as one (count,) array of ids, filled block by block."""
    out = np.empty(count, dtype=id_dtype(len(vocab)))
    start, lines = 0, 0
    for block in _symbol_blocks(file, format):
        ids = vocab.encode(block, where=str(file), first_line=lines + 1)
        out[start:start + ids.shape[0]] = ids
        start += ids.shape[0]
        lines += block.count(EOL)
    if start != count:  # the file changed between the two passes
        raise CorpusError(f"{file}: changed while it was read ({start:,} symbols, then {count:,})")
    return out


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


#: bytes read at a time
BLOCK = 1 << 18


def _byte_blocks(file):
    """The bytes of ``file`` (gunzipped if ``.gz``) in blocks of about :data:`BLOCK`, each
    ending at a UTF-8 character boundary, so every block decodes on its own."""
    opener = gzip.open if file.name.endswith(".gz") else open
    carry = b""
    try:
        with opener(file, "rb") as f:
            while True:
                raw = f.read(BLOCK)
                if not raw:
                    break
                data = carry + raw
                cut = len(data)  # back off over the bytes of a character cut in two
                while cut > 0 and len(data) - cut < 4 and (data[cut - 1] & 0xC0) == 0x80:
                    cut -= 1
                if cut > 0 and data[cut - 1] >= 0xC0:  # a lead byte: its character is cut
                    cut -= 1
                yield data[:cut]
                carry = data[cut:]
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        reason = " ".join(reason.split())  # one line
        raise CorpusError(f"{file}: cannot read ({reason})") from None
    if carry:
        yield carry


def _text_blocks(file):
    """The text of ``file`` in blocks; undecodable bytes raise ``CorpusError`` with their line."""
    offset, lines = 0, 0
    for raw in _byte_blocks(file):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = lines + raw.count(b"\n", 0, exc.start) + 1
            raise CorpusError(
                f"{file} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                f"{offset + exc.start}); expected {_FORMAT_WORDS['raw']}"
            ) from None
        offset += len(raw)
        lines += raw.count(b"\n")


def _symbol_blocks(file, format):
    """The symbols of ``file`` in blocks of text (end of line = :data:`EOL`)."""
    if format == "raw":
        yield from _text_blocks(file)
        return
    carry, number = "", 0  # the line cut by the end of a block; lines done
    for text in _text_blocks(file):
        lines = (carry + text).split("\n")
        carry = lines.pop()
        if lines:
            yield _parse_mikolov(lines, file, number)
            number += len(lines)
    if carry.strip():  # a last sentence without its newline (a whitespace-only tail is not one)
        yield _parse_mikolov([carry], file, number)


def _parse_mikolov(lines, file, number):
    """Complete lines of Mikolov's spaced characters -> the text they spell, an EOL each.

    ``number`` is the count of lines before these (for the line numbers of errors).
    """
    words = []
    for i, line in enumerate(lines, number + 1):
        chars = line.split()
        word = "".join(chars)
        if len(word) != len(chars):
            bad = next(c for c in chars if len(c) != 1)
            raise CorpusError(
                f"{file} line {i}: token {bad[:20]!r} is not one character; expected "
                f"{_FORMAT_WORDS['mikolov']} (use format 'raw' for plain text)"
            )
        words.append(word)
    return EOL.join(words) + EOL


def _code_points(text):
    """(len(text),) uint32 code points of ``text``."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


