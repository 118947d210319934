"""The one-call check against an implementation written here, independently of minirtrl.

``TheirKF`` is KF-RTRL (Mujika et al. 2018) for the leaky RNN as other code writes it: one
matrix ``W`` (n, n + n_in + 1) on the state-first ``[s; x; 1]``, the influence as
``kron(u, A)`` over the column-major flattened ``W``, a mean-squared-error loss averaged over
the batch, its own random numbers (``numpy.random.RandomState.choice``), and a random start.
Five kinds of bug can be switched on; ``testing.check`` must report each, and pass the
correct version.
"""

import numpy as np
import pytest

import minirtrl
from minirtrl import rtrl, testing
from minirtrl.testing import layout

N_IN, N, N_OUT, ALPHA, T, B = 2, 4, 3, 0.7, 8, 2
K = N + N_IN + 1


class TheirKF:
    """KF-RTRL of one leaky tanh RNN, sample by sample; ``bug`` is None or one of BUGS."""

    def __init__(self, W, W_out, b_out, xs, ys, s0, u0, A0, bug=None, first_c2=None):
        self.W, self.W_out, self.b_out = W, W_out, b_out
        self.xs, self.ys, self.s0, self.u0, self.A0, self.bug = xs, ys, s0, u0, A0, bug
        self.first_c2 = first_c2  # at a zero influence: None uses c2, +1.0 forces it

    def forward(self, s, x):
        a = np.concatenate([s, x, [1.0]])  # state first
        h = np.tanh(self.W @ a)
        D = ALPHA * np.diag(1.0 - h**2)
        H = (1.0 - ALPHA) * np.eye(N) + D @ self.W[:, :N]
        return a, D, H, (1.0 - ALPHA) * s + ALPHA * h

    def start(self):
        return [(self.s0[b], self.u0[b], self.A0[b], None) for b in range(B)]

    def step(self, state, t, c):
        """``c`` (B, 2): per sample the sign of the carried term and of the new one."""
        out = []
        for b, (s, u, A, a_prev) in enumerate(state):
            a, D, H, s_new = self.forward(s, self.xs[t, b])
            new_a = a_prev if self.bug == "time" and a_prev is not None else a
            HA = H @ A
            if not u.any():  # a zero influence: the new term alone, with its sign
                c2 = c[b][1] if self.first_c2 is None else self.first_c2
                p2 = np.sqrt(np.linalg.norm(D) / np.linalg.norm(a))
                out.append((s_new, c2 * p2 * a, c2 * D / p2, a))
                continue
            p1 = np.sqrt(np.linalg.norm(HA) / np.linalg.norm(u))
            p2 = np.sqrt(np.linalg.norm(D) / np.linalg.norm(new_a))
            if self.bug == "rho":
                p1 = p2 = 1.0
            c1, c2 = c[b]
            sign = -1.0 if self.bug == "sign" else 1.0
            scale = 1.02 if self.bug == "scale" else 1.0
            u = c1 * p1 * u + sign * c2 * p2 * new_a
            A = c1 * HA / p1 + c2 * scale * D / p2
            out.append((s_new, u, A, a))
        return out

    def flat_influence(self, state):
        return np.stack([np.kron(u, A) for _, u, A, _ in state])  # (B, n, K·n): θ[j·n + i]

    def draw(self, rs):
        if self.bug == "skew":
            return rs.choice([-1.0, 1.0], size=(B, 2), p=[0.4, 0.6])
        return rs.choice([-1.0, 1.0], size=(B, 2))

    def gradient(self, seed):
        """dW (n, K) and the readout's (dW_out, db_out) of the batch-mean MSE, one estimate."""
        rs, state = np.random.RandomState(seed), self.start()
        dW, dW_out, db_out = np.zeros(N * K), np.zeros((N_OUT, N)), np.zeros(N_OUT)
        for t in range(T):
            state = self.step(state, t, self.draw(rs))
            G = self.flat_influence(state)
            for b, (s, *_) in enumerate(state):
                err = (self.W_out @ s + self.b_out - self.ys[t, b]) / B
                dW += (err @ self.W_out) @ G[b]
                dW_out += np.outer(err, s)
                db_out += err
        return dW.reshape(K, N).T, dW_out, db_out


def problem(seed=0):
    """minirtrl's cell, parameters, data and random start, and the same in their layout."""
    cell = minirtrl.VanillaRNN(N_IN, N, N_OUT, alpha=ALPHA)
    params = cell.init(seed, init_scale=0.6)
    rng = np.random.default_rng(seed + 1)
    xs, ys = rng.standard_normal((T, B, N_IN)), rng.standard_normal((T, B, N_OUT))
    start = minirtrl.online("kf", cell).random_start(B, seed=seed + 2, scale=0.3)
    return cell, params, xs, ys, start


def theirs(cell, params, xs, ys, start, bug=None, first_c2=None):
    W = layout.state_first(params["W1"], N_IN)
    u0 = layout.state_first(start.est.u[0][:, 0], N_IN)  # (B, K)
    impl = TheirKF(W, params["V"][:, :N], params["V"][:, N], xs, ys, start.s, u0,
                   start.est.A[0][:, 0], bug, first_c2)

    def gradient(seed):
        dW, dW_out, db_out = impl.gradient(seed)
        return {"W1": layout.input_first(dW, N_IN), "V": np.c_[dW_out, db_out]}

    def influence(state):
        G = layout.unflatten_influence(impl.flat_influence(state), N, K)  # (B, n, n, K)
        return {"W1": layout.input_first(G, N_IN)}

    rs = np.random.RandomState(99)
    return testing.Estimator(
        start=impl.start, step=lambda state, t, signs: impl.step(state, t, signs["W1"][:, 0]),
        influence=influence, sign_shapes={"W1": (B, 1, 2)}, gradient=gradient,
        sampler=lambda: {"c": impl.draw(rs)})


def report_of(bug, seeds=200):
    cell, params, xs, ys, start = problem()
    yours = theirs(cell, params, xs, ys, start, bug)
    return testing.check(yours, cell, params, xs, ys, method="kf", loss="mse",
                         reduction="mean", s0=start.s, start=start, seeds=seeds)


def test_the_correct_implementation_passes_every_check():
    report = report_of(None)
    print(report)
    assert report.ok, report
    assert [c.name for c in report.checks] == ["expectation", "same signs", "unbiased", "noise",
                                               "sampler"]
    assert all(c.passed for c in report.checks), report


@pytest.mark.parametrize(("bug", "caught_by", "missed_by"), [
    ("sign", {"expectation", "same signs", "unbiased"}, {"sampler"}),
    ("time", {"expectation", "same signs", "unbiased"}, {"sampler"}),
    ("rho", {"same signs", "noise"}, {"expectation", "unbiased", "sampler"}),
    ("scale", {"expectation", "same signs"}, {"sampler"}),
    ("skew", {"sampler"}, {"expectation", "same signs"}),
])
def test_each_injected_bug_is_reported(bug, caught_by, missed_by):
    report = report_of(bug)
    print(report)
    assert not report.ok
    failed = set(report.failed)
    assert caught_by <= failed, report
    assert not (missed_by & failed), report


def test_a_zero_start_that_uses_its_signs_is_told_apart_from_a_bug():
    """At a zero influence minirtrl's kf ignores its signs; code that applies c2 there has the
    same estimate after step 1, different factors, and so other estimates from step 2 with
    the same signs. The statistics agree; forcing c2 = +1 at that step makes them equal."""
    cell, params, xs, ys, _ = problem()
    start = minirtrl.online("kf", cell).init(B)
    uses_c2 = testing.check(theirs(cell, params, xs, ys, start), cell, params, xs, ys,
                            method="kf", loss="mse", reduction="mean", seeds=100)
    assert uses_c2.failed == ["same signs"], uses_c2
    assert "after step 2 (from a zero start" in str(uses_c2)
    forced = testing.check(theirs(cell, params, xs, ys, start, first_c2=1.0), cell, params,
                           xs, ys, method="kf", loss="mse", reduction="mean", seeds=100)
    assert forced.ok, forced


class TheirRTRL:
    """Exact RTRL for the same leaky RNN with a dense (n, K·n) influence, state-first and
    column-major: G ← H G + kron(a, D); ``bug="leak"`` drops the (1 − α) I of H."""

    def __init__(self, kf, bug=None):
        self.kf, self.bug = kf, bug

    def start(self):
        return [(self.kf.s0[b], np.zeros((N, K * N))) for b in range(B)]

    def step(self, state, t, signs):
        out = []
        for b, (s, G) in enumerate(state):
            a, D, H, s_new = self.kf.forward(s, self.kf.xs[t, b])
            if self.bug == "leak":
                H = H - (1.0 - ALPHA) * np.eye(N)
            out.append((s_new, H @ G + np.kron(a, D)))
        return out


@pytest.mark.parametrize("bug", [None, "leak"])
def test_a_deterministic_implementation_is_checked_step_by_step_and_as_a_gradient(bug):
    cell, params, xs, ys, _ = problem()
    W = layout.state_first(params["W1"], N_IN)
    kf = TheirKF(W, None, None, xs, ys, np.zeros((B, N)), None, None)
    impl = TheirRTRL(kf, bug)

    def influence(state):
        G = np.stack([G for _, G in state])
        return {"W1": layout.input_first(layout.unflatten_influence(G, N, K), N_IN)}

    def gradient(seed):  # the softmax cross-entropy summed over the batch, from its influence
        state, dW = impl.start(), 0.0
        for t in range(T):
            state = impl.step(state, t, {})
            c = np.stack([_softmax_c(params["V"], s, ys_int[t, b])
                          for b, (s, _) in enumerate(state)])  # (B, n)
            dW = dW + np.einsum("bn,bnmk->mk", c, influence(state)["W1"])
        return {"W1": dW}

    ys_int = np.random.default_rng(5).integers(0, N_OUT, size=(T, B))
    yours = testing.Estimator(start=impl.start, step=impl.step, influence=influence,
                              sign_shapes={}, gradient=gradient)
    report = testing.check(yours, cell, params, xs, ys_int, seeds=3)
    print(report)
    checks = {c.name: c for c in report.checks}
    assert checks["same signs"].passed is None and checks["noise"].passed is None
    assert checks["sampler"].passed is None
    if bug is None:
        assert report.ok, report
        assert "your step is exact RTRL's" in checks["expectation"].detail
        assert "does not vary over 3 seeds and equals the exact gradient (tolerance" in \
            checks["unbiased"].detail
    else:
        assert report.failed == ["expectation", "unbiased"], report


def _softmax_c(V, s, y):
    """∂/∂s of the cross-entropy of the logits V [s; 1] at class y (written here)."""
    z = V @ np.concatenate([s, [1.0]])
    p = np.exp(z - z.max())
    p /= p.sum()
    p[y] -= 1.0
    return V[:, :N].T @ p


def test_a_step_that_changes_its_input_state_is_reported():
    cell, params, xs, ys, start = problem()
    yours = theirs(cell, params, xs, ys, start)

    def careless(state, t, signs):
        new = yours.step(state, t, signs)
        state[0] = new[0]  # writes into the state it was given
        return new

    report = testing.check(yours._replace(step=careless), cell, params, xs, ys, method="kf",
                           loss="mse", reduction="mean", s0=start.s, start=start, seeds=5)
    assert "changed the state it was given" in str(report)
    assert "expectation" in report.failed


def test_checks_that_do_not_apply_say_why():
    cell, params, xs, ys, start = problem()
    yours = theirs(cell, params, xs, ys, start)
    bare = yours._replace(gradient=None, sampler=None)
    report = testing.check(bare, cell, params, xs, ys, s0=start.s, loss="mse")
    lines = str(report).splitlines()
    assert [line.split()[0] for line in lines] == ["pass", "n/a", "n/a", "n/a", "n/a"]
    assert "no method given (method=)" in lines[1] and "no gradient given" in lines[2]
    assert report.ok
    other = testing.check(bare, cell, params, xs, ys, method="kf", s0=start.s, loss="mse")
    assert "minirtrl's start differs from yours" in str(other)  # zero start != their start
    exact = minirtrl.online("rtrl", cell)
    same_start = exact.start(start.s, rtrl.from_influence(cell, yours.influence(yours.start())))
    shapes = testing.check(bare, cell, params, xs, ys, method="rtrl", s0=start.s, loss="mse",
                           start=same_start)
    assert "your sign shapes {'W1': (2, 1, 2)} are not minirtrl's rtrl {}" in str(shapes)
    nothing = testing.Report(())
    assert not nothing.ok and nothing.failed == []


def test_anything_but_an_estimator_is_refused():
    cell, params, xs, ys, _ = problem()
    with pytest.raises(TypeError, match=r"yours must be a testing\.Estimator, not dict"):
        testing.check({}, cell, params, xs, ys)
