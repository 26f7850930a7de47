"""Self-test answers checked in the notebook: right, or not yet with a hint.

Pattern used at the end of every notebook: a markdown question, a code cell tagged
``solution`` where the student writes ``answer = ...``, then a checked cell calling
``check("01.Q1", answer_q1)``, whose printed verdict nbval compares.

The expected answer is not in the notebook: the student would read it under the
question. It is computed by the library, in ``course_utils/selfcheck/nbNN.py`` (one
module per notebook), where each question is registered with :func:`question`. The
expected values are still computed (by the course's own functions), never typed in.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Callable

import numpy as np

__all__ = ["check", "question", "expected", "questions"]

_QID = re.compile(r"^(\d\d)\.Q\d+$")


@dataclasses.dataclass(frozen=True)
class Question:
    qid: str
    label: str
    compute: Callable[[], object]
    hint: str = ""
    atol: float = 1e-6


_REGISTRY: dict[str, Question] = {}


def question(qid: str, label: str, hint: str = "", atol: float = 1e-6):
    """Register the function computing the expected answer of question ``qid`` ("NN.Qk")."""
    if not _QID.match(qid):
        raise ValueError(f"qid must look like '01.Q1' (notebook number, question number); got {qid!r}")

    def decorate(compute):
        _REGISTRY[qid] = Question(qid, label, compute, hint, atol)
        return compute
    return decorate


def _lookup(qid: str) -> Question:
    match = _QID.match(qid) if isinstance(qid, str) else None
    if match is None:
        raise ValueError(f"qid must look like '01.Q1' (notebook number, question number); got {qid!r}")
    if qid not in _REGISTRY:
        try:
            importlib.import_module(f"{__name__}.nb{match.group(1)}")
        except ModuleNotFoundError:
            pass
    if qid not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ValueError(f"no self-test question {qid!r}; known: {known}")
    return _REGISTRY[qid]


def expected(qid: str):
    """The expected answer of ``qid`` (for tests and instructors; students need not look)."""
    return _lookup(qid).compute()


def questions(notebook: str) -> list[str]:
    """The registered question ids of notebook ``notebook`` ("01")."""
    try:
        importlib.import_module(f"{__name__}.nb{notebook}")
    except ModuleNotFoundError:
        return []
    return sorted(q for q in _REGISTRY if q.startswith(f"{notebook}."))


def check(qid: str, answer, expected_value=None, hint: str = "", atol: float | None = None) -> bool:
    """Print whether ``answer`` is right for question ``qid``.

    ``check("01.Q1", answer_q1)`` looks the expected answer up in the package. The older
    form ``check(label, answer, expected, hint=...)`` still works for questions written
    outside the course (e.g. an instructor's own), where the expected value is given.
    """
    if expected_value is None and isinstance(qid, str) and _QID.match(qid):
        q = _lookup(qid)
        label, value = f"{q.qid} {q.label}", q.compute()
        hint, atol = hint or q.hint, q.atol if atol is None else atol
    else:
        label, value = qid, expected_value
        atol = 1e-6 if atol is None else atol
    ok = _matches(answer, value, atol)
    if ok:
        print(f"[right] {label}")
    else:
        print(f"[not yet] {label}: got {answer!r}." + (f" Hint: {hint}" if hint else ""))
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
