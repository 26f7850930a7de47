"""Expected answers of notebook 08's self-test (evaluation), computed by the course's functions."""
from __future__ import annotations

import json

import numpy as np

from .. import metrics
from ..paths import DATA_DIR
from . import question


def lecture_table1() -> dict:
    """The lecture's Table 1 (``data/lecture_table1.json``)."""
    return json.loads((DATA_DIR / "lecture_table1.json").read_text())


@question("08.Q1", "no bold font when the CI includes zero",
          hint="does the interval contain 0? then another test set could reverse the ranking")
def bold_allowed():
    # A leads B by 0.8 points, 95% CI [-0.2, +1.9] points.
    return metrics.BootstrapResult(0.008, -0.002, 0.019, 0.95, 1000).excludes_zero


@question("08.Q2", "boundary F = harmonic mean of precision and recall",
          hint="precision = 80 / 100, recall = 90 / 120, F = 2PR / (P + R)")
def boundary_f():
    return metrics.f1_from_counts([80, 100, 90, 120])


@question("08.Q3", "the course's crop at factor f keeps 1/f of each side",
          hint="256 x 512 pixels of 1024 x 2048")
def crop_fraction():
    top, bottom, left, right = metrics.crop_box((1024, 2048), (511.5, 1023.5), 4)
    return (bottom - top) * (right - left) / (1024 * 2048)


@question("08.Q4", "columns of Table 1 whose leader is less than 1 point ahead of the runner-up",
          hint="in each of the 19 class columns, the largest number minus the second largest")
def narrow_leads():
    table = lecture_table1()
    iou = np.sort(np.array([m["iou"] for m in table["methods"]]), axis=0)
    return int((iou[-1] - iou[-2] < 1.0 - 1e-9).sum())
