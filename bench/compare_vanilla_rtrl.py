"""minirtrl against omarschall/vanilla-rtrl on the equal network, interleaved in one process.

The peer (a NumPy RTRL, KF-RTRL and UORO for a leaky vanilla RNN, batch 1) is imported
from a checkout you give (``--peer DIR``, e.g. a clone of github.com/omarschall/vanilla-rtrl;
it needs scipy): nothing of it is copied here. Both
sides get the same leaky tanh RNN, ``a_t = (1 - α) a_{t-1} + α tanh(W_rec a_{t-1} + W_in
x_t + b)`` with a softmax readout: the peer's ``RNN`` and minirtrl's ``VanillaRNN`` with
``W1 = [W_in | W_rec | b]`` and ``V = [W_out | b_out]``. First the script checks that
exact RTRL agrees (the summed gradient of a few steps from the zero state), then it times,
per step and batch 1, with the CPU clock:

    peer      one step as the peer's Simulation runs it: next_state, z_out, the error,
              update_learning_vars, and the learning algorithm's call (the gradients)
    online    minirtrl's own online step (``methods.advance``: the signs drawn on the host,
              the cell's step, the method's update, the readout, the gradients)
    sequence  ``minirtrl.sequence_gradient`` over ``--length`` steps, divided by them:
              what a user pays through the public entry point
    jax jit   (``--jax``) ``minirtrl.compiled.online_step`` on JAX, float64
    jax scan  (``--jax``) ``minirtrl.compiled.scan_steps`` over ``--length`` steps per call

for rtrl, kf and uoro at each ``--sizes`` n, with the vanilla cell and with the depth-1
RHN (twice the recurrent parameters), and reports the ratio of recurrent parameters
handled per second, minirtrl over the peer (above 1: minirtrl does more work per second;
for the vanilla cell the same as "faster per step").

    OPENBLAS_NUM_THREADS=1 python bench/compare_vanilla_rtrl.py --peer ../vanilla-rtrl
"""

import os
import statistics
import sys

import numpy as np

try:  # python -m bench.compare_vanilla_rtrl
    from . import _common as C
except ImportError:  # python bench/compare_vanilla_rtrl.py
    import _common as C

import minirtrl
from minirtrl.methods import advance

METHODS = ("rtrl", "kf", "uoro")
PEER_CLASSES = {"rtrl": "RTRL", "kf": "KF_RTRL", "uoro": "UORO"}


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--peer", required=True, help="a checkout of omarschall/vanilla-rtrl")
    p.add_argument("--sizes", type=C.positive, nargs="+", default=[32, 64, 128],
                   help="hidden units n")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                   help="the methods to time")
    p.add_argument("--n-in", type=C.positive, default=8, help="input size (one-hot)")
    p.add_argument("--n-out", type=C.positive, default=8, help="output classes")
    p.add_argument("--alpha", type=C.leak_rate, default=1.0, help="the leak rate α of both RNNs")
    p.add_argument("--length", type=C.positive, default=50,
                   help="steps of each sequence_gradient call (its time is divided by them)")
    p.add_argument("--rounds", type=C.positive, default=7, help="interleaved timed rounds")
    p.add_argument("--min-seconds", type=C.positive_float, default=0.3,
                   help="CPU seconds of each contestant per round, about")
    p.add_argument("--cells", nargs="+", default=["vanilla", "rhn"], choices=["vanilla", "rhn"],
                   help="minirtrl's cells to time")
    p.add_argument("--seed", type=C.nonnegative, default=0,
                   help="seeds the weights and the inputs")
    p.add_argument("--jax", action="store_true",
                   help="also time minirtrl.compiled on JAX (float64, x64 mode switched on): "
                   "the jitted step and a scan over --length steps (default: off)")
    p.add_argument("--json", metavar="FILE", help="write every timing and the machine as JSON")
    C.add_force_flag(p)
    return p


# ---- the peer ------------------------------------------------------------------------------
def import_peer(folder):
    """The peer's RNN class, functions and learning algorithms, from its checkout."""
    folder = os.path.abspath(folder)
    if not os.path.isdir(os.path.join(folder, "learning_algorithms")):
        peer_error(f"--peer {folder}: not a checkout of omarschall/vanilla-rtrl (no "
                   "learning_algorithms/)")
    sys.path.insert(0, folder)
    try:
        import learning_algorithms
        from core.RNN import RNN
        from functions import softmax, softmax_cross_entropy, tanh
    except ImportError as exc:  # e.g. the peer needs scipy, which is not installed
        peer_error(f"--peer {folder}: cannot import the peer ({type(exc).__name__}: {exc})")

    return {"RNN": RNN, "tanh": tanh, "softmax": softmax, "loss": softmax_cross_entropy,
            "algorithms": learning_algorithms}


def peer_error(message):
    """A ``--peer`` that cannot be used: one line on stderr, exit status 2."""
    print(f"compare_vanilla_rtrl.py: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def peer_network(peer, weights, alpha):
    W_in, W_rec, b, W_out, b_out = (np.array(w) for w in weights)
    rnn = peer["RNN"](W_in, W_rec, W_out, b, b_out, activation=peer["tanh"], alpha=alpha,
                      output=peer["softmax"], loss=peer["loss"])
    rnn.reset_network(h=np.zeros(W_rec.shape[0]))  # a = tanh(0) = 0: the zero state
    return rnn


def peer_step(rnn, alg, x, y):
    """One step of the peer, as its Simulation runs it; returns the gradients list."""
    rnn.next_state(x)
    rnn.z_out()
    rnn.y = y
    rnn.error = rnn.loss.f_prime(rnn.z, y)
    alg.update_learning_vars()
    return alg()


# ---- the equal network -------------------------------------------------------------------
def weights(n, n_in, n_out, rng):
    """W_in (n, n_in), W_rec (n, n), b (n,), W_out (n_out, n), b_out (n_out,), N(0, 1/n)."""
    s = 1 / np.sqrt(n)
    return (rng.standard_normal((n, n_in)) * s, rng.standard_normal((n, n)) * s,
            rng.standard_normal(n) * s, rng.standard_normal((n_out, n)) * s,
            rng.standard_normal(n_out) * s)


def minirtrl_params(ws, cell):
    """The same weights in minirtrl's layout; for the RHN, gate rows 0 and gate bias 40."""
    W_in, W_rec, b, W_out, b_out = ws
    W1 = np.concatenate([W_in, W_rec, b[:, None]], axis=1)  # (n, n_in + n + 1)
    V = np.concatenate([W_out, b_out[:, None]], axis=1)
    if isinstance(cell, minirtrl.RHN):  # sigmoid(40) == 1.0 in float64: the gate is open
        gates = np.zeros_like(W1)
        gates[:, -1] = 40.0
        W1 = np.concatenate([W1, gates], axis=0)
    return {"W1": W1, "V": V}


def check_equal(peer, n, args):
    """Largest relative difference of the exact RTRL gradient (6 steps), peer vs minirtrl."""
    rng = np.random.default_rng(args.seed)
    ws = weights(n, args.n_in, args.n_out, rng)
    T = 6
    xs = np.eye(args.n_in)[rng.integers(0, args.n_in, size=T)]
    ys = rng.integers(0, args.n_out, size=T)
    rnn = peer_network(peer, ws, args.alpha)
    alg = peer["algorithms"].RTRL(rnn)
    total = None
    for t in range(T):
        g = peer_step(rnn, alg, xs[t], np.eye(args.n_out)[ys[t]])
        total = g if total is None else [a + b for a, b in zip(total, g)]
    dW_rec, dW_in, db, dW_out, db_out = total
    want = {"W1": np.concatenate([dW_in, dW_rec, db[:, None]], axis=1),
            "V": np.concatenate([dW_out, db_out[:, None]], axis=1)}
    cell = minirtrl.VanillaRNN(args.n_in, n, args.n_out, alpha=args.alpha)
    _, got = minirtrl.sequence_gradient("rtrl", cell, minirtrl_params(ws, cell), xs[:, None, :],
                                        ys[:, None])
    return max(float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k]))) for k in want)


# ---- the contestants ------------------------------------------------------------------------
def contestants(peer, n, method, args):
    """``{name: (step function, steps per call, recurrent parameters)}`` for one n, method."""
    rng = np.random.default_rng(args.seed + n)
    ws = weights(n, args.n_in, args.n_out, rng)
    stream = max(64, args.length)  # every sequence_gradient call gets its --length steps
    xs = np.eye(args.n_in)[rng.integers(0, args.n_in, size=stream)]
    ys = rng.integers(0, args.n_out, size=stream)
    onehots = np.eye(args.n_out)[ys]
    rnn = peer_network(peer, ws, args.alpha)
    alg = getattr(peer["algorithms"], PEER_CLASSES[method])(rnn)
    count = {"t": 0}

    def peer_call():
        t = count["t"] % stream
        count["t"] += 1
        peer_step(rnn, alg, xs[t], onehots[t])

    out = {"peer": (peer_call, 1, n * (n + args.n_in + 1))}
    for name in args.cells:
        cell = (minirtrl.VanillaRNN(args.n_in, n, args.n_out, alpha=args.alpha) if name == "vanilla"
                else minirtrl.RHN(args.n_in, n, args.n_out))
        params = minirtrl_params(ws, cell)
        recurrent = params["W1"].size
        out[f"{name} online"] = (online_call(method, cell, params, xs, ys, args.seed), 1, recurrent)
        xseq, yseq = xs[: args.length, None, :], ys[: args.length, None]

        def sequence_call(cell=cell, params=params, xseq=xseq, yseq=yseq):
            minirtrl.sequence_gradient(method, cell, params, xseq, yseq, seed=1)

        out[f"{name} sequence"] = (sequence_call, args.length, recurrent)
        if args.jax:
            out[f"{name} jax jit"] = (jax_call(method, cell, params, xs, ys, args.seed), 1,
                                      recurrent)
            out[f"{name} jax scan"] = (jax_scan(method, cell, params, xs, ys, args),
                                       args.length, recurrent)
    return out


def jax_call(method, cell, params, xs, ys, seed):
    """``compiled.online_step``: one jitted step, the host's signs moved by the call, its
    result waited for."""
    import jax
    import jax.numpy as jnp

    from minirtrl import compiled

    algo = minirtrl.online(method, cell)
    step = compiled.online_step(algo)
    pj = {k: jnp.asarray(v) for k, v in params.items()}
    rng = np.random.default_rng(seed)
    carried = {"state": algo.init(1, xp=jnp, dtype=jnp.float64), "t": 0}
    xs1 = [jnp.asarray(xs[t][None, :]) for t in range(xs.shape[0])]
    ys1 = [jnp.asarray(ys[t : t + 1]) for t in range(ys.shape[0])]
    mask = jnp.ones(1)

    def call():
        t = carried["t"] % len(xs1)
        signs = algo.draw_signs(rng, 1, dtype=np.float64)
        carried["state"], _, g = step(pj, carried["state"], xs1[t], ys1[t], mask, signs)
        carried["t"] += 1
        jax.block_until_ready(g)

    return call


def jax_scan(method, cell, params, xs, ys, args):
    """``compiled.scan_steps`` over ``--length`` steps per call, the signs of all of them
    drawn on the host at once, the result waited for."""
    import jax
    import jax.numpy as jnp

    from minirtrl import compiled
    from minirtrl.methods import draw_sign_steps

    algo = minirtrl.online(method, cell)
    scan = compiled.scan_steps(algo)
    pj = {k: jnp.asarray(v) for k, v in params.items()}
    L = args.length
    xk, yk, mk = jnp.asarray(xs[:L, None, :]), jnp.asarray(ys[:L, None]), jnp.ones((L, 1))
    rng = np.random.default_rng(args.seed)
    carried = {"state": algo.init(1, xp=jnp, dtype=jnp.float64)}

    def call():
        signs = draw_sign_steps(rng, algo.sign_shapes(1), L, xp=np, dtype=np.float64)
        carried["state"], _, g = scan(pj, carried["state"], xk, yk, mk, signs)
        jax.block_until_ready(g)

    return call


def online_call(method, cell, params, xs, ys, seed):
    """minirtrl's online step with its state carried on (signs drawn on the host)."""
    algo = minirtrl.online(method, cell)
    rng = np.random.default_rng(seed)
    carried = {"state": algo.init(1, xp=np, dtype=np.float64), "t": 0}
    mask = np.ones(1)
    xs1 = [xs[t][None, :] for t in range(xs.shape[0])]
    ys1 = [np.asarray(ys[t : t + 1], dtype=np.int64) for t in range(ys.shape[0])]

    def call():
        t = carried["t"] % len(xs1)
        signs = algo.draw_signs(rng, 1, xp=np, dtype=np.float64)
        carried["state"], _, _ = advance(algo, params, carried["state"], xs1[t], ys1[t], mask,
                                         signs, xp=np)
        carried["t"] += 1

    return call


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.json:
        C.checked_output("--json", args.json, replace=args.force)
    peer = import_peer(args.peer)
    info = C.machine_info("numpy", "cpu")
    if args.jax:
        import jax

        jax.config.update("jax_enable_x64", True)
        info["jax"] = jax.__version__
    print("# bench/compare_vanilla_rtrl.py  " + " ".join(sys.argv[1:]))
    C.print_machine(info)
    print(f"# n_in {args.n_in}, n_out {args.n_out}, alpha {args.alpha:g}, batch 1, float64; CPU "
          f"clock, median of {args.rounds} interleaved rounds; sequence_gradient over "
          f"{args.length} steps", flush=True)
    rows = []
    for n in args.sizes:
        diff = check_equal(peer, n, args)
        print(f"# n = {n}: exact RTRL, peer vs minirtrl VanillaRNN: max relative difference "
              f"{diff:.2e}", flush=True)
        for method in args.methods:
            entries = contestants(peer, n, method, args)
            for fn, _, _ in entries.values():  # warm up
                fn()
            times = {name: [] for name in entries}
            for _ in range(args.rounds):
                for name, (fn, per, _) in entries.items():
                    times[name].append(C.cpu_per_call(fn, args.min_seconds) / per)
            peer_s = statistics.median(times["peer"])
            peer_params = entries["peer"][2]
            for name, (_, _, params) in entries.items():
                ms = statistics.median(times[name]) * 1e3
                ratio = (params / (ms / 1e3)) / (peer_params / peer_s)
                rows.append({"n": n, "method": method, "who": name, "ms_per_step": ms,
                             "recurrent_params": params, "params_per_second_vs_peer": ratio,
                             "exact_rtrl_difference": diff})
                print(f"{method:5s} n {n:4d}  {name:17s} {ms:9.4f} ms/step  "
                      f"{params:7d} params  per parameter vs peer {ratio:5.2f}x", flush=True)
    if args.json:
        C.write_json(args.json, {"machine": info, "settings": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
