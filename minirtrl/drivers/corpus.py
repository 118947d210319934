"""Character corpora for ``python -m minirtrl.ptb``: read a split directory and encode it.

``read_corpus`` reads the ``train``/``valid``/``test`` splits of a directory, builds the
``Vocabulary`` from the training split and encodes every split as a 1-D array of the smallest
signed integer type that holds every id (int8 for PTB's 50 symbols). It streams: each file is
read twice in blocks of ``BLOCK`` bytes (its symbols and their count, then the ids into an
array allocated once), so its memory is the encoded splits plus a few blocks. Host-side
(NumPy and the standard library); a bad corpus is one ``CorpusError`` line naming the path.

Formats (each file optionally ``.gz``; the plain file wins when both exist):

``"mikolov"``: ``ptb.char.{train,valid,test}.txt``, characters separated by spaces, ``_``
    between words, one sentence a line; each line gives its characters then one end-of-line
    symbol ``EOL``. Whitespace around characters (``\r`` included) is ignored; a
    whitespace-only piece after the last newline is not a line, a whitespace-only line that
    ends in a newline is an empty sentence; a token of more than one character is an error.
    PTB: 49 characters + end-of-line = 50 symbols.
``"raw"``: ``{train,valid,test}.txt`` of any UTF-8 text; every character is a symbol, the
    newline included; nothing is added, stripped or translated.

Notation: ``N`` symbols of a split, ``V`` vocabulary size.
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


@dataclass(frozen=True)
class Vocabulary:
    """Symbols of a corpus; id ``i`` is ``symbols[i]``.

    ``symbols`` are single characters in increasing code-point order (so the order depends only
    on the set of characters), followed by ``UNK`` when unknown symbols are allowed. The
    end-of-line symbol is the character ``EOL`` (id 0 for PTB).
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

    def __len__(self):
        return len(self.symbols)

    @property
    def eol(self):
        """Id of the end-of-line symbol, or None if the text had no newline."""
        return self.symbols.index(EOL) if EOL in self.symbols else None

    @property
    def unk(self):
        """Id of ``UNK``, or None when unknown symbols are not allowed."""
        return len(self.symbols) - 1 if self.symbols[-1:] == (UNK,) else None

    def encode(self, text, *, where="text", first_line=1):
        """``text`` as a (len(text),) array of ids, of the dtype ``id_dtype(len(self))``.

        A character not in the vocabulary maps to ``UNK`` when present, else raises
        ``CorpusError`` naming the character, ``where`` and the line it is on (``text``
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


def split_files(path, format="mikolov"):
    """``{split: Path}`` of the files of ``path`` for ``format`` (plain file preferred to .gz).

    Raises ``CorpusError`` if ``path`` is not a directory or a split is missing; the
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

    The vocabulary is the sorted set of training symbols (plus ``UNK``, last, when
    ``unknown``). A validation/test symbol not in it raises ``CorpusError`` naming the
    symbol, the file and the line, unless ``unknown`` maps it to ``UNK``.
    """
    files = split_files(path, format)
    chars, counts = {}, {}
    for split in SPLITS:  # pass 1: the training symbols, every split's length
        chars[split], counts[split] = _scan(files[split], format)
    vocab = Vocabulary(tuple(chr(c) for c in sorted(chars["train"])) + ((UNK,) if unknown else ()))
    ids = {s: _encode_file(files[s], format, vocab, counts[s]) for s in SPLITS}  # pass 2
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], files)


def id_dtype(size):
    """The smallest signed integer NumPy dtype that holds the ids ``0 .. size - 1``."""
    for dtype in (np.int8, np.int16, np.int32):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _scan(file, format):
    """The set of code points in ``file`` and its number of symbols (>= 2, else an error)."""
    chars, count = set(), 0
    for block in symbol_blocks(file, format):
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
    for block in symbol_blocks(file, format):
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
    """The bytes of ``file`` (gunzipped if ``.gz``) in blocks of about ``BLOCK``, each
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


def symbol_blocks(file, format):
    """The symbols of ``file`` in blocks of text (end of line = ``EOL``), as the module
    docstring's format rules say."""
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


