"""The gradient methods by name: an explicit registry, and the one check of ``rank``.

``bptt`` is the reverse-mode baseline (``minirtrl.bptt``); the others are influence
methods, each a module with the interface of ``minirtrl.influence``. ``kf-avg`` is the
``kf`` module run with r > 1 chains.
"""

from . import _checks, kf, ok, rtrl, uoro

#: influence method name -> module implementing ``minirtrl.influence``'s interface
INFLUENCE = {"rtrl": rtrl, "uoro": uoro, "kf": kf, "ok": ok, "kf-avg": kf}
#: every method name, in the order tables list them
METHODS = ("bptt",) + tuple(INFLUENCE)
#: the methods that take a rank r (r Kronecker products per block)
RANKED = ("ok", "kf-avg")


def check_method(method):
    """``method`` if it names a method, else ``ValueError`` naming ``method``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    return method


def influence_method(name):
    """The module implementing influence method ``name`` (``"rtrl"``, ``"kf"``, ...)."""
    if name not in INFLUENCE:
        raise ValueError(f"method must be one of {', '.join(INFLUENCE)}, not {name!r}")
    return INFLUENCE[name]


def check_rank(method, rank):
    """The rank ``method`` runs with: ``rank`` (default 1) for ``ok`` and ``kf-avg``, else 1.

    ``rank=None`` means 1. A rank for a method without one is a ``ValueError``, a
    non-integer a ``TypeError`` and a rank below 1 a ``ValueError``, each naming ``rank``.
    """
    if rank is None:
        return 1
    if method not in RANKED:
        raise ValueError(f"rank applies only to methods {', '.join(RANKED)}, not {method!r}")
    return _checks.integer("rank", rank, 1)
