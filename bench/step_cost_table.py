"""The table of bench/results/step_cost/step_cost.md: each method's step against BPTT's.

Reads the JSON files ``bench/step_time.py --json`` wrote (one per cell) and prints, per cell,
n and B, each method's median step time and its ratio to ``bptt-1`` of the same run (BPTT
with a window of 1: the cheapest per-character gradient), as Markdown::

    python bench/step_cost_table.py bench/results/step_cost/{vanilla,rhn,gru,lstm}.json
"""

import argparse
import json
import sys


def table(doc):
    """Markdown rows of one step_time JSON document (its cell's section)."""
    rows = [r for r in doc["rows"] if r["status"] == "ok"]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    combos = list(dict.fromkeys((r["n"], r["batch"]) for r in rows))
    find = {(r["label"], r["n"], r["batch"]): r["step"]["median"] for r in rows}
    out = [f"## {rows[0]['cell']}", "",
           "| method | " + " | ".join(f"n {n}, B {b}" for n, b in combos) + " |",
           "| --- |" + " --- |" * len(combos)]
    for label in labels:
        entries = []
        for n, b in combos:
            t, base = find.get((label, n, b)), find[("bptt-1", n, b)]
            entries.append("—" if t is None else f"{t * 1e3:.3f} ({t / base:.1f}×)")
        out.append(f"| `{label}` | " + " | ".join(entries) + " |")
    return out + [""]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="bench/step_time.py --json files, one per cell")
    args = p.parse_args(argv)
    for path in args.json:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        m = doc["machine"]
        print(f"<!-- {path}: bench/step_time.py {' '.join(doc['argv'])} -->")
        print(f"<!-- {m['cpu']}, {m['cores']} cores, Python {m['python']}, NumPy {m['numpy']}, "
              f"{m.get('numpy_blas')}, {m['thread_env']}, load {m['loadavg_at_start']} -->")
        print("\n".join(table(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
