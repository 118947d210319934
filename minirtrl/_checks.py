"""Small argument checks shared by the core: errors that name the argument.

Integers: a Python ``int`` or a NumPy integer scalar is accepted (``operator.index``);
``bool`` and floats are refused, so ``True`` never passes for ``1``.
"""

import operator


def integer(name, value, minimum=None, *, type_error=TypeError):
    """``value`` as a Python int, or an error naming ``name``.

    A value that is not an integer raises ``type_error`` (``TypeError`` unless the caller
    has always raised ``ValueError`` there); one below ``minimum`` raises ``ValueError``.
    """
    if isinstance(value, bool):
        raise type_error(f"{name} must be an integer, not a bool ({value!r})")
    try:
        number = operator.index(value)
    except TypeError:
        raise type_error(f"{name} must be an integer, not {type(value).__name__} ({value!r})") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {number}")
    return number


def seed(value):
    """A seed: an integer >= 0 (what ``numpy.random.default_rng`` takes)."""
    return integer("seed", value, 0, type_error=ValueError)


def size(name, value):
    """A layer size or depth: an integer >= 1."""
    return integer(name, value, 1, type_error=ValueError)
