"""minirtrl against the same RHN written the way a PyTorch user would.

Two PyTorch-user baselines, written from the model's equations (nothing of minirtrl is used in them
but the initial parameters and the inputs):

- **exact RTRL** with ``torch.func``: per step the state Jacobian ``H_t = ds_t/ds_{t-1}``
  (B, n, n) and the immediate parameter Jacobians ``F_t^l = ∂s_t/∂W_l`` (B, n, 2n, k_l)
  by ``jacrev`` vmapped over the batch, then ``G^l = H_t G^l + F_t^l`` (``torch.bmm``);
  the readout loss is differentiated by autograd to get ``c_t = ∂loss_t/∂s_t`` and the
  gradient of ``V``; the recurrent gradient is ``einsum(c_t, G^l)``. One online step =
  all of that (no optimiser), the state carried on, like ``step_time.py``.
- **TBPTT** with autograd: a window of K steps forward on leaf parameters, the summed
  loss, ``.backward()``; the time is per character (window / K).

Both are timed on CPU beside minirtrl's ``rtrl`` online step and ``bptt`` window on the
NumPy backend and on the ``torch`` backend, in one process, same sizes and inputs.
Before timing, the script checks once (float64) that the PyTorch-user RTRL gradient
over a few steps and the autograd TBPTT window gradient equal minirtrl's, and prints the
largest relative difference, so the comparison is of equal work.

    python bench/compare_torch.py                       # n = 32, 64; B = 1, 16; float32, float64
    python bench/compare_torch.py --sizes 64 --batch 16 --dtype float32 --json cmp.json
"""

import sys
import time

try:
    import torch
    import torch.nn.functional as tnf
    from torch.func import jacrev, vmap
except ImportError:
    print("error: bench/compare_torch.py needs PyTorch, which is not installed here "
          "(pip install 'minirtrl[torch]')", file=sys.stderr)
    raise SystemExit(2) from None

import numpy as np

try:  # python -m bench.compare_torch
    from . import _common as C
except ImportError:  # python bench/compare_torch.py
    import _common as C

from minirtrl import bptt, sequence_gradient
from minirtrl.testing import to_numpy


# ---- the PyTorch user's RHN -------------------------------------------------------------------
def rhn_sample(s, x, Ws, n):
    """One RHN step for ONE sample (docs/algorithms.md (1)-(3)): s (n,), x (n_in,),
    Ws = (W_1, ..., W_L)."""
    one = s.new_ones(1)
    for l, W in enumerate(Ws):
        a = torch.cat([x, s, one]) if l == 0 else torch.cat([s, one])
        z = W @ a
        h = torch.tanh(z[:n])
        tau = torch.sigmoid(z[n:])
        s = h * tau + s * (1 - tau)
    return s


def rhn_batch(s, x, Ws, n):
    """The same step on a batch: s (B, n), x (B, n_in)."""
    one = s.new_ones(s.shape[0], 1)
    for l, W in enumerate(Ws):
        a = torch.cat([x, s, one], dim=1) if l == 0 else torch.cat([s, one], dim=1)
        z = a @ W.T
        h = torch.tanh(z[:, :n])
        tau = torch.sigmoid(z[:, n:])
        s = h * tau + s * (1 - tau)
    return s


def readout_loss(s, V, y):
    """Σ_b cross-entropy of the linear softmax readout, in nats."""
    logits = torch.cat([s, s.new_ones(s.shape[0], 1)], dim=1) @ V.T
    return tnf.cross_entropy(logits, y, reduction="sum")


class TorchRTRL:
    """Exact RTRL as a PyTorch user writes it: jacrev + vmap per step, G = H G + F."""

    def __init__(self, params, depth, B, n):
        self.n, self.depth = n, depth
        self.Ws = [params[f"W{l}"].detach().clone() for l in range(1, depth + 1)]
        self.V = params["V"].detach().clone().requires_grad_(True)

        def with_aux(s, x, Ws):
            s_new = rhn_sample(s, x, Ws, n)
            return s_new, s_new

        # d s_t / d (s_{t-1}, W_1..W_L) per sample; the new state comes back as aux
        self.jac = vmap(jacrev(with_aux, argnums=(0, 2), has_aux=True), in_dims=(0, 0, None))
        dtype = self.V.dtype
        self.s = torch.zeros(B, n, dtype=dtype)
        self.G = [torch.zeros(B, n, 2 * n, W.shape[1], dtype=dtype) for W in self.Ws]

    def step(self, x, y):
        """One online step; returns the loss and the gradients {"W1": ..., "V": ...}."""
        (H, Fs), s_new = self.jac(self.s, x, tuple(self.Ws))  # (B,n,n), (B,n,2n,k_l)
        B, n = s_new.shape
        self.G = [
            torch.bmm(H, G.reshape(B, n, -1)).reshape(G.shape) + F for G, F in zip(self.G, Fs)
        ]
        s_leaf = s_new.detach().requires_grad_(True)
        loss = readout_loss(s_leaf, self.V, y)
        c, dV = torch.autograd.grad(loss, (s_leaf, self.V))
        grads = {f"W{l}": torch.einsum("bn,bnij->ij", c, G) for l, G in enumerate(self.G, 1)}
        grads["V"] = dV
        self.s = s_new.detach()
        return loss.detach(), grads


class TorchTBPTT:
    """TBPTT as a PyTorch user writes it: K steps forward on leaf tensors, .backward()."""

    def __init__(self, params, depth, B, n):
        self.n = n
        self.Ws = [params[f"W{l}"].detach().clone().requires_grad_(True)
                   for l in range(1, depth + 1)]
        self.V = params["V"].detach().clone().requires_grad_(True)
        self.s = torch.zeros(B, n, dtype=self.V.dtype)

    def window(self, xs, ys):
        """One window (K, B, n_in), (K, B); returns the loss and the gradients."""
        for p in self.Ws + [self.V]:
            p.grad = None
        s = self.s
        loss = 0.0
        for t in range(xs.shape[0]):
            s = rhn_batch(s, xs[t], self.Ws, self.n)
            loss = loss + readout_loss(s, self.V, ys[t])
        loss.backward()
        self.s = s.detach()
        grads = {f"W{l}": W.grad for l, W in enumerate(self.Ws, 1)}
        grads["V"] = self.V.grad
        return loss.detach(), grads


# ---- equal work: one check --------------------------------------------------------------------
def max_rel_diff(a, b):
    """max over keys of max|a - b| / max|b| (NumPy dicts)."""
    return max(float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k]))) for k in b)


def check_equal(n, depth, B, K, args):
    """Same gradients as minirtrl (float64): RTRL over T steps, and one TBPTT window."""
    nx, ndev = C.open_backend("numpy")
    T = 6
    cell, p_np = C.make_cell_and_params(n, depth, args.n_in, args.n_out, xp=nx,
                                        dtype=nx.float64, device=ndev, seed=args.seed,
                                        init_scale=args.init_scale)
    p_t = {k: torch.from_numpy(np.array(v)) for k, v in p_np.items()}
    rng = np.random.default_rng(args.seed + 7)
    xs_np, ys_np = C.one_hot_stream(rng, max(T, K), B, args.n_in, args.n_out, xp=nx,
                                    dtype=nx.float64, device=ndev)
    xs_t, ys_t = torch.from_numpy(np.array(xs_np)), torch.from_numpy(np.array(ys_np))

    # exact RTRL over T steps: gradients summed over steps
    _, ref = sequence_gradient("rtrl", cell, p_np, xs_np[:T], ys_np[:T])
    user = TorchRTRL(p_t, depth, B, n)
    total = None
    for t in range(T):
        _, g = user.step(xs_t[t], ys_t[t])
        total = g if total is None else {k: total[k] + g[k] for k in g}
    rtrl_diff = max_rel_diff({k: v.numpy() for k, v in total.items()}, ref)

    # one TBPTT window of K steps from the zero state
    mask = nx.ones((K, B), dtype=nx.float64)
    s0 = nx.zeros((B, n), dtype=nx.float64)
    _, ref_w, _ = bptt.window_gradient(cell, p_np, s0, xs_np[:K], ys_np[:K], mask, xp=nx)
    _, g_w = TorchTBPTT(p_t, depth, B, n).window(xs_t[:K], ys_t[:K])
    tbptt_diff = max_rel_diff({k: v.numpy() for k, v in g_w.items()},
                              {k: to_numpy(v) for k, v in ref_w.items()})
    return rtrl_diff, tbptt_diff


# ---- timing -----------------------------------------------------------------------------------
def user_rtrl_bench(params, depth, B, n, xs, ys):
    user = TorchRTRL(params, depth, B, n)
    xs = [xs[t] for t in range(xs.shape[0])]
    ys = [ys[t] for t in range(ys.shape[0])]
    count = {"t": 0}

    def step():
        t = count["t"] % len(xs)
        count["t"] += 1
        return user.step(xs[t], ys[t])

    return step


def user_tbptt_bench(params, depth, B, n, K, xs, ys):
    user = TorchTBPTT(params, depth, B, n)
    windows = xs.shape[0] // K
    wins = [(xs[i * K:(i + 1) * K], ys[i * K:(i + 1) * K]) for i in range(windows)]
    count = {"i": 0}

    def step():
        w = wins[count["i"] % windows]
        count["i"] += 1
        return user.window(*w)

    return step


def measure_config(n, B, dtype_name, args, backends):
    """All six timings of one (n, B, dtype): {column: Timing per character}."""
    K, depth = args.truncation, args.depth
    out = {}
    tx, tdev = backends["torch"]
    dtype_t = C.resolve_dtype(tx, dtype_name)
    cell, p_t = C.make_cell_and_params(n, depth, args.n_in, args.n_out, xp=tx, dtype=dtype_t,
                                       device=tdev, seed=args.seed, init_scale=args.init_scale)
    rng = np.random.default_rng(args.seed)
    xs, ys = C.one_hot_stream(rng, 4 * K, B, args.n_in, args.n_out, xp=tx, dtype=dtype_t,
                              device=tdev)
    sync = lambda: None  # noqa: E731 - CPU only
    out["rtrl_user"] = C.measure(user_rtrl_bench(p_t, depth, B, n, xs, ys), sync, args.timer)
    out["tbptt_user"] = C.measure(user_tbptt_bench(p_t, depth, B, n, K, xs, ys), sync,
                                  args.timer).scaled(1.0 / K)
    for name in ("numpy", "torch"):
        xp, dev = backends[name]
        dtype = C.resolve_dtype(xp, dtype_name)
        cell, params = C.make_cell_and_params(n, depth, args.n_in, args.n_out, xp=xp,
                                              dtype=dtype, device=dev, seed=args.seed,
                                              init_scale=args.init_scale)
        b = C.influence_bench("rtrl", cell, params, B, None, xp=xp, dtype=dtype, device=dev,
                              seed=args.seed)
        out[f"rtrl_{name}"] = C.measure(b.step, sync, args.timer)
        b = C.bptt_bench(cell, params, B, K, xp=xp, dtype=dtype, device=dev, seed=args.seed)
        out[f"tbptt_{name}"] = C.measure(b.step, sync, args.timer).scaled(1.0 / K)
    return out


HEAD = (f"{'method':<10} {'n':>4} {'B':>3} {'dtype':<7} {'user_ms':>10} {'numpy_ms':>10} "
        f"{'torch_ms':>10} {'user/np':>8} {'user/torch':>10}")


def format_rows(n, B, dtype_name, t, K):
    lines = []
    for method, key in (("rtrl", "rtrl"), (f"tbptt/K={K}", "tbptt")):
        u, a, b = t[f"{key}_user"].median, t[f"{key}_numpy"].median, t[f"{key}_torch"].median
        lines.append(f"{method:<10} {n:>4} {B:>3} {dtype_name:<7} {u * 1e3:>10.4f} "
                     f"{a * 1e3:>10.4f} {b * 1e3:>10.4f} {u / a:>8.2f} {u / b:>10.2f}")
    return lines


def make_parser():
    p = C.parser(
        description="Time exact RTRL (torch.func jacrev/vmap) and TBPTT (autograd) written the "
        "way a PyTorch user would, against minirtrl on NumPy and on the torch backend (CPU).",
    )
    p.add_argument("--sizes", nargs="+", type=C.listed(C.positive), default=["32,64"],
                   help="hidden sizes n")
    p.add_argument("--batch", nargs="+", type=C.listed(C.positive), default=["1,16"],
                   help="batch sizes B")
    p.add_argument("--dtype", nargs="+", type=C.listed(C.dtype_name), default=["float32,float64"],
                   help="float types")
    p.add_argument("--depth", type=C.positive, default=1, help="recurrence depth L")
    p.add_argument("--truncation", type=C.positive, default=25, help="TBPTT window K")
    p.add_argument("--n-in", type=C.positive, default=50, help="input size (one-hot)")
    p.add_argument("--n-out", type=C.positive, default=50, help="output classes")
    C.add_timer_flags(p, min_seconds=0.3, warmup_seconds=0.1)
    p.add_argument("--init-scale", type=C.positive_float, default=0.01,
                   help="std of the random weights")
    p.add_argument("--seed", type=C.nonnegative, default=0,
                   help="seeds the parameters and the inputs")
    p.add_argument("--json", metavar="FILE", help="write every row and the machine as JSON")
    C.add_force_flag(p)
    return p


def parse_args(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    args.sizes = C.parse_list(args.sizes, int)
    args.batch = C.parse_list(args.batch, int)
    args.dtype = C.parse_list(args.dtype)
    args.timer = C.TimerSettings(args.warmup, args.warmup_seconds, args.repeats, args.min_seconds,
                                 args.max_repeats)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.json:
        C.checked_output("--json", args.json, replace=args.force)
    backends = {name: C.open_backend(name) for name in ("numpy", "torch")}
    machine = C.machine_info("torch", backends["torch"][1])
    machine["backend"] = "numpy and torch (minirtrl); torch (PyTorch-user code)"
    print("# bench/compare_torch.py  " + " ".join(sys.argv[1:]))
    C.print_machine(machine)
    print(f"# depth {args.depth}, n_in = {args.n_in}, n_out = {args.n_out}; median ms per "
          "character;\n# user = PyTorch-user code, numpy / torch = minirtrl on that backend; "
          "user/np, user/torch > 1 means minirtrl is faster")
    rtrl_diff, tbptt_diff = check_equal(args.sizes[0], args.depth, max(args.batch), args.truncation,
                                        args)
    print(f"# equal work (float64, n={args.sizes[0]}, B={max(args.batch)}): max relative "
          f"difference of the gradients, torch-user vs minirtrl: RTRL (6 steps) {rtrl_diff:.2e}, "
          f"TBPTT (one window) {tbptt_diff:.2e}", flush=True)
    print(HEAD, flush=True)
    rows, interrupted = [], False
    t0 = time.perf_counter()
    try:
        for dtype_name in args.dtype:
            for B in args.batch:
                for n in args.sizes:
                    t = measure_config(n, B, dtype_name, args, backends)
                    rows.append({"n": n, "batch": B, "dtype": dtype_name, "depth": args.depth,
                                 "truncation": args.truncation,
                                 **{k: v.as_dict() for k, v in t.items()}})
                    for line in format_rows(n, B, dtype_name, t, args.truncation):
                        print(line, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print(f"# interrupted after {len(rows)} configurations", flush=True)
    print(f"# total {time.perf_counter() - t0:.1f} s", flush=True)
    if args.json:
        doc = {"script": "bench/compare_torch.py", "argv": sys.argv[1:], "machine": machine,
               "check": {"rtrl_max_rel_diff": rtrl_diff, "tbptt_max_rel_diff": tbptt_diff},
               "interrupted": interrupted, "rows": rows}
        C.write_json(args.json, doc)
        print(f"# wrote {args.json} ({len(rows)} rows)", flush=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
