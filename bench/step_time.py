"""Time one online step of every algorithm against its floor.

For each algorithm, hidden size n, depth L, batch B and dtype on one ``--backend``:

- **step**: the median time of one online step with the parameters fixed (the ±1
  signs drawn on the host and moved to the device, then the library's
  ``online.influence_step``: ``cell.step``, the method's ``update``,
  ``readout.loss_and_grad`` and the method's ``grads``; no optimiser), after a warm-up, the
  estimator state carried from step to step. For
  ``bptt`` with truncation K: one window of K steps (``bptt.window_gradient``) divided
  by K, i.e. a per-character cost; for ``every`` (every-step TBPTT, window K) one
  ``bptt.every_step``, i.e. one character's loss back-propagated through its last K steps.
- **floor**: the median time of that step's unavoidable matrix products alone, same
  shapes, dtype, backend and process (see ``floor_bench`` below and bench/README.md), and
  the ratio step / floor.
- **state**: bytes of the estimator state (bptt: the activations one window keeps),
  from shapes; for rtrl also the theoretical B·Σ_l n·m_l·k_l elements (m_l = 2n for the RHN).
- **ovh**: step − floor in ms for batch-1 steps at n = 32 (the goal was ≤ 0.25 ms).
- ``r_min`` / ``ovh_min``: the same from the fastest timed calls (least disturbed on a
  shared machine).

    python bench/step_time.py --algo kf --sizes 128 --batch 16 --dtype float32 --depth 1
    python bench/step_time.py --backend torch --json out.json      # the full matrix

Rows are printed as they are measured; Ctrl-C prints what was measured and writes the
JSON so far.
"""

import os
import sys
import time
import traceback

import numpy as np

try:  # python -m bench.step_time
    from . import _common as C
except ImportError:  # python bench/step_time.py
    import _common as C

MIB = 2.0**20
GIB = 2.0**30


# ---- floors -----------------------------------------------------------------------------------
def block_shapes(cell):
    """(m_l, k_l) of every recurrent block, from the cell interface (m_l = 2n for the RHN)."""
    shapes = cell.shapes()
    return [shapes[name] for name in cell.blocks]


def floor_description(name, rank, cell, B):
    """Human-readable list of the products the floor times (per character)."""
    n, ns, mks = cell.n_hidden, cell.n_state, block_shapes(cell)
    if name in ("snap1", "rflo"):
        return " + ".join(f"a({B},{k})@W^T({k},{m})" for m, k in mks) + \
            "  [the forward pass; the rest is elementwise]"
    if name == "every":
        return "K x bptt's: " + floor_description("bptt", rank, cell, B)
    if name in ("kf", "ok", "kf-avg"):
        r = rank or 1

        def per_block(text):  # "L x product" when every block has the same rows m
            ms = [m for m, _ in mks]
            if len(set(ms)) == 1:
                return f"{len(ms)} x matmul {text(ms[0])}"
            return " + ".join(text(m) for m in ms)

        side = (per_block(lambda m: f"H({B},{ns},{ns}) @ A({B},{ns},{r}*{m})")
                + "  [r factors side by side]")
        if r == 1:
            return side
        stacked = per_block(lambda m: f"H({B},1,{ns},{ns}) @ A({B},{r},{ns},{m})")
        return f"faster of: {side} | {stacked}  [H broadcast over the r stacked factors]"
    if name == "rtrl":
        return " + ".join(f"H({B},{ns},{ns}) @ G({B},{ns},{m}*{k})" for m, k in mks)
    if name == "uoro":
        return " + ".join(
            f"[a({B},{k})@W^T({k},{m}), v({B},{n})@Ws^T({n},{m}), dz({B},{m})@Ws({m},{n})]"
            for m, k in mks
        )
    return " + ".join(
        f"[a({B},{k})@W^T({k},{m}), dz({B},{m})@Ws({m},{n}), dz^T({m},{B})@a({B},{k})]"
        for m, k in mks
    )


def floor_bench(name, rank, cell, B, *, xp, dtype, device, seed=1, window=1):
    """A callable running the step's unavoidable products once, on fresh arrays.

    kf / ok / kf-avg: per block, ``H (B, n, n) @ A (B, n, r·m_l)`` - the r stacked factors
    laid side by side so that one batched product serves them all (r = 1 for kf). For
    r > 1 a dict of two callables is returned, this one and ``H[:, None] @ A`` with the
    factors stacked (B, r, n, m_l) (also one matmul call; on NumPy often the faster): the
    floor is the faster of the two, so it never favours the layout the library uses.
    rtrl: per block, ``H (B, n, n) @ G (B, n, m_l·k_l)``. (m_l, k_l): the block's shape.
    uoro: per micro-layer the forward ``a @ W^T``, the tangent ``v @ Ws^T`` (H_t s̃) and the
    backward ``dz @ Ws`` (ν^T ∂s_t/∂z), where Ws are W_l's state columns (contiguous).
    bptt: per micro-layer and character the forward ``a @ W^T``, the backward
    ``dz @ Ws`` and the weight gradient ``dz^T @ a``; every (every-step TBPTT, window K):
    K times bptt's. snap1, rflo: the forward ``a @ W^T`` alone (the rest of their step is
    elementwise). H is (n_state × n_state): 2n for the LSTM.
    Values are N(0, 1/n) so nothing is denormal; arrays are contiguous.
    """
    rng = np.random.default_rng(seed)
    n, ns, mks = cell.n_hidden, cell.n_state, block_shapes(cell)

    def arr(*shape):
        return xp.asarray(rng.standard_normal(shape) / np.sqrt(n), dtype=dtype, device=device)

    mT = xp.matrix_transpose
    if name in ("kf", "ok", "kf-avg", "rtrl"):
        H = arr(B, ns, ns)
        r = rank or 1
        if name == "rtrl":
            rights = [arr(B, ns, m * k) for m, k in mks]
        else:
            rights = [arr(B, ns, r * m) for m, _ in mks]

        def run():
            return [H @ X for X in rights]

        if name == "rtrl" or r == 1:
            return run
        # the r factors stacked (B, r, n, m_l), H broadcast over them: one matmul call too
        stacked = [arr(B, r, ns, m) for m, _ in mks]
        Hb = H[:, None, :, :]

        def run_stacked():
            return [Hb @ X for X in stacked]

        return {"side by side": run, "stacked": run_stacked}

    Ws = [arr(m, k) for m, k in mks]
    Wss = [arr(m, n) for m, _ in mks]
    As = [arr(B, k) for _, k in mks]
    vs = [arr(B, n) for _ in mks]
    dzs = [arr(B, m) for m, _ in mks]
    if name in ("snap1", "rflo"):

        def run():
            return [a @ mT(W) for a, W in zip(As, Ws)]

    elif name == "uoro":

        def run():
            return [
                (a @ mT(W), v @ mT(Ws_), dz @ Ws_)
                for a, W, v, Ws_, dz in zip(As, Ws, vs, Wss, dzs)
            ]

    else:
        times = window if name == "every" else 1  # every: K steps forward and back

        def run():  # each pass's products are dropped before the next, as in a step
            for _ in range(times):
                out = [(a @ mT(W), dz @ Ws_, mT(dz) @ a) for a, W, Ws_, dz in zip(As, Ws, Wss, dzs)]
            return out

    return run


# ---- one row ----------------------------------------------------------------------------------
def measure_row(algo, n, depth, B, dtype_name, args, xp, device, sync):
    name, rank, K = algo
    dtype = C.resolve_dtype(xp, dtype_name)
    row = {
        "algo": name, "rank": rank, "truncation": K, "label": algo.label,
        "n": n, "depth": depth, "batch": B, "dtype": dtype_name, "backend": args.backend,
        "n_in": args.n_in, "n_out": args.n_out, "through": args.through,
    }
    row["cell"] = args.cell
    if name == "rflo" and args.cell != "vanilla":
        row["status"] = "skipped (rflo is defined for --cell vanilla only)"
        return row
    cell, params = C.make_cell_and_params(
        n, depth, args.n_in, args.n_out, xp=xp, dtype=dtype, device=device,
        seed=args.seed, init_scale=args.init_scale, cell=args.cell,
    )
    if name == "rtrl":
        theory = C.rtrl_theory_bytes(cell, B, xp, dtype)
        row["rtrl_theory_bytes"] = theory
        if theory > args.max_gib * GIB:
            row["status"] = f"skipped (memory: {theory / GIB:.2f} GiB > --max-gib {args.max_gib:g})"
            return row
    if name == "every" and args.through == "sequence":
        row["status"] = "skipped (sequence_gradient has no every-step TBPTT)"
        return row
    try:
        if args.through == "sequence":
            bench = C.sequence_bench(name, cell, params, B, K if name == "bptt" else rank, xp=xp,
                                     dtype=dtype, device=device, seed=args.seed,
                                     length=args.length)
        elif name == "every":
            bench = C.every_step_bench(cell, params, B, K, xp=xp, dtype=dtype, device=device,
                                       seed=args.seed)
        elif name == "bptt":
            bench = C.bptt_bench(cell, params, B, K, xp=xp, dtype=dtype, device=device,
                                 seed=args.seed)
        else:
            bench = C.influence_bench(name, cell, params, B, rank, xp=xp, dtype=dtype,
                                      device=device, seed=args.seed)
    except ModuleNotFoundError as exc:
        row["status"] = f"skipped (not available: {exc.name})"
        return row
    row["state_bytes"] = bench.state_bytes
    step = C.measure(bench.step, sync, args.timer).scaled(1.0 / bench.per_call)
    del bench
    floor_fn = floor_bench(name, rank, cell, B, xp=xp, dtype=dtype, device=device,
                           window=K or 1)
    if callable(floor_fn):
        floor = C.measure(floor_fn, sync, args.timer)
    else:  # two layouts of the same products: the floor is the faster one
        timed = {k: C.measure(fn, sync, args.timer) for k, fn in floor_fn.items()}
        row["floor_layouts_ms"] = {k: v.median * 1e3 for k, v in timed.items()}
        floor = min(timed.values(), key=lambda tm: tm.median)
    row["floor_ops"] = floor_description(name, rank, cell, B)
    row["step"] = step.as_dict()
    row["floor"] = floor.as_dict()
    row["ratio"] = step.median / floor.median
    row["ratio_min"] = step.min / floor.min  # least disturbed by other processes
    if B == 1 and n == 32:
        row["overhead_ms"] = (step.median - floor.median) * 1e3
        row["overhead_min_ms"] = (step.min - floor.min) * 1e3
    row["status"] = "ok"
    return row


# ---- table ------------------------------------------------------------------------------------
HEAD = (f"{'algo':<12} {'n':>4} {'L':>2} {'B':>3} {'dtype':<7} {'step_ms':>10} {'iqr_ms':>8} "
        f"{'min_ms':>9} {'floor_ms':>10} {'fl_min':>9} {'ratio':>7} {'r_min':>6} {'state_MiB':>10} "
        f"{'rtrl_th':>8} {'ovh_ms':>7} {'ovh_min':>7}")


def format_row(row):
    lead = f"{row['label']:<12} {row['n']:>4} {row['depth']:>2} {row['batch']:>3} {row['dtype']:<7}"
    if row["status"] != "ok":
        return f"{lead} {row['status']}"
    st, fl = row["step"], row["floor"]
    th = row.get("rtrl_theory_bytes")
    th_s = f"{row['state_bytes'] / th:.2f}x" if th else "-"
    ovh = f"{row['overhead_ms']:.3f}" if "overhead_ms" in row else "-"
    ovh_min = f"{row['overhead_min_ms']:.3f}" if "overhead_min_ms" in row else "-"
    return (
        f"{lead} {st['median'] * 1e3:>10.4f} {(st['q3'] - st['q1']) * 1e3:>8.4f} "
        f"{st['min'] * 1e3:>9.4f} {fl['median'] * 1e3:>10.4f} {fl['min'] * 1e3:>9.4f} "
        f"{row['ratio']:>7.2f} "
        f"{row['ratio_min']:>6.2f} {row['state_bytes'] / MIB:>10.3f} {th_s:>8} {ovh:>7} "
        f"{ovh_min:>7}"
    )


def write_json(path, machine, args, rows, interrupted):
    if not path:
        return
    doc = {
        "script": "bench/step_time.py",
        "argv": sys.argv[1:],
        "machine": machine,
        "settings": {
            "algo": args.algo, "sizes": args.sizes, "depth": args.depth, "batch": args.batch,
            "dtype": args.dtype, "backend": args.backend, "n_in": args.n_in, "n_out": args.n_out,
            "max_gib": args.max_gib, "timer": args.timer.__dict__, "init_scale": args.init_scale,
        },
        "interrupted": interrupted,
        "rows": rows,
    }
    C.write_json(path, doc)
    print(f"# wrote {path} ({len(rows)} rows)", flush=True)


# ---- command line -----------------------------------------------------------------------------
def make_parser():
    p = C.parser(
        description="Median time of one online step of each algorithm, against its floor "
        "(the step's unavoidable matrix products alone). See bench/README.md.",
    )
    p.add_argument("--algo", nargs="+", type=C.run_tokens, default=list(C.METHODS),
                   help="algorithms: bptt rtrl uoro kf ok kf-avg snap1 rflo, and every "
                   "(every-step TBPTT); 'ok:4', 'bptt:25', 'every:25' pick one rank / window")
    p.add_argument("--ranks", nargs="+", type=C.listed(C.positive), default=["1,4,16"],
                   help="ranks for ok (kf-avg: those > 1)")
    p.add_argument("--truncations", nargs="+", type=C.listed(C.positive), default=["1,25"],
                   help="TBPTT windows K for bptt and every")
    p.add_argument("--sizes", nargs="+", type=C.listed(C.positive),
                   default=["32,64,128,256"], help="hidden sizes n")
    p.add_argument("--depth", nargs="+", type=C.listed(C.positive), default=["1,2"],
                   help="recurrence depths L (rhn; vanilla has depth 1)")
    p.add_argument("--cell", choices=["rhn", "vanilla", "gru", "lstm"], default="rhn",
                   help="the cell: the RHN, the tanh VanillaRNN (rflo runs on it alone), the "
                   "GRU or the LSTM")
    p.add_argument("--batch", nargs="+", type=C.listed(C.positive), default=["1,16"],
                   help="batch sizes B")
    p.add_argument("--dtype", nargs="+", type=C.listed(C.dtype_name), default=["float32,float64"],
                   help="float types")
    p.add_argument("--backend", default="numpy", choices=C.NAMES, help="array library")
    p.add_argument("--through", choices=["online", "sequence"], default="online",
                   help="time the library's online step, or sequence_gradient over --length "
                        "steps divided by them (what a user pays)")
    p.add_argument("--length", type=C.positive, default=64,
                   help="steps of each sequence_gradient call with --through sequence")
    p.add_argument("--n-in", type=C.positive, default=50, help="input size (one-hot)")
    p.add_argument("--n-out", type=C.positive, default=50, help="output classes")
    p.add_argument("--max-gib", type=C.positive_float, default=4.0,
                   help="skip rtrl where its influence state exceeds this many GiB (the rtrl "
                   "update holds about 3x that at its peak)")
    C.add_timer_flags(p, min_seconds=0.5, warmup_seconds=0.2)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: time.perf_counter; cpu: time.process_time, the CPU time "
                   "of this process only (use on a shared CPU; not for GPU backends)")
    p.add_argument("--init-scale", type=C.nonnegative_float, default=0.01,
                   help="std of the random weights")
    p.add_argument("--seed", type=C.nonnegative, default=0,
                   help="seeds the parameters, inputs and signs")
    p.add_argument("--json", metavar="FILE", help="write every row (and the machine) as JSON")
    C.add_force_flag(p)
    return p


def parse_args(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    args.ranks = C.parse_list(args.ranks, int)
    args.truncations = C.parse_list(args.truncations, int)
    args.sizes = C.parse_list(args.sizes, int)
    args.depth = C.parse_list(args.depth, int)
    if args.cell != "rhn":
        args.depth = [1]
    args.batch = C.parse_list(args.batch, int)
    args.dtype = C.parse_list(args.dtype)
    args.algos = C.specs_or_exit(p, "--algo", args.algo, ranks=args.ranks,
                                 truncations=args.truncations)
    args.timer = C.TimerSettings(args.warmup, args.warmup_seconds, args.repeats, args.min_seconds,
                                 args.max_repeats, args.clock)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.json:
        C.checked_output("--json", args.json, replace=args.force)
    algos = args.algos
    xp, device = C.open_backend(args.backend)
    sync = C.synchronizer(xp, device)
    machine = C.machine_info(args.backend, device)
    print("# bench/step_time.py  " + " ".join(sys.argv[1:]))
    C.print_machine(machine)
    timer = "time.process_time" if args.clock == "cpu" else "time.perf_counter"
    print(f"# n_in = {args.n_in}, n_out = {args.n_out}; times are per character; "
          f"median of >= {args.repeats} calls and >= {args.min_seconds:g} s after warm-up; "
          f"clock: {args.clock} ({timer})")
    print(HEAD, flush=True)
    rows, interrupted = [], False
    t_start = time.perf_counter()
    try:
        for dtype_name in args.dtype:
            for depth in args.depth:
                for B in args.batch:
                    for n in args.sizes:
                        for algo in algos:
                            try:
                                row = measure_row(algo, n, depth, B, dtype_name, args, xp,
                                                  device, sync)
                            except KeyboardInterrupt:
                                raise
                            except Exception as exc:
                                row = {"algo": algo[0], "rank": algo[1], "truncation": algo[2],
                                       "label": algo.label, "n": n, "depth": depth, "batch": B,
                                       "dtype": dtype_name, "backend": args.backend,
                                       "status": f"error: {type(exc).__name__}: {exc}"}
                                traceback.print_exc(file=sys.stderr)
                            rows.append(row)
                            print(format_row(row), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print(f"# interrupted after {len(rows)} rows", flush=True)
    print(f"# total {time.perf_counter() - t_start:.1f} s; load average now "
          f"{[round(x, 2) for x in os.getloadavg()]}", flush=True)
    write_json(args.json, machine, args, rows, interrupted)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
