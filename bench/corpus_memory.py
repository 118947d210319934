"""Time and peak memory of the corpus reader against the size of the text it reads.

Generates random corpora in a temporary folder, in the raw or Mikolov format, optionally
gzip-compressed, one per size asked (``--chars`` symbols in the training split, or a
training file of ``--megabytes`` MB; a few thousand symbols in validation and test), and
reads each with ``minirtrl.drivers.corpus.read_corpus`` in a child process of its own
(``OPENBLAS_NUM_THREADS=1``) that reports

* the seconds of the read,
* the peak of Python's and NumPy's allocations (``tracemalloc``) during the read, and
* the peak resident set size of the child (``VmHWM`` of ``/proc/self/status``) minus its
  resident size before the read (after its imports: the interpreter baseline),

the memory as a multiple of the training file's bytes and of its symbols. The symbols are
drawn from ``--symbols`` characters (the default: 26 letters, ``_``, the newline and, raw,
the space; beyond those, characters from U+00C0 on, which take 2 or 3 bytes in UTF-8);
``--one-line`` leaves the newline out, so the whole split is one line (as text8 is). Every
symbol of the alphabet also occurs once at the end of the training split. ``--task`` also
builds the ``ptb`` command's training task (``TextTask``, B = 32) and its first one-hot
batch in the child and reports the peak after it.

    python bench/corpus_memory.py --chars 300000000 --format raw --gzip
    python bench/corpus_memory.py --format mikolov --one-line --megabytes 20 40 80
    python bench/corpus_memory.py --format raw --symbols 40000 --megabytes 30 --task
"""

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

try:  # python -m bench.corpus_memory
    from . import _common as C
except ImportError:  # python bench/corpus_memory.py
    import _common as C

#: the symbols drawn by default (Mikolov's format writes a space after each, so none is a space)
ALPHABETS = {"raw": "abcdefghijklmnopqrstuvwxyz _\n", "mikolov": "abcdefghijklmnopqrstuvwxyz_\n"}
NAMES = {"raw": "{}.txt", "mikolov": "ptb.char.{}.txt"}

CHILD = """
import json, sys, time, tracemalloc
from minirtrl.drivers.corpus import read_corpus

def status(key):  # kB figures of this process (VmHWM: its peak; not inherited across exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

before = status("VmRSS")
tracemalloc.start()
start = time.perf_counter()
corpus = read_corpus(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - start
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after = status("VmHWM")
row = {"symbols": int(corpus.train.shape[0]), "vocab": len(corpus.vocab),
       "dtype": str(corpus.train.dtype), "baseline_rss_bytes": before * 1024,
       "traced_peak_bytes": traced, "rss_growth_bytes": (after - before) * 1024,
       "seconds": seconds}
if sys.argv[3] == "task":
    from minirtrl.drivers.ptb import TextTask
    start = time.perf_counter()
    task = TextTask(corpus, 32, 100, data_format=sys.argv[2])
    batch = task.next_batch()
    row.update(task_seconds=time.perf_counter() - start, batch_x_shape=list(batch.x.shape),
               task_rss_growth_bytes=(status("VmHWM") - before) * 1024)
print(json.dumps(row))
"""


def alphabet(fmt, symbols, one_line):
    """(V,) uint32 code points of the symbols drawn: the default alphabet of ``fmt`` (less the
    newline when ``one_line``), cut to ``symbols`` or extended from U+00C0 on, skipping
    whitespace and surrogates."""
    base = [ord(c) for c in ALPHABETS[fmt] if not (one_line and c == "\n")]
    if symbols is None or symbols <= len(base):
        return np.array(base[:symbols], dtype=np.uint32)
    extra, c = [], 0xC0
    while len(base) + len(extra) < symbols:
        if not chr(c).isspace() and not 0xD800 <= c < 0xE000:
            extra.append(c)
        c += 1
    return np.array(base + extra, dtype=np.uint32)


def utf8(codes, fmt):
    """The bytes of the code points ``codes`` in format ``fmt`` (Mikolov's: a space after each)."""
    if fmt == "mikolov":  # every character followed by a space, as in the PTB files
        spaced = np.empty(2 * codes.shape[0], dtype=np.uint32)
        spaced[0::2], spaced[1::2] = codes, ord(" ")
        codes = spaced
    if codes.max(initial=0) < 128:
        return codes.astype(np.uint8).tobytes()
    return codes.astype("<u4").tobytes().decode("utf-32-le").encode("utf-8")


def write_split(path, chars, fmt, compress, seed, codes, block=1 << 23, every=False):
    """``chars`` random symbols of ``codes`` to ``path`` in blocks (never the whole text in
    memory), then, when ``every``, each of ``codes`` once."""
    rng = np.random.default_rng(seed)
    opener = gzip.open if compress else open
    kwargs = {"compresslevel": 1} if compress else {}
    with opener(path, "wb", **kwargs) as f:
        left = chars
        while left > 0:
            n = min(block, left)
            f.write(utf8(codes[rng.integers(0, codes.shape[0], size=n)], fmt))
            left -= n
        if every:
            f.write(utf8(codes, fmt))


def bytes_per_char(codes, fmt):
    """Mean bytes a drawn symbol takes in the file (its UTF-8 bytes, plus Mikolov's space)."""
    text = codes.astype("<u4").tobytes().decode("utf-32-le")
    return len(text.encode("utf-8")) / len(text) + (fmt == "mikolov")


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--chars", type=C.listed(C.int_at_least(2)), nargs="+", default=None,
                      help="symbols in the training split, one corpus each (default 300000000)")
    size.add_argument("--megabytes", type=C.listed(C.positive_float), nargs="+", default=None,
                      help="or the training file's size in MB (10^6 bytes), one corpus each")
    p.add_argument("--format", choices=sorted(NAMES), default="raw", help="corpus format")
    p.add_argument("--symbols", type=C.int_at_least(2), default=None,
                   help="alphabet size V (None: the format's default alphabet)")
    p.add_argument("--one-line", action="store_true",
                   help="no newline in the alphabet: each split is one line")
    p.add_argument("--gzip", action="store_true", help="compress the splits (gzip level 1)")
    p.add_argument("--task", action="store_true",
                   help="also build the ptb training task and its first one-hot batch")
    p.add_argument("--dir", default=None,
                   help="where to write the corpus (None: a temporary folder)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    C.add_force_flag(p)
    return p


def measure(folder, args, codes, chars):
    """Write the corpus of ``chars`` training symbols in ``folder``, read it in a child."""
    suffix = ".gz" if args.gzip else ""
    start = time.perf_counter()
    for split, n, seed in (("train", chars, 0), ("valid", 5000, 1), ("test", 5000, 2)):
        write_split(os.path.join(folder, NAMES[args.format].format(split) + suffix), n,
                    args.format, args.gzip, seed, codes, every=split == "train")
    train = os.path.join(folder, NAMES[args.format].format("train") + suffix)
    size = os.path.getsize(train)
    text = size
    if args.gzip:
        with gzip.open(train, "rb") as f:
            text = sum(len(b) for b in iter(lambda: f.read(1 << 24), b""))
    print(f"# wrote {chars:,} symbols in {time.perf_counter() - start:.1f} s; training file "
          f"{size:,} bytes", flush=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, folder, args.format,
                          "task" if args.task else "read"],
                         capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    row = json.loads(out.stdout)
    row.update(format=args.format, gzip=args.gzip, one_line=args.one_line, file_bytes=size,
               text_bytes=text, seconds_per_mb=row["seconds"] / (text / 1e6),
               traced_per_char=row["traced_peak_bytes"] / row["symbols"],
               rss_per_char=row["rss_growth_bytes"] / row["symbols"],
               rss_per_text_byte=row["rss_growth_bytes"] / text)
    if args.task:
        row["task_rss_per_text_byte"] = row["task_rss_growth_bytes"] / text
    return row


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    if args.dir is not None:  # the temporary folder is made in it: it must exist, writable
        if not os.path.isdir(args.dir):
            p.error(f"--dir {args.dir}: no such folder")
        C.checked_output("--dir", args.dir, directory=True)
    if args.json:
        C.checked_output("--json", args.json, replace=args.force)
    codes = alphabet(args.format, args.symbols, args.one_line)
    if args.megabytes:
        per = bytes_per_char(codes, args.format)
        sizes = [max(2, round(mb * 1e6 / per)) for mb in C.parse_list(args.megabytes, float)]
    else:
        sizes = C.parse_list(args.chars or [300_000_000], int)
    info = C.machine_info("numpy", "cpu")
    C.print_machine(info)
    rows = []
    for chars in sizes:
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            row = measure(folder, args, codes, chars)
        if row is None:
            return 1
        rows.append(row)
        print(f"# {row['text_bytes'] / 1e6:,.1f} MB of text: {row['seconds']:.2f} s, RSS growth "
              f"{row['rss_per_text_byte']:.2f} × the text", flush=True)
    task = " | task RSS growth | × text" if args.task else ""
    print(f"| format | V | characters | text bytes | ids dtype | seconds | s / MB | traced peak "
          f"| RSS growth | × text | × chars{task} |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
          + (" ---: | ---: |" if args.task else ""))
    for row in rows:
        what = (row["format"] + (" .gz" if row["gzip"] else "")
                + (" one line" if row["one_line"] else ""))
        task = (f" | {row['task_rss_growth_bytes'] / 2**20:,.0f} MiB | "
                f"{row['task_rss_per_text_byte']:.2f}" if args.task else "")
        print(f"| {what} | {row['vocab']:,} | {row['symbols']:,} | {row['text_bytes']:,} | "
              f"{row['dtype']} | {row['seconds']:.2f} | {row['seconds_per_mb']:.4f} | "
              f"{row['traced_peak_bytes'] / 2**20:,.0f} MiB | "
              f"{row['rss_growth_bytes'] / 2**20:,.0f} MiB | {row['rss_per_text_byte']:.2f} | "
              f"{row['rss_per_char']:.2f}{task} |")
    if args.json:
        C.write_json(args.json, {"machine": info, "argv": sys.argv[1:], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
