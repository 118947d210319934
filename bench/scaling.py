"""How the cost of a step grows: fitted exponents from ``bench/step_time.py`` rows.

Reads one or more ``step_time.py --json`` files and fits, by least squares on the logs,

    time per step ∝ n^p        for each algorithm (and rank, depth) at one batch size,
    time per step ∝ r^q        for ok and kf-avg at each n (over the ranks measured),
    time(depth 2) / time(depth 1) at each n,

prints the tables (Markdown) and, with ``--plot FILE.png``, draws time per step against n
on log-log axes with the fitted lines. Theory at depth 1, once H_t is formed: bptt and
uoro O(n²), kf and ok O(n³) (ok: O(r n³)), rtrl O(n⁴).

    python bench/scaling.py bench/results/speed/scaling.json --batch 16 \
        --plot bench/results/speed/scaling.png
"""

import json
import math
import os
import sys

try:  # python -m bench.scaling
    from . import _common as C
except ImportError:  # python bench/scaling.py
    import _common as C

THEORY = {"bptt": 2, "uoro": 2, "kf": 3, "kf-avg": 3, "ok": 3, "rtrl": 4}


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="step_time.py --json files")
    p.add_argument("--batch", type=C.positive, default=16, help="the batch size to fit at")
    p.add_argument("--dtype", default="float64", choices=C.DTYPES, help="the float type to fit at")
    p.add_argument("--plot", metavar="FILE.png", help="draw the log-log plot (needs matplotlib)")
    p.add_argument("--json-out", metavar="FILE", help="write the fits as JSON")
    C.add_force_flag(p)
    return p


def fit(xs, ys):
    """Least-squares slope and intercept of log ys against log xs."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx
    return slope, my - slope * mx


#: what a row of step_time.py must hold to be fitted
FIELDS = ("label", "algo", "depth", "n", "rank")


def rows_of(paths, batch, dtype):
    """The measured rows at ``batch`` and ``dtype`` of ``step_time.py --json`` files;
    ``OSError``, ``ValueError``, ``KeyError`` or ``TypeError`` for a file that is not one."""
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            rows += [r for r in json.load(f)["rows"] if r.get("status") == "ok"
                     and r["batch"] == batch and r["dtype"] == dtype]
    for r in rows:
        [r[key] for key in FIELDS], float(r["step"]["median"]), float(r["floor"]["median"])
    return rows


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.plot:
        C.checked_output("--plot", args.plot, image=True, replace=args.force, inputs=args.json)
    if args.json_out:
        C.checked_output("--json-out", args.json_out, replace=args.force, inputs=args.json)
        if args.plot and os.path.realpath(args.plot) == os.path.realpath(args.json_out):
            C.fail(f"--json-out {args.json_out}: is also the --plot file; choose another path")
    try:
        rows = rows_of(args.json, args.batch, args.dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"scaling.py: error: cannot read the step_time rows: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"scaling.py: error: no rows at batch {args.batch}, {args.dtype}", file=sys.stderr)
        return 2
    series = {}
    for r in rows:
        series.setdefault((r["label"], r["algo"], r["depth"]), []).append(
            (r["n"], r["step"]["median"], r["floor"]["median"]))
    fits = []
    print(f"batch {args.batch}, {args.dtype}: time per step ∝ n^p (medians)\n")
    print("| run | depth | sizes n | p, all sizes | p, two largest n | p of the floor, all sizes "
          "| p (theory, depth 1) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for (label, algo, depth), points in sorted(series.items()):
        points.sort()
        if len(points) < 2:
            continue
        ns = [n for n, _, _ in points]
        p, c = fit(ns, [t for _, t, _ in points])
        p_top, _ = fit(ns[-2:], [t for _, t, _ in points[-2:]])
        p_floor, _ = fit(ns, [f for _, _, f in points])
        fits.append({"label": label, "algo": algo, "depth": depth, "p": p, "c": c,
                     "p_two_largest": p_top, "p_floor": p_floor,
                     "points": [(n, t) for n, t, _ in points]})
        print(f"| {label} | {depth} | {', '.join(map(str, ns))} | {p:.2f} | {p_top:.2f} | "
              f"{p_floor:.2f} | {THEORY[algo]} |")
    by_rank = {}
    for r in rows:
        if r["algo"] in ("ok", "kf-avg") and r["depth"] == 1:
            by_rank.setdefault((r["algo"], r["n"]), []).append((r["rank"], r["step"]["median"]))
    if by_rank:
        print("\ntime per step ∝ r^q (depth 1)\n\n| algorithm | n | ranks | q (fitted) |")
        print("| --- | ---: | --- | ---: |")
        for (algo, n), points in sorted(by_rank.items()):
            if len(points) >= 2:
                q, _ = fit(*zip(*sorted(points)))
                fits.append({"algo": algo, "n": n, "q": q, "points": sorted(points)})
                ranks = ", ".join(str(r) for r, _ in sorted(points))
                print(f"| {algo} | {n} | {ranks} | {q:.2f} |")
    ratios = {}
    for r in rows:
        ratios.setdefault((r["label"], r["n"]), {})[r["depth"]] = r["step"]["median"]
    pairs = [(k, v[2] / v[1]) for k, v in sorted(ratios.items()) if 1 in v and 2 in v]
    if pairs:
        print("\ntime at depth 2 / depth 1\n\n| run | n | ratio |\n| --- | ---: | ---: |")
        for (label, n), ratio in pairs:
            print(f"| {label} | {n} | {ratio:.2f} |")
            fits.append({"label": label, "n": n, "depth2_over_depth1": ratio})
    if args.json_out:
        C.write_json(args.json_out, {"batch": args.batch, "dtype": args.dtype, "fits": fits})
    if args.plot:
        plt = C.pyplot()
        if plt is not None:
            fig, ax = plt.subplots(figsize=(7, 5))
            for f in fits:
                if "p" in f and f["depth"] == 1:
                    ns = [n for n, _ in f["points"]]
                    line, = ax.plot(ns, [t * 1e3 for _, t in f["points"]], "o",
                                    label=f"{f['label']} (p = {f['p']:.2f})")
                    ax.plot(ns, [math.exp(f["c"]) * n ** f["p"] * 1e3 for n in ns], "-",
                            color=line.get_color(), alpha=0.6)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("hidden units n")
            ax.set_ylabel("ms per step")
            ax.set_title(f"time per step, depth 1, batch {args.batch}, {args.dtype}, NumPy")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3, which="both")
            fig.tight_layout()
            C.save_figure(fig, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
