"""Notebooks 02 and 03: Q1 asks a case the notebook does not print, and the question's
text, the expected answer (computed in course_utils/selfcheck) and PyTorch agree."""
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from course_utils.selfcheck import expected, nb02, nb03

ROOT = Path(__file__).resolve().parents[1]


def _cells(name):
    return json.loads((ROOT / "notebooks" / name).read_text())["cells"]


def _before_self_test(cells):
    """The sources and printed outputs of the cells before the self-test's questions."""
    end = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "Self-test" in "".join(c["source"]))
    texts = []
    for cell in cells[:end]:
        texts.append("".join(cell["source"]))
        texts += ["".join(o.get("text", "")) for o in cell.get("outputs", [])]
    return "\n".join(texts), "".join(cells[end]["source"])


def test_02_q1_is_pytorchs_switches_for_the_asked_input():
    _, idx = F.max_pool2d(torch.tensor(nb02.Q1_INPUT)[None, None], 2, return_indices=True)
    assert expected("02.Q1") == tuple(idx.flatten().tolist()) == (5, 3)
    before, questions = _before_self_test(_cells("02_unpooling.ipynb"))
    literal = str(nb02.Q1_INPUT.astype(int).tolist())
    assert literal in questions, f"the question must show the input the answer is computed for: {literal}"
    assert literal not in before, "02.Q1 must ask about an input the notebook has not already pooled"


def test_03_q1_is_pytorchs_output_size_for_the_asked_layer():
    n, layer = nb03.Q1_INPUT_SIZE, nb03.Q1_LAYER
    out = F.conv_transpose2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, layer["kernel_size"], layer["kernel_size"]),
                             stride=layer["stride"], padding=layer["padding"])
    assert expected("03.Q1") == out.shape[-1]
    before, questions = _before_self_test(_cells("03_transposed_convolution.ipynb"))
    asked = "ConvTranspose2d(" + ", ".join(f"{k}={v}" for k, v in layer.items()) + ")"
    assert asked in questions and f"{n}x{n}" in questions, f"the question must ask about {asked} on {n}x{n}"
    # The notebook never prints this layer's size for this input (section 4 prints others).
    assert f"conv_transpose_out({n}, {layer['kernel_size']}, {layer['stride']}, {layer['padding']}" not in before
