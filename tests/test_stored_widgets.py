"""What a stored notebook shows of its demos: their last state, which must be a valid one.

nbclient stores each widget's final state in the notebook's metadata; JupyterLab shows it
until the kernel runs, and the HTML course (tools/build_course.py) turns it into a still
picture. A demo left on an invalid combination would store its error sentence over the
panels of the last valid state, which no longer match the controls.
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# How Demo._show_problem marks its sentence (course_utils/widgets/base.py).
PROBLEM_MARK = "color:#b00"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_demo_is_stored_showing_an_error_sentence(path):
    nb = json.loads(path.read_text())
    state = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    sentences = [model["state"].get("value", "") for model in state.values()
                 if model.get("model_name") == "HTMLModel" and PROBLEM_MARK in model["state"].get("value", "")]
    assert not sentences, (f"{path.name}: a demo is stored on an invalid combination; set its controls back "
                           f"to a valid one after showing the sentence: {sentences}")
