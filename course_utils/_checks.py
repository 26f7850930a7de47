"""Input validation shared by the course modules.

Every check raises ``ValueError`` whose message names the parameter and the allowed
values, because the first reader of that message is a student in the middle of a cell.
"""
from __future__ import annotations

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
