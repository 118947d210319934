"""The memory a training run needs, known before it starts: a run that cannot fit is refused up
front (``Failure``, exit 2) with the memory it would need, instead of a ``MemoryError`` or the
kernel's out-of-memory killer once the arrays are touched.

The estimate is a lower bound: it counts only the arrays a step certainly holds at once, so a
run is refused only when it cannot fit, never a run that could. With n hidden units, B
streams, parameter count |θ| (every block and the readout), depth L, block shapes
(m_l, k_l) (``cell.shapes()``) and one element of the run's dtype each:

    parameters    4 |θ|: the parameters, their gradient and Adam's two moments
    method state  2 × the method's state (its ``init``, e.g. rtrl B·n·Σ m_l k_l, uoro
                  B·(n + Σ m_l k_l), kf / kf-avg / ok B·r·Σ (k_l + n m_l)): a step makes the
                  new estimate while the old one is held
    Jacobians     B·n·(n + Σ m_l): H_t and every M_l of ``cell.influence_pieces`` (not uoro,
                  which takes products through the step instead)
    bptt window   K·B·(n + Σ k_l): every state and every block's input a_l of a window, kept
                  for the backward pass (``--every-step`` too: it runs K steps every step)
    every-step window  B·(n + (K − 1)(n_in + 1)): the state and the inputs and resets of the
                  last K − 1 steps, kept between steps
    inputs        K·B·(n_in + 3) plus the step's signs: one step's packed inputs (K = 1 for
                  the online methods and ``--every-step``)
    --align       2·B·n·Σ m_l k_l: exact RTRL's influence, old and new, beside the method,
                  and the Jacobians above (its step forms them)

The shapes of the method state come from the method's own ``init``, run on a namespace that
records shapes instead of allocating. The memory available is the host's (MemAvailable plus
free swap, from /proc/meminfo), or a CUDA device's total memory for torch and cupy; where it is
not known (Apple's MPS, a system without /proc/meminfo or sysconf) nothing is refused.
"""

import math
import os

from ..methods import INFLUENCE, leaves
from .cli import make_cell
from .safety import Failure

UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


class _Blank:
    """An array that was never allocated: only its shape."""

    def __init__(self, shape):
        self.shape = tuple(shape)


class _Shapes:
    """A stand-in array namespace: ``zeros`` returns a ``_Blank`` of the shape asked for, so a
    method's ``init`` on it gives the shapes of the method's state at no cost."""

    __name__ = "shapes only"
    linalg = None  # ok asks for the linalg extension before it allocates

    @staticmethod
    def zeros(shape, *, dtype=None, device=None):
        return _Blank(shape)


def elements(cell, algo, batch, rank=1, truncation=1, *, every_step=False, align=False):
    """``{what: elements}`` a training step of ``algo`` on ``cell`` certainly holds at once
    (the table of the module docstring); ``rank`` for ok and kf-avg, ``truncation`` and
    ``every_step`` for bptt, ``align`` for the exact RTRL shadow of ``--align``."""
    shapes = cell.shapes()
    n, B = cell.n_state, batch
    blocks = [shapes[name] for name in cell.blocks]  # (m_l, k_l)
    terms = {"parameters, gradient and Adam moments": 4 * sum(map(math.prod, shapes.values()))}
    if algo == "bptt":
        K = truncation
        terms["bptt window"] = K * B * (n + sum(k for _, k in blocks))
        terms["inputs"] = (1 if every_step else K) * B * (cell.n_in + 3)
        if every_step:
            terms["every-step window"] = B * (n + (K - 1) * (cell.n_in + 1))
    else:
        module = INFLUENCE[algo]
        state = module.init(cell, B, rank, xp=_Shapes, dtype=None)
        terms[f"{algo} state, old and new"] = 2 * sum(math.prod(a.shape) for a in leaves(state))
        if algo != "uoro":
            terms["Jacobians"] = _jacobians(n, B, blocks)
        signs = module.sign_shapes(cell, B, rank)
        terms["inputs"] = B * (cell.n_in + 3) + sum(map(math.prod, signs.values()))
    if align:
        terms[SHADOW] = 2 * B * n * sum(m * k for m, k in blocks)
        terms.setdefault("Jacobians", _jacobians(n, B, blocks))
    return terms


#: the term of the exact RTRL shadow of ``--align``
SHADOW = "exact RTRL shadow of --align, old and new"


def _jacobians(n, B, blocks):
    """H_t (B, n, n) and every M_l (B, n, m_l)."""
    return B * n * (n + sum(m for m, _ in blocks))


def available(device):
    """``(bytes, where)``: the memory the run's arrays may use on ``device``, or None if not
    known. A CUDA device (torch or cupy): its total memory; MPS: unknown; else the host's."""
    try:
        kind = getattr(device, "type", None)
        if kind == "cuda":
            import torch

            total = torch.cuda.get_device_properties(device).total_memory
            return total, f"on {device}"
        if kind == "mps":
            return None
        if hasattr(device, "mem_info"):  # a cupy device: (free, total)
            return device.mem_info[1], f"on GPU {device.id}"
    except Exception:  # a device that cannot say: nothing is refused
        return None
    return _host_available()


def _host_available():
    """The host's available memory plus free swap (/proc/meminfo), else sysconf's available
    pages, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        kib = int(fields["MemAvailable"].split()[0]) + int(fields["SwapFree"].split()[0])
        return kib * 1024, "available (memory and swap)"
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return (pages, "available") if pages > 0 else None


def size_text(count):
    """``count`` bytes in binary units: ``1.2 TiB``."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{count} bytes" if unit == 0 else f"{value:.3g} {UNITS[unit]}"


def sizes_of(args):
    """The flags that set a run's size, as typed: ``--hidden 20000 --batch 16 --algo ok ...``."""
    flags = [("--hidden", args.hidden)]
    if args.cell == "rhn":
        flags.append(("--depth", args.depth))
    flags += [("--batch", args.batch), ("--algo", args.algo)]
    if args.rank is not None:
        flags.append(("--rank", args.rank))
    if args.truncation is not None:
        flags.append(("--truncation", args.truncation))
    flags.append(("--dtype", args.dtype))
    text = " ".join(f"{flag} {value}" for flag, value in flags)
    if getattr(args, "every_step", False):
        text += " --every-step"
    if getattr(args, "align", None):
        text += f" --align {args.align}"
    return text


def refuse_oversized(args, task, device):
    """A ``Failure`` (exit 2) if the run of the parsed training flags ``args`` on ``task``
    needs more memory than ``device`` has available (the module docstring); else nothing."""
    cell = make_cell(args, task.n_in, task.n_out)  # sizes only: nothing is allocated
    itemsize = 4 if args.dtype == "float32" else 8
    terms = elements(cell, args.algo, task.batch, args.rank or 1, args.truncation or 1,
                     every_step=bool(getattr(args, "every_step", False)),
                     align=bool(getattr(args, "align", None)))
    need = {what: count * itemsize for what, count in terms.items()}
    total, room = sum(need.values()), available(device)
    if room is None or total <= room[0]:
        return
    largest = max(need, key=need.get)
    advice = "choose smaller sizes" + (" or leave out --align" if SHADOW in need else "")
    raise Failure(f"{sizes_of(args)}: this run needs at least {size_text(total)} ({largest} "
                  f"{size_text(need[largest])}), more than the {size_text(room[0])} {room[1]}; "
                  f"{advice}")
