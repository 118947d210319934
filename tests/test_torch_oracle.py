"""RTRL and BPTT against PyTorch autograd in float64 (an independent differentiator).

The RHN is written again below in plain torch from its equations, so the oracle shares no code
with minirtrl. Skipped when torch is not installed.
"""

import numpy as np
import pytest

import minirtrl
from minirtrl.testing import assert_close, random_problem

torch = pytest.importorskip("torch", reason="PyTorch not installed (optional oracle)")


def torch_loss(cell, params, xs, ys, mask):
    n = cell.n_hidden
    s = torch.zeros(xs.shape[1], n, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    one = torch.ones(xs.shape[1], 1, dtype=torch.float64)
    for t in range(xs.shape[0]):
        for l in range(1, cell.depth + 1):
            a = torch.cat([xs[t], s, one], 1) if l == 1 else torch.cat([s, one], 1)
            z = a @ params[f"W{l}"].T
            h, tau = torch.tanh(z[:, :n]), torch.sigmoid(z[:, n:])
            s = h * tau + s * (1 - tau)
        logits = torch.cat([s, one], 1) @ params["V"].T
        ce = torch.nn.functional.cross_entropy(logits, ys[t], reduction="none")
        total = total + (ce * mask[t]).sum()
    return total


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gradients_match_torch_autograd(depth):
    cell = minirtrl.RHN(n_in=3, n_hidden=6, n_out=4, depth=depth)
    params = cell.init(3, xp=np, init_scale=0.5, gate_bias=-1.0)
    xs, ys, mask = random_problem(cell, 8, 3, seed=9)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    loss_t = torch_loss(cell, tp, torch.tensor(xs), torch.tensor(ys), torch.tensor(mask))
    loss_t.backward()
    for method in ("rtrl", "bptt"):
        loss, grads = minirtrl.sequence_gradient(method, cell, params, xs, ys, mask)
        assert_close(loss, loss_t.item(), rtol=1e-13, atol=1e-8)  # np.isclose's tolerances
        for k in params:
            ref = tp[k].grad.numpy()
            assert_close(grads[k], ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)),
                         err_msg=f"{method} {k}")
