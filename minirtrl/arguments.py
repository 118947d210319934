"""Argument checks of the public entry points: every error names the argument.

``sequence_gradient`` and ``exact_influence`` check a whole sequence (``check_sequence``),
``Online.step`` one step of it (``check_step``, ``check_signs``); both find the array
namespace from the parameters and refuse arrays of another library. Inputs are returned
in the parameters' dtype, targets as int64 and the mask as 0/1 in the parameters' dtype.
The only host reads are the range checks of targets, mask and signs (one each).
"""

from ._compat import array_namespace, get_device
from .cells import Cell


def namespace(name, arrays, xp=None):
    """The namespace of ``arrays``; ``TypeError`` naming ``name`` if missing, mixed or not ``xp``."""
    if any(a is None for a in arrays):
        raise TypeError(f"{name} is required (an array), not None")
    try:
        found = array_namespace(*arrays)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    if xp is not None and found is not xp:
        raise TypeError(f"{name} comes from {found.__name__}, but params from {xp.__name__}")
    return found


def check_cell(cell):
    """``cell`` if it has the cell interface (``minirtrl.cells.Cell``), else ``TypeError``."""
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a minirtrl cell such as minirtrl.RHN, "
                        f"not {type(cell).__name__}")
    return cell


def check_params(cell, params):
    """Check keys, shapes and dtypes of ``params``; return its namespace."""
    check_cell(cell)
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, not {type(params).__name__}")
    expected = cell.shapes()
    if set(params) != set(expected):
        raise ValueError(f"params must have keys {sorted(expected)}, not {sorted(params)}")
    xp = namespace("params", list(params.values()))
    dtype = params["V"].dtype
    for key, shape in expected.items():
        if tuple(params[key].shape) != shape:
            raise ValueError(f"params[{key!r}] must have shape {shape}, "
                             f"not {tuple(params[key].shape)}")
        if params[key].dtype != dtype or not xp.isdtype(dtype, "real floating"):
            raise TypeError(f"params[{key!r}] must share one real floating dtype with params['V']")
    return xp


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
    """Integer class indices of ``shape`` in [0, n_out), as int64."""
    namespace(name, [y], xp)
    if tuple(y.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, not {tuple(y.shape)}")
    if not xp.isdtype(y.dtype, "integral"):
        raise TypeError(f"{name} must be an integer array, not {y.dtype}")
    if bool(xp.any((y < 0) | (y >= n_out))):
        raise ValueError(f"{name} must hold class indices in [0, {n_out}), found values outside")
    return xp.astype(y, xp.int64)  # a narrow integer type could not hold every class index


def _mask(name, mask, shape, xp, dtype, device):
    """0/1 of ``shape`` in ``dtype``; all ones when ``mask`` is None."""
    if mask is None:
        return xp.ones(shape, dtype=dtype, device=device)
    namespace(name, [mask], xp)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, not {tuple(mask.shape)}")
    mask = xp.astype(mask, dtype)
    if bool(xp.any((mask != 0) & (mask != 1))):
        raise ValueError(f"{name} must hold only 0 and 1")
    return mask


def check_sequence(cell, params, xs, ys=None, mask=None):
    """Check ``xs`` (T, B, n_in), ``ys`` (T, B), ``mask`` (T, B) against ``cell``.

    Returns ``(xp, xs, ys, mask)`` in the params' dtype (``ys`` int64; ``ys`` and
    ``mask`` None when ``ys`` is None).
    """
    xp = check_params(cell, params)
    xs = _inputs("xs", xs, ("T", "B"), cell.n_in, xp, params["V"].dtype)
    if ys is None:
        return xp, xs, None, None
    shape = (xs.shape[0], xs.shape[1])
    ys = _targets("ys", ys, shape, cell.n_out, xp)
    return xp, xs, ys, _mask("mask", mask, shape, xp, params["V"].dtype, get_device(xs))


def check_step(cell, params, x, y=None, mask=None):
    """Check one step's ``x`` (B, n_in), ``y`` (B,), ``mask`` (B,) against ``cell``.

    Returns ``(xp, x, y, mask)`` like ``check_sequence``.
    """
    xp = check_params(cell, params)
    x = _inputs("x", x, ("B",), cell.n_in, xp, params["V"].dtype)
    if y is None:
        if mask is not None:
            raise ValueError("mask needs targets y")
        return xp, x, None, None
    shape = (x.shape[0],)
    y = _targets("y", y, shape, cell.n_out, xp)
    return xp, x, y, _mask("mask", mask, shape, xp, params["V"].dtype, get_device(x))


def check_signs(signs, shapes, xp, dtype):
    """``signs`` as ``{name: ±1 array}`` with exactly ``shapes`` (a dict name -> shape).

    Arrays of another library, another shape or with an entry other than ±1 are refused
    (``signs`` named in the error); they are returned in ``dtype``. One host read.
    """
    if not shapes and signs is None:
        return {}
    if not isinstance(signs, dict) or set(signs) != set(shapes):
        got = sorted(signs) if isinstance(signs, dict) else type(signs).__name__
        raise ValueError(f"signs must be a dict with keys {sorted(shapes)}, not {got}")
    out = {}
    for key, shape in shapes.items():
        namespace(f"signs[{key!r}]", [signs[key]], xp)
        if tuple(signs[key].shape) != tuple(shape):
            raise ValueError(f"signs[{key!r}] must have shape {tuple(shape)}, "
                             f"not {tuple(signs[key].shape)}")
        if xp.isdtype(signs[key].dtype, "complex floating"):
            raise TypeError(f"signs[{key!r}] must be real, not {signs[key].dtype}")
        out[key] = xp.astype(signs[key], dtype)
    bad = [xp.any((s != 1) & (s != -1)) for s in out.values()]
    if bad and bool(xp.any(xp.stack(bad))):
        raise ValueError("signs must hold only -1 and +1")
    return out
