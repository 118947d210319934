"""The zero guards of the estimators: divisions that stay finite where a norm is zero.

A zero norm is not an error here: every influence estimate starts at zero, and a stream
that starts a new sequence is reset to zero. Each guard selects with ``xp.where``
(no branch on values, no host read) and divides only where the denominator is safe.
"""


def divide_where(num, den, ok, fill, *, xp):
    """``num / den`` where ``ok``, ``fill`` elsewhere (``den`` is never read where not ``ok``)."""
    safe = xp.where(ok, den, xp.ones_like(den))
    return xp.where(ok, num / safe, fill)


def norm_ratio(sq_num, sq_den, *, xp, ok=None):
    """``sqrt(‖num‖ / ‖den‖)`` from the squared norms; 1 where either is 0 (or not ``ok``).

    The balancing factor of UORO's ρ0, ρ1 and KF-RTRL's p1, p2 (``docs/algorithms.md``,
    eqs. (12), (13)): ``(sq_num / sq_den)^¼``. ``ok`` (when the caller knows it already)
    says where both norms are positive.
    """
    if ok is None:
        ok = xp.minimum(sq_num, sq_den) > 0  # both norms are positive
    one = xp.ones_like(sq_num)
    return divide_where(sq_num, sq_den, ok, one, xp=xp) ** 0.25
