"""Character corpora for ``python -m minirtrl.ptb``: read a split directory and encode it.

``read_corpus`` reads the ``train``/``valid``/``test`` splits of a directory, builds the
``Vocabulary`` from the training split and encodes every split as a 1-D array of the smallest
signed integer type that holds every id (int8 for PTB's 50 symbols). It streams: each file is
read twice in blocks of ``BLOCK`` bytes (its symbols and their count, then the ids into an
array allocated once), each block looked at once and encoded by vectorised lookups, so its
time is linear in the file's size whatever the length of its lines (a one-line corpus
included) and its memory is the encoded splits plus a few blocks. Host-side (NumPy and the
standard library); a bad corpus is one ``CorpusError`` line naming the path.

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
#: bytes read at a time (the ``block`` of the readers when None)
BLOCK = 1 << 18
_TABLE_MAX = 1 << 17  # Vocabulary encodes by a table when every symbol is below this code point
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
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "symbols", tuple(self.symbols))
        chars = self.symbols[:-1] if self.symbols[-1:] == (UNK,) else self.symbols
        if not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError(f"symbols must be single characters (then optionally {UNK!r})")
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        if np.any(np.diff(codes) <= 0):
            raise ValueError("symbols must be distinct and in increasing code-point order")
        object.__setattr__(self, "_codes", codes)
        # code point -> id (UNK, or -1 without it, for no symbol); None above _TABLE_MAX
        table = None
        if not len(codes) or codes[-1] < _TABLE_MAX:
            size = max(int(codes[-1]) + 2 if len(codes) else 1, 256)
            unk = -1 if self.unk is None else self.unk
            table = np.full(size, unk, dtype=id_dtype(len(self)))
            table[codes] = np.arange(len(codes))
        object.__setattr__(self, "_table", table)

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
        starting at line ``first_line``). Cost O(len(text)) (a table lookup; O(len(text)
        log V) when a symbol is above U+1FFFF); about 16 bytes of temporaries per character.
        """
        return self._encode(_code_points(text), where=where, first_line=first_line)

    def _encode(self, cp, *, where, first_line):
        """``encode`` of the code points ``cp`` (N,) (uint8 or uint32)."""
        other = -1 if self.unk is None else self.unk  # the id of an unknown character
        if self._table is not None:  # its last entry is no symbol: cp >= last are none
            last = np.uint32(self._table.shape[0] - 1)  # >= 255: a uint8 cp needs no clamp
            ids = self._table[cp if cp.dtype == np.uint8 else np.minimum(cp, last)]  # (N,)
        else:
            pos = np.minimum(np.searchsorted(self._codes, cp), len(self._codes) - 1)
            ids = np.where(self._codes[pos] == cp, pos, other).astype(id_dtype(len(self)))
        if other < 0 and ids.min(initial=0) < 0:
            i = int(np.argmax(ids < 0))  # first unknown character
            c = chr(int(cp[i]))
            line = int(np.count_nonzero(cp[:i] == ord(EOL))) + first_line
            raise CorpusError(
                f"{where} line {line}: symbol {c!r} (U+{ord(c):04X}) does not occur in the "
                f"training split (allow unknown symbols to map them to {UNK!r})"
            )
        return ids


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


def read_corpus(path, format="mikolov", *, unknown=False, block=None):
    """Read the directory ``path`` (see the module docstring for the formats) into a Corpus.

    The vocabulary is the sorted set of training symbols (plus ``UNK``, last, when
    ``unknown``). A validation/test symbol not in it raises ``CorpusError`` naming the
    symbol, the file and the line, unless ``unknown`` maps it to ``UNK``. Files are read
    ``block`` bytes at a time (None: ``BLOCK``).
    """
    files = split_files(path, format)
    chars, counts = {}, {}
    for split in SPLITS:  # pass 1: the training symbols, every split's length
        chars[split], counts[split] = _scan(files[split], format, block)
    vocab = Vocabulary(tuple(map(chr, chars["train"].tolist())) + ((UNK,) if unknown else ()))
    ids = {s: _encode_file(files[s], format, vocab, counts[s], block) for s in SPLITS}  # pass 2
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], files)


def id_dtype(size):
    """The smallest signed integer NumPy dtype that holds the ids ``0 .. size - 1``."""
    for dtype in (np.int8, np.int16, np.int32):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _scan(file, format, block=None):
    """The code points in ``file`` (sorted, distinct) and its number of symbols (>= 2, else
    an error)."""
    seen, count = np.zeros(128, dtype=bool), 0  # seen[c]: code point c occurs
    for codes in _symbol_codes(file, format, block):
        top = int(codes.max())
        if top >= seen.shape[0]:  # doubles, up to 0x110000 entries (1.1 MB) at most
            size = min(max(top + 1, 2 * seen.shape[0]), 0x110000)
            seen = np.concatenate([seen, np.zeros(size - seen.shape[0], dtype=bool)])
        seen[codes] = True
        count += codes.shape[0]
    if count < 2:
        what = "empty split (no symbols)" if not count else "only one symbol (nothing to predict)"
        raise CorpusError(f"{file}: {what}; expected {_FORMAT_WORDS[format]}")
    return np.flatnonzero(seen), count


def _encode_file(file, format, vocab, count, block=None):
    """The ``count`` symbols of ``file`` as one (count,) array of ids, filled block by block."""
    out = np.empty(count, dtype=id_dtype(len(vocab)))
    start, lines = 0, 0
    for codes in _symbol_codes(file, format, block):
        n = codes.shape[0]
        if start + n <= count:  # else the file grew between the two passes: counted only
            out[start:start + n] = vocab._encode(codes, where=str(file), first_line=lines + 1)
        start += n
        lines += int(np.count_nonzero(codes == ord(EOL)))
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


def _byte_blocks(file, block=None):
    """The bytes of ``file`` (gunzipped if ``.gz``) in non-empty blocks of about ``block``
    bytes, each ending at a UTF-8 character boundary, so every block decodes on its own.
    At most 3 bytes (a character cut in two) are carried into the next block."""
    block = BLOCK if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be >= 1 byte, not {block}")
    opener = gzip.open if file.name.endswith(".gz") else open
    carry = b""
    try:
        with opener(file, "rb") as f:
            while True:
                raw = f.read(block)
                if not raw:
                    break
                data = carry + raw if carry else raw
                cut = _utf8_cut(data)
                if cut:
                    yield data[:cut] if cut < len(data) else data
                carry = data[cut:]
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        reason = " ".join(reason.split())  # one line
        raise CorpusError(f"{file}: cannot read ({reason})") from None
    if carry:
        yield carry


def _utf8_cut(data):
    """Where to cut ``data`` so that no UTF-8 character is cut in two: ``len(data)``, or the
    start of a last character whose bytes are not all there yet (looks at the last 4 bytes;
    bytes that are not UTF-8 are left for the decoder to report)."""
    n = len(data)
    i = n - 1
    while i >= 0 and n - i <= 4 and (data[i] & 0xC0) == 0x80:  # continuation bytes
        i -= 1
    if i < 0 or n - i > 4 or data[i] < 0xC0:
        return n
    need = 2 if data[i] < 0xE0 else 3 if data[i] < 0xF0 else 4  # the lead byte's length
    return i if n - i < need else n


def _code_blocks(file, block=None):
    """The code points of ``file`` in blocks (uint8 for ASCII, else uint32); undecodable
    bytes raise ``CorpusError`` with their line and offset."""
    offset, lines = 0, 0
    for raw in _byte_blocks(file, block):
        if raw.isascii():  # ASCII is UTF-8: its bytes are its code points
            yield np.frombuffer(raw, dtype=np.uint8)
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = lines + raw.count(b"\n", 0, exc.start) + 1
                raise CorpusError(
                    f"{file} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                    f"offset {offset + exc.start}); expected {_FORMAT_WORDS['raw']}"
                ) from None
            yield _code_points(text)
        offset += len(raw)
        lines += raw.count(b"\n")


def symbol_blocks(file, format, *, block=None):
    """The symbols of ``file`` in blocks of text (end of line = ``EOL``), as the module
    docstring's format rules say; ``block`` bytes are read at a time (None: ``BLOCK``)."""
    for codes in _symbol_codes(Path(file), format, block):
        yield _text(codes)


def _symbol_codes(file, format, block=None):
    """The code points of the symbols of ``file`` in non-empty arrays (uint8 or uint32)."""
    return (_code_blocks if format == "raw" else _mikolov_codes)(file, block)


def _mikolov_codes(file, block):
    """Mikolov's spaced characters -> the code points of the text they spell, block by block.

    A character is a symbol when it is not whitespace (as Python's isspace says), a newline is
    ``EOL``, other whitespace is dropped; two non-whitespace characters in a row are a token
    of more than one character (an error). Each block is looked at once, with one code point
    of the one before (the end of a token cut by the block's end): time linear in the file
    whatever its line lengths, memory a few blocks.
    """
    blocks = _code_blocks(file, block)
    lines = 0  # newlines before the block
    last = None  # the block before's last code point, when not whitespace
    tail = False  # a symbol since the last newline (the last line has no newline yet)
    for codes in blocks:
        ws = _whitespace(codes)  # (n,) bool
        solid = ~ws
        if (last is not None and solid[0]) or np.any(solid[1:] & solid[:-1]):
            _bad_token(file, codes, ws, last, lines, blocks)
        out = codes[solid | (codes == ord(EOL))]  # the symbols: not whitespace, or EOL
        lines += int(np.count_nonzero(out == ord(EOL)))
        last = int(codes[-1]) if not ws[-1] else None
        if out.shape[0]:
            tail = int(out[-1]) != ord(EOL)
            yield out
    if tail:  # a last sentence without its newline (a whitespace-only tail is not one)
        yield np.array([ord(EOL)], dtype=np.uint8)


def _bad_token(file, codes, ws, last, lines, blocks):
    """Raise the error of the first token of more than one character in ``codes`` (or
    starting with ``last``, the block before's last character), naming its first 20
    characters (read on from ``blocks`` when the token runs past this block) and its line."""
    if last is not None and not ws[0]:
        start, head, line = 0, [last], lines + 1
    else:
        i = int(np.argmax(~ws[1:] & ~ws[:-1]))  # the token's second character is i + 1
        before = np.flatnonzero(ws[:i])
        start = int(before[-1]) + 1 if before.shape[0] else 0
        head = [last] if start == 0 and last is not None else []
        line = lines + int(np.count_nonzero(codes[:i] == ord(EOL))) + 1
    more = codes[start:start + 21]
    while True:
        stop = np.flatnonzero(_whitespace(more))
        head += more[:stop[0] if stop.shape[0] else more.shape[0]].tolist()
        if stop.shape[0] or len(head) >= 20:
            break
        try:
            more = next(blocks)[:21]
        except (StopIteration, CorpusError):  # the end of the file ends the token
            break
    bad = "".join(map(chr, head))
    raise CorpusError(
        f"{file} line {line}: token {bad[:20]!r} is not one character; expected "
        f"{_FORMAT_WORDS['mikolov']} (use format 'raw' for plain text)"
    )


#: (0x3001,) bool: the code points that are whitespace to Python's split and isspace (none
#: above U+3000, the largest, IDEOGRAPHIC SPACE)
_SPACE_MAX = 0x3000
_SPACE = np.array([chr(c).isspace() for c in range(_SPACE_MAX + 1)])


def _whitespace(codes):
    """(n,) bool: which of the code points ``codes`` (uint8 or uint32) are whitespace."""
    if codes.dtype == np.uint8:
        return _SPACE[codes]
    return _SPACE[np.minimum(codes, _SPACE_MAX)] & (codes <= _SPACE_MAX)


def _code_points(text):
    """(len(text),) uint32 code points of ``text``."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _text(codes):
    """The string of the code points ``codes`` (uint8 ASCII or uint32)."""
    if codes.dtype == np.uint8:
        return codes.tobytes().decode("ascii")
    return codes.astype("<u4", copy=False).tobytes().decode("utf-32-le")
