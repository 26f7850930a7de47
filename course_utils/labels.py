"""Label conventions shared by data, losses, metrics, plotting and widgets.

``IGNORE_INDEX`` marks void pixels (Cityscapes' and Pascal VOC's convention, and the
default of ``nn.CrossEntropyLoss(ignore_index=...)`` in the course): no loss, no metric.
Everything in the package that means "void" uses this name, never the literal.
"""
from __future__ import annotations

import numpy as np

__all__ = ["IGNORE_INDEX", "as_label_array", "as_label_batch", "check_label_range"]

IGNORE_INDEX = 255

_SHAPES = {2: "(H, W)", 3: "(N, H, W)"}


def as_label_array(name: str, x, ndims=(2, 3), num_classes: int | None = None,
                   ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """Label map(s) (NumPy array, torch tensor or nested list) as an integer NumPy array.

    ``ndims`` lists the accepted numbers of dimensions (None: any). With ``num_classes``, every value
    must be a class id in ``[0, num_classes)`` or ``ignore_index``. The dtype is kept
    (no copy for an integer array); a float or bool array is refused, because a
    probability map or a mask passed by mistake would otherwise be read as class ids.
    """
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    if ndims is not None and arr.ndim not in ndims:
        shapes = " or ".join(_SHAPES.get(n, f"{n}-D") for n in ndims)
        raise ValueError(f"{name} must have shape {shapes}, got {arr.shape}")
    if num_classes is not None:
        check_label_range(name, arr, num_classes, ignore_index)
    return arr


def as_label_batch(name: str, x) -> np.ndarray:
    """Integer label maps as an ``(N, H, W)`` int64 array (accepts ``(H, W)``, NumPy, torch or lists).

    Boolean masks are accepted here (class 0 / class 1), unlike :func:`as_label_array`:
    the metrics score binary masks too."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind == "b":
        x = x.astype(np.int64)
    x = as_label_array(name, x, ndims=(2, 3), ignore_index=None)
    return (x[None] if x.ndim == 2 else x).astype(np.int64, copy=False)


def check_label_range(name: str, labels, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> None:
    """Raise ``ValueError`` unless every value of ``labels`` (a NumPy array or a torch tensor on
    any device) is a class id in ``[0, num_classes)`` or ``ignore_index``."""
    if labels.size == 0 if isinstance(labels, np.ndarray) else labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bad.any():
        void = f" or {ignore_index} (ignored)" if ignore_index is not None else ""
        raise ValueError(f"{name} must be in [0, {num_classes - 1}]{void}, found {int(labels[bad][0])}")
