"""Input validation shared by the course modules.

Every check raises ``ValueError`` whose message names the parameter and the allowed
values, because the first reader of that message is a student in the middle of a cell.
"""
from __future__ import annotations

import math
import numbers

import numpy as np


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, or raise naming ``name`` and the allowed range."""
    allowed = _range_text(minimum, maximum)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        # 2.0 is refused too: a float factor usually means a student expected
        # fractional upsampling, which the integer methods here do not do.
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {allowed}, got {value}")
    return value


def check_hw(name: str, value, minimum: int | None = None,
             maximum: int | None = None) -> tuple[int, int]:
    """``value`` (an int, or a ``(height, width)`` pair of ints, PyTorch style) as ``(h, w)``.

    The one parser of sizes, crops, kernel sizes, strides...: each number must lie in
    ``[minimum, maximum]``; anything else is a ValueError naming ``name``.
    """
    if isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        if len(value) == 2 and all(_is_int(v) for v in value):
            h, w = int(value[0]), int(value[1])
            if _inside(h, minimum, maximum) and _inside(w, minimum, maximum):
                return h, w
    elif _is_int(value) and _inside(int(value), minimum, maximum):
        return int(value), int(value)
    allowed = " ".join(("an integer", _range_text(minimum, maximum))).rstrip()
    raise ValueError(f"{name} must be {allowed} or a pair (height, width) of them, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _inside(value: int, minimum, maximum) -> bool:
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def check_choice(name: str, value, allowed) -> str:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")
    return value


def as_array(name: str, x, ndims=(2,)) -> np.ndarray:
    """``x`` (NumPy array, torch tensor or nested list) as a float NumPy array.

    ``ndims`` lists the accepted numbers of dimensions.
    """
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim not in ndims:
        shapes = " or ".join(_SHAPES[n] for n in ndims)
        raise ValueError(f"{name} must be a {shapes} array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False) if arr.dtype.kind in "biu" else arr


_SHAPES = {1: "1-D (N,)", 2: "2-D (H, W)", 3: "3-D (H, W, C)", 4: "4-D (N, C, H, W)"}


def _range_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum}, {maximum}]"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
