"""Expected answers of notebook 06's self-test (06_training_and_evaluation), computed with
the course's ConfusionMatrix from pixel arrays built to the questions' counts."""
from __future__ import annotations

import math

import torch

from . import question


def _pixels(counts):
    """(pred, target) 1-row label maps with counts[(true, predicted)] pixels of each pair."""
    pairs = [(t, p) for (t, p), n in counts.items() for _ in range(n)]
    target = torch.tensor([[t for t, _ in pairs]])
    pred = torch.tensor([[p for _, p in pairs]])
    return pred, target


@question("06.Q1", "IoU = overlap / union", hint="union = predicted + true - overlap")
def q1() -> float:
    from ..metrics import ConfusionMatrix
    # 30 pixels both, 10 only predicted (40 predicted), 20 only true (50 true), 40 neither.
    pred, target = _pixels({(1, 1): 30, (0, 1): 10, (1, 0): 20, (0, 0): 40})
    return float(ConfusionMatrix(2).update(pred, target).iou()[1])


@question("06.Q2", "mIoU from a confusion matrix",
          hint="IoU_c = M[c, c] / (row sum + column sum - M[c, c]), then average")
def q2() -> float:
    from ..metrics import ConfusionMatrix
    pred, target = _pixels({(0, 0): 50, (0, 1): 10, (1, 0): 5, (1, 1): 35})
    return float(ConfusionMatrix(2).update(pred, target).miou())


@question("06.Q3", "the dataset-level mIoU depends on the batch size",
          hint="the matrix counts pixels; how they were grouped into batches does not enter")
def q3() -> bool:
    from ..metrics import ConfusionMatrix
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (32, 8, 8), generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target,
                       torch.randint(0, 4, target.shape, generator=g))
    mious = []
    for batch in (1, 16):
        cm = ConfusionMatrix(4)
        for i in range(0, len(target), batch):
            cm.update(pred[i:i + batch], target[i:i + batch])
        mious.append(cm.miou())
    return not math.isclose(mious[0], mious[1], rel_tol=0, abs_tol=1e-12)
