"""Every argument check of the public entry points: each error names the argument.

A reader of the algorithms may skip this module: ``methods.py`` calls it once per public
call, and what it returns is the argument itself, converted (a Python int, the array
namespace, inputs in the parameters' dtype). Numbers: an ``int`` or NumPy integer passes
for an integer (``operator.index``), never ``bool``. Arrays: every array of one call must
come from one library; the only host reads are the range checks of targets, mask and
signs (one each).
"""

import math
import numbers
import operator
import types
from collections.abc import Iterable

from ._compat import array_namespace, get_device, index_dtype, made_dtype

# ---- numbers ------------------------------------------------------------------------------


def integer(name, value, minimum=None, *, type_error=TypeError):
    """``value`` as a Python int, or an error naming ``name``.

    A value that is not an integer raises ``type_error``; one below ``minimum`` ``ValueError``.
    """
    if isinstance(value, bool):
        raise type_error(f"{name} must be an integer, not a bool ({value!r})")
    try:
        number = operator.index(value)
    except TypeError:
        raise type_error(f"{name} must be an integer, not {type(value).__name__} "
                         f"({value!r})") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {number}")
    return number


def seed(value):
    """A seed: an integer >= 0 (what ``numpy.random.default_rng`` takes)."""
    return integer("seed", value, 0, type_error=ValueError)


def size(name, value):
    """A layer size, depth or batch: an integer >= 1."""
    return integer(name, value, 1, type_error=ValueError)


def _real(name, value, what, ok):
    """``value`` as a finite float for which ``ok`` holds, else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__} ({value!r})")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not (math.isfinite(number) and ok(number)):
        raise ValueError(f"{name} must be {what}, not {value!r}")
    return number


def positive_real(name, value):
    """``value`` as a finite float > 0, or an error naming ``name``."""
    return _real(name, value, "a finite number > 0", lambda x: x > 0)


def nonnegative_real(name, value):
    """``value`` as a finite float >= 0, or an error naming ``name``."""
    return _real(name, value, "a finite number >= 0", lambda x: x >= 0)


def finite_real(name, value):
    """``value`` as a finite float, or an error naming ``name``."""
    return _real(name, value, "a finite number", lambda x: True)


def decay(name, value):
    """A moment decay rate (Adam's beta1, beta2): a float in [0, 1)."""
    return _real(name, value, "a number in [0, 1)", lambda x: 0 <= x < 1)


def alpha(value):
    """The leak rate of ``VanillaRNN``: a float in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"alpha must be a real number in (0, 1], "
                        f"not {type(value).__name__} ({value!r})")
    if not 0.0 < float(value) <= 1.0:  # NaN fails every comparison
        raise ValueError(f"alpha must be a real number in (0, 1], not {value!r}")
    return float(value)


# ---- methods --------------------------------------------------------------------------------


def method(name, names):
    """``name`` if it is one of ``names``, else ``ValueError`` naming ``method``."""
    if name not in names:
        raise ValueError(f"method must be one of {', '.join(names)}, not {name!r}")
    return name


def rank(method_name, value, ranked):
    """The rank ``method_name`` runs with: ``value`` (default 1) for the ``ranked`` methods.

    ``None`` means 1. A rank for a method without one is a ``ValueError``, a non-integer a
    ``TypeError`` and a rank below 1 a ``ValueError``, each naming ``rank``.
    """
    if value is None:
        return 1
    if method_name not in ranked:
        raise ValueError(f"rank applies only to methods {', '.join(ranked)}, "
                         f"not {method_name!r}")
    return integer("rank", value, 1)


def cell(value):
    """``value`` if it has the cell interface (``minirtrl.cells.Cell``), else ``TypeError``."""
    from .cells import Cell  # the cells import these checks for their sizes

    if not isinstance(value, Cell):
        raise TypeError(f"cell must be a minirtrl cell such as minirtrl.RHN, "
                        f"not {type(value).__name__}")
    return value


def defined_on(module, cell_):
    """``cell_`` if the influence method ``module`` is defined for it: the module's optional
    ``check_cell`` (snap1, rflo) refuses other cells with a one-line ``ValueError``."""
    check = getattr(module, "check_cell", None)
    return cell_ if check is None else check(cell_)


def feedback(cell_, value):
    """``value``: None, or a float32/float64 array (n_hidden, n_out) (the readout's fixed
    feedback matrix); ``TypeError``/``ValueError`` naming ``feedback``."""
    if value is None:
        return None
    xp = namespace("feedback", [value])
    want = (cell_.n_hidden, cell_.n_out)
    if tuple(value.shape) != want:
        raise ValueError(f"feedback must have shape {want} (n_hidden, n_out), "
                         f"not {tuple(value.shape)}")
    if value.dtype not in tuple(getattr(xp, f) for f in FLOATS):
        raise TypeError(f"feedback must be float32 or float64, not {value.dtype}")
    return value


# ---- the array library ----------------------------------------------------------------------


def creation(xp, dtype, device):
    """``(xp, dtype, device)`` for a function that creates arrays (``init``).

    ``xp`` is an array namespace module (``numpy``, ``torch``, ``cupy``, ``array_api_strict``,
    ...; None means NumPy), returned as the array-API namespace of its arrays (through
    array-api-compat where the library needs it). ``dtype`` is its float32 or float64 (None:
    float64; refused where ``xp`` makes another); ``device`` as given (None: its default).
    """
    if xp is None:
        import numpy as xp
    if isinstance(xp, str):
        raise TypeError(f"xp must be an array namespace module, not the string {xp!r}: "
                        f"pass the module itself, e.g. `import {xp.split('.')[0]}` then "
                        f"xp={xp.split('.')[0]}")
    if not isinstance(xp, types.ModuleType) or not hasattr(xp, "empty"):
        raise TypeError(f"xp must be an array namespace module such as numpy, not "
                        f"{type(xp).__name__}")
    xp = array_namespace(xp.empty(0))
    if dtype is None:
        dtype = xp.float64
    if isinstance(dtype, str):
        raise TypeError(f"dtype must be a dtype of {xp.__name__}, not the string {dtype!r}: "
                        f"pass e.g. xp.{dtype}")
    if dtype not in (xp.float32, xp.float64):
        raise ValueError(f"dtype must be float32 or float64 of {xp.__name__}, not {dtype!r}")
    if (made := made_dtype(xp, dtype)) != dtype:  # JAX without its 64-bit mode narrows
        raise ValueError(f"dtype {getattr(dtype, '__name__', dtype)} was asked for but "
                         f"{xp.__name__} made {made} arrays (JAX's 64-bit mode is off? "
                         "call jax.config.update('jax_enable_x64', True) before creating arrays)")
    return xp, dtype, device


def namespace(name, arrays, xp=None):
    """The namespace of ``arrays``; ``TypeError`` naming ``name`` if missing, mixed or not
    ``xp``."""
    if any(a is None for a in arrays):
        raise TypeError(f"{name} is required (an array), not None")
    try:
        found = array_namespace(*arrays)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    if xp is not None and found is not xp:
        raise TypeError(f"{name} comes from {found.__name__}, but params from {xp.__name__}")
    return found


#: the dtypes of parameters (and of everything computed from them)
FLOATS = ("float32", "float64")


def floating(name, key, array, xp):
    """``array`` (``name[key]``) must be float32 or float64: other floats (float16, bfloat16)
    are refused here, not deep inside a linear-algebra routine later."""
    if array.dtype not in tuple(getattr(xp, f) for f in FLOATS):
        raise TypeError(f"{name}[{key!r}] must be float32 or float64, not {array.dtype}")


def arrays(name, values, xp=None):
    """``values``, a non-empty dict of float32 or float64 arrays of one library (``xp``, the
    namespace of the params, if given): its namespace."""
    if not isinstance(values, dict):
        raise TypeError(f"{name} must be a dict of arrays, not {type(values).__name__}")
    if not values:
        raise ValueError(f"{name} must hold at least one array")
    xp = namespace(name, list(values.values()), xp)
    for key, value in values.items():
        floating(name, key, value, xp)
    return xp


def names(name, value, within):
    """``value``, a non-empty sequence of keys of the dict ``within``, as a tuple.

    A string is refused (``keys="W1"`` would be read as "W" and "1"): ``TypeError`` naming
    ``name``; a key that ``within`` lacks is a ``ValueError``.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of names such as ('W1', 'W2'), not "
                        f"{type(value).__name__} {value!r}")
    value = tuple(value)
    if not value:
        raise ValueError(f"{name} must name at least one array")
    missing = [k for k in value if k not in within]
    if missing:
        raise ValueError(f"{name} names {missing[0]!r}, which is not one of {sorted(within)}")
    return value


def params(cell_, values):
    """Check keys, shapes and dtypes of the parameter dict ``values``; return its namespace.

    Every array must have the dtype of ``values["V"]``, float32 or float64.
    """
    cell(cell_)
    if not isinstance(values, dict):
        raise TypeError(f"params must be a dict of arrays, not {type(values).__name__}")
    expected = cell_.shapes()
    if set(values) != set(expected):
        raise ValueError(f"params must have keys {sorted(expected)}, not {sorted(values)}")
    xp = namespace("params", list(values.values()))
    floating("params", "V", values["V"], xp)
    dtype = values["V"].dtype
    for key, shape in expected.items():
        if tuple(values[key].shape) != shape:
            raise ValueError(f"params[{key!r}] must have shape {shape}, "
                             f"not {tuple(values[key].shape)}")
        if values[key].dtype != dtype:
            raise TypeError(f"params[{key!r}] must share one real floating dtype with "
                            "params['V']")
    return xp


# ---- sequences and steps --------------------------------------------------------------------


def _inputs(name, x, lead, n_in, xp, dtype):
    """``x`` of shape ``lead + (n_in,)`` (``lead`` names like ``("T", "B")``), real."""
    namespace(name, [x], xp)
    want = f"({', '.join(lead)}, {n_in})"
    if x.ndim != len(lead) + 1 or x.shape[-1] != n_in or any(d < 1 for d in x.shape[:-1]):
        raise ValueError(f"{name} must have shape {want} with {', '.join(lead)} >= 1, "
                         f"not {tuple(x.shape)}")
    if xp.isdtype(x.dtype, "bool") or xp.isdtype(x.dtype, "complex floating"):
        raise TypeError(f"{name} must be real-valued, not {x.dtype}")
    return xp.astype(x, dtype)


def _targets(name, y, shape, n_out, xp):
    """Integer class indices of ``shape`` in [0, n_out), in ``xp``'s index type."""
    namespace(name, [y], xp)
    if tuple(y.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, not {tuple(y.shape)}")
    if not xp.isdtype(y.dtype, "integral"):
        raise TypeError(f"{name} must be an integer array, not {y.dtype}")
    if bool(xp.any((y < 0) | (y >= n_out))):
        raise ValueError(f"{name} must hold class indices in [0, {n_out}), found values outside")
    return xp.astype(y, index_dtype(xp))  # a narrow type such as uint8 would not index


def _mask(name, mask, shape, xp, dtype, device):
    """0/1 of ``shape`` in ``dtype``; all ones when ``mask`` is None."""
    if mask is None:
        return xp.ones(shape, dtype=dtype, device=device)
    if isinstance(mask, dict):
        raise TypeError(f"{name} must be an array, not a dict (signs are passed as signs=)")
    namespace(name, [mask], xp)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, not {tuple(mask.shape)}")
    mask = xp.astype(mask, dtype)
    if bool(xp.any((mask != 0) & (mask != 1))):
        raise ValueError(f"{name} must hold only 0 and 1")
    return mask


def _real_targets(name, y, shape, xp, dtype):
    """Real targets of ``shape`` (the ``mse`` readout's), finite, in ``dtype``."""
    namespace(name, [y], xp)
    if tuple(y.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} (real targets of the mse loss), "
                         f"not {tuple(y.shape)}")
    y = xp.astype(y, dtype)
    if not bool(xp.all(xp.isfinite(y))):
        raise ValueError(f"{name} must be finite")
    return y


def _either_targets(name, y, shape, n_out, xp, dtype, loss):
    if loss == "mse":
        return _real_targets(name, y, (*shape, n_out), xp, dtype)
    return _targets(name, y, shape, n_out, xp)


def sequence(cell_, values, xs, ys=None, mask=None, loss="softmax"):
    """Check ``xs`` (T, B, n_in), ``ys`` (T, B), ``mask`` (T, B) against ``cell_``.

    Returns ``(xp, xs, ys, mask)`` in the params' dtype (``ys`` in the index type, or (T, B, n_out)
    real for ``loss="mse"``; ``ys`` and ``mask`` None when ``ys`` is None).
    """
    xp = params(cell_, values)
    xs = _inputs("xs", xs, ("T", "B"), cell_.n_in, xp, values["V"].dtype)
    if ys is None:
        return xp, xs, None, None
    shape = (xs.shape[0], xs.shape[1])
    ys = _either_targets("ys", ys, shape, cell_.n_out, xp, values["V"].dtype, loss)
    return xp, xs, ys, _mask("mask", mask, shape, xp, values["V"].dtype, get_device(xs))


def step(cell_, values, x, y=None, mask=None, loss="softmax"):
    """Check one step's ``x`` (B, n_in), ``y`` (B,), ``mask`` (B,) against ``cell_``.

    Returns ``(xp, x, y, mask)`` like ``sequence``.
    """
    xp = params(cell_, values)
    x = _inputs("x", x, ("B",), cell_.n_in, xp, values["V"].dtype)
    if y is None:
        if mask is not None:
            raise ValueError("mask needs targets y")
        return xp, x, None, None
    shape = (x.shape[0],)
    y = _either_targets("y", y, shape, cell_.n_out, xp, values["V"].dtype, loss)
    return xp, x, y, _mask("mask", mask, shape, xp, values["V"].dtype, get_device(x))


def signs(values, shapes, xp, dtype):
    """``values`` as ``{name: ±1 array}`` with exactly ``shapes`` (a dict name -> shape).

    Arrays of another library, another shape or with an entry other than ±1 are refused
    (``signs`` named in the error); they are returned in ``dtype``. One host read.
    """
    if not shapes and values is None:
        return {}
    if not isinstance(values, dict) or set(values) != set(shapes):
        got = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise ValueError(f"signs must be a dict with keys {sorted(shapes)}, not {got}")
    out = {}
    for key, shape in shapes.items():
        namespace(f"signs[{key!r}]", [values[key]], xp)
        if tuple(values[key].shape) != tuple(shape):
            raise ValueError(f"signs[{key!r}] must have shape {tuple(shape)}, "
                             f"not {tuple(values[key].shape)}")
        if xp.isdtype(values[key].dtype, "complex floating"):
            raise TypeError(f"signs[{key!r}] must be real, not {values[key].dtype}")
        out[key] = xp.astype(values[key], dtype)
    bad = [xp.any((s != 1) & (s != -1)) for s in out.values()]
    if bad and bool(xp.any(xp.stack(bad))):
        raise ValueError("signs must hold only -1 and +1")
    return out


def state(online, value, batch, xp, dtype, state_type, leaves):
    """``value`` must be a ``state_type`` of ``online``'s method, cell, batch, library, dtype.

    ``leaves`` lists the arrays of a method's state (``methods.leaves``).
    """
    if not isinstance(value, state_type):
        raise TypeError(f"state must be an {state_type.__name__} (Online.init), "
                        f"not {type(value).__name__}")
    arrays = leaves(value.est)
    namespace("state", [value.s, *arrays], xp)
    n = online.cell.n_state
    if tuple(value.s.shape) != (batch, n):
        raise ValueError(f"state.s must have shape {(batch, n)}, not {tuple(value.s.shape)}")
    template = online.module.init(online.cell, 0, online.rank, xp=xp, dtype=dtype)  # no data
    want = [tuple(a.shape[1:]) for a in leaves(template)]
    if (type(value.est) is not type(template) or [tuple(a.shape[1:]) for a in arrays] != want
            or any(a.shape[0] != batch for a in arrays)):
        raise ValueError(f"state.est is not a {online.method} state of this cell, rank and "
                         "batch")
    if any(a.dtype != dtype for a in [value.s, *arrays]):
        raise TypeError(f"state must have the dtype of params, {dtype}")
