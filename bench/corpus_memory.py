"""Peak memory of the corpus reader against the size of the text it reads.

Generates a random corpus (``--chars`` symbols in the training split, a few thousand in
validation and test; a 29-letter alphabet with newlines) in a temporary folder, in the
raw or Mikolov format, optionally gzip-compressed, and reads it with
``minirtrl.drivers.corpus.read_corpus`` in a child process that reports

* the peak of Python's and NumPy's allocations (``tracemalloc``) during the read, and
* the peak resident set size of the child (``VmHWM`` of ``/proc/self/status``) minus its
  resident size before the read (after its imports),

each as a multiple of the number of characters of the text (1 byte per character here).

    python bench/corpus_memory.py --chars 300000000 --format raw --gzip
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

#: the symbols drawn (Mikolov's format writes a space after each, so none is a space)
ALPHABETS = {"raw": np.frombuffer(b"abcdefghijklmnopqrstuvwxyz _\n", dtype=np.uint8),
             "mikolov": np.frombuffer(b"abcdefghijklmnopqrstuvwxyz_\n", dtype=np.uint8)}
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
print(json.dumps({"symbols": int(corpus.train.shape[0]), "dtype": str(corpus.train.dtype),
                  "traced_peak_bytes": traced, "rss_growth_bytes": (after - before) * 1024,
                  "seconds": seconds}))
"""


def write_split(path, chars, fmt, compress, seed, block=1 << 24):
    """``chars`` random symbols to ``path`` in blocks (never the whole text in memory)."""
    rng = np.random.default_rng(seed)
    opener = gzip.open if compress else open
    kwargs = {"compresslevel": 1} if compress else {}
    with opener(path, "wb", **kwargs) as f:
        left = chars
        while left > 0:
            n = min(block, left)
            alphabet = ALPHABETS[fmt]
            data = alphabet[rng.integers(0, alphabet.shape[0], size=n)]
            if fmt == "mikolov":  # every character followed by a space, as in the PTB files
                spaced = np.empty(2 * n, dtype=np.uint8)
                spaced[0::2], spaced[1::2] = data, ord(" ")
                data = spaced
            f.write(data.tobytes())
            left -= n


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--chars", type=C.int_at_least(2), default=300_000_000,
                   help="symbols in the training split")
    p.add_argument("--format", choices=sorted(NAMES), default="raw", help="corpus format")
    p.add_argument("--gzip", action="store_true", help="compress the splits (gzip level 1)")
    p.add_argument("--dir", default=None,
                   help="where to write the corpus (None: a temporary folder)")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    if args.dir is not None:  # the temporary folder is made in it: it must exist, writable
        if not os.path.isdir(args.dir):
            p.error(f"--dir {args.dir}: no such folder")
        C.checked_output("--dir", args.dir, directory=True)
    if args.json:
        C.checked_output("--json", args.json)
    info = C.machine_info("numpy", "cpu")
    C.print_machine(info)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        suffix = ".gz" if args.gzip else ""
        start = time.perf_counter()
        for split, n, seed in (("train", args.chars, 0), ("valid", 5000, 1), ("test", 5000, 2)):
            write_split(os.path.join(folder, NAMES[args.format].format(split) + suffix), n,
                        args.format, args.gzip, seed)
        size = os.path.getsize(os.path.join(folder, NAMES[args.format].format("train") + suffix))
        print(f"# wrote the corpus in {time.perf_counter() - start:.1f} s; training file "
              f"{size:,} bytes", flush=True)
        out = subprocess.run([sys.executable, "-c", CHILD, folder, args.format],
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    row = json.loads(out.stdout)
    row.update(format=args.format, gzip=args.gzip, file_bytes=size,
               traced_per_char=row["traced_peak_bytes"] / row["symbols"],
               rss_per_char=row["rss_growth_bytes"] / row["symbols"])
    print("| format | characters | file bytes | ids dtype | traced peak | × chars | RSS growth | "
          "× chars | seconds |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.format}{' .gz' if args.gzip else ''} | {row['symbols']:,} | {size:,} | "
          f"{row['dtype']} | {row['traced_peak_bytes'] / 2**20:,.0f} MiB | "
          f"{row['traced_per_char']:.2f} | {row['rss_growth_bytes'] / 2**20:,.0f} MiB | "
          f"{row['rss_per_char']:.2f} | {row['seconds']:.1f} |")
    if args.json:
        C.write_json(args.json, {"machine": info, "row": row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
