"""Self-test answers checked in the notebook: right, or not yet with a hint.

Pattern used at the end of every notebook: a markdown question, a code cell tagged
``solution`` where the student writes ``answer = ...``, then a checked cell calling
:func:`check`, whose printed verdict nbval compares.
"""
from __future__ import annotations

import numpy as np


def check(question: str, answer, expected, hint: str = "", atol: float = 1e-6) -> bool:
    """Print whether ``answer`` matches ``expected`` (numbers within ``atol``, arrays elementwise)."""
    ok = _matches(answer, expected, atol)
    if ok:
        print(f"[right] {question}")
    else:
        print(f"[not yet] {question}: got {answer!r}." + (f" Hint: {hint}" if hint else ""))
    return ok


def _matches(answer, expected, atol) -> bool:
    if answer is None or answer is Ellipsis:
        return False
    if isinstance(expected, (bool, str)) or isinstance(answer, (bool, str)):
        return type(answer) is type(expected) and answer == expected
    try:
        a = np.asarray(answer, dtype=float)
        e = np.asarray(expected, dtype=float)
    except (TypeError, ValueError):
        return answer == expected
    return a.shape == e.shape and bool(np.allclose(a, e, atol=atol, rtol=0))
