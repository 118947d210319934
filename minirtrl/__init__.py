"""minirtrl: exact and approximate Real-Time Recurrent Learning for recurrent networks.

One array-API-generic core (NumPy, CuPy, PyTorch, array-api-strict) with every Jacobian
written by hand:

    method   what                                       state per sample     time per step
    bptt     (truncated) backpropagation through time   K·L·n activations    O(L n²)
    rtrl     exact RTRL                                 Σ_l n·2n·k_l         O(n⁴)
    uoro     UORO, rank one over all parameters         n + |θ|              O(L n²)
    kf       KF-RTRL, one Kronecker product per block   Σ_l (k_l + 2n²)      O(L n³)
    ok       r-OK, r Kronecker products per block        r Σ_l (k_l + 2n²)    O(r L n³)
    kf-avg   mean of r independent KF-RTRL estimates    r Σ_l (k_l + 2n²)    O(r L n³)
    snap1    SnAp-1, the influence on the one-step       Σ_l 2n k_l (L = 1)   O(n²) (L = 1)
             sparsity pattern (biased)
    rflo     RFLO, H_t dropped, leak kept (biased;       n k                  O(n k)
             VanillaRNN only)

(figures for a depth-L RHN; for ``VanillaRNN``, the leaky tanh RNN, put L = 1 and n for
2n.) Shapes in docstrings and comments use: B batch, T time, n hidden units, L depth,
k_l = length of a_l (n_in+n+1 for l = 1, else n+1), m_l rows of block l (2n for the RHN,
n for the vanilla RNN), r rank. The equations: ``docs/algorithms.md``.

    >>> import numpy as np, minirtrl
    >>> cell = minirtrl.RHN(n_in=4, n_hidden=8, n_out=4, depth=2)
    >>> params = cell.init(0, xp=np, dtype=np.float64)
    >>> # loss, grads = minirtrl.sequence_gradient("rtrl", cell, params, xs, ys)
    >>> # algo = minirtrl.online("kf", cell)   # one step at a time, with signs you provide

Reading path: ``methods.py`` (the interface, the step, the entry points), then one method
(``kf.py``), then one cell (``cells/rhn.py``). The core is this package without
``drivers/`` (the command-line tools).
"""

from .adam import AdamState, adam_init, adam_step, clip_by_norm, global_norm
from .cells import GRU, LSTM, RHN, VanillaRNN
from .methods import METHODS, Online, OnlineState, exact_influence, online, sequence_gradient

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "METHODS",
    "RHN",
    "AdamState",
    "Online",
    "OnlineState",
    "VanillaRNN",
    "__version__",
    "adam_init",
    "adam_step",
    "clip_by_norm",
    "exact_influence",
    "global_norm",
    "online",
    "sequence_gradient",
]
