"""The one evaluation path: notebooks, ``fit``'s validation, the command line, the zoo and
the prediction browser all run a model through :func:`forward_logits`.

:func:`evaluate` fills a dataset-level :class:`~course_utils.metrics.ConfusionMatrix` and
any extra *meters*. A meter is any object with

* ``update(pred, labels)``: predicted and true labels of one batch, ``(N, H, W)`` int64
  tensors on the evaluation device (the argmax is taken in fp32 whatever the precision);
* ``all_reduce()``: sum its counts over the processes of ``torch.distributed`` in place
  (a no-op without it); every process calls it, also one that saw no batch;
* ``result()``: the number(s) it measured.

The confusion matrix itself follows the first two; :class:`BoundaryMeter` (the boundary
F-score's counts) is the one meter the library brings.

Evaluation runs in fp32 unless asked otherwise (``amp=True``): in bf16 two classes' logits
can round to the same value and the argmax then picks another class than fp32 would.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._checks import check_choice
from ..labels import IGNORE_INDEX
from ..metrics import ConfusionMatrix, predicted_labels
from ..precision import Precision, choose_precision
from .batches import batches, check_batch, check_logits, loader_len, split_batch
from .distributed import all_reduce_sum, is_main_process, unwrap_ddp

__all__ = ["BoundaryMeter", "evaluate", "predict", "forward_logits"]


class BoundaryMeter:
    """Class-agnostic boundary match counts ``[matched_pred, n_pred, matched_true, n_true]``
    summed over images (:func:`course_utils.metrics.boundary_counts`); ``result()`` is the
    boundary F-score at ``tolerance_px`` (:func:`course_utils.metrics.f1_from_counts`).

    ``rule`` and ``average`` are :func:`course_utils.metrics.boundary_f1`'s: with
    ``average="image"`` the meter also keeps the sum of per-image F scores and the number of
    images, and ``result()`` is their mean (NaN before any image), as DAVIS and Gated-SCNN
    report; ``counts`` stay the summed counts either way."""

    def __init__(self, tolerance_px: float = 2.0, ignore_index: int = IGNORE_INDEX, rule: str = "course",
                 average: str = "dataset"):
        from ..metrics.boundaries import AVERAGES, RULES

        self.rule = check_choice("rule", rule, RULES)
        self.average = check_choice("average", average, AVERAGES)
        self.tolerance_px, self.ignore_index = float(tolerance_px), ignore_index
        self.counts = np.zeros(4, np.int64)
        self.f_sum, self.images = 0.0, 0

    def update(self, pred, labels) -> None:
        from ..metrics import boundary_counts, f1_from_counts

        per_image = boundary_counts(pred.cpu(), labels.cpu(), self.tolerance_px,
                                    ignore_index=self.ignore_index, rule=self.rule)
        self.counts += per_image.sum(0)
        self.f_sum += float(np.sum(f1_from_counts(per_image)))
        self.images += len(per_image)

    def all_reduce(self) -> "BoundaryMeter":
        self.counts = all_reduce_sum(torch.from_numpy(self.counts)).numpy()
        # The per-image sums travel in float64: a count of images is exact there.
        f_sum, images = all_reduce_sum(torch.tensor([self.f_sum, float(self.images)], dtype=torch.float64)).tolist()
        self.f_sum, self.images = f_sum, int(images)
        return self

    def result(self) -> float:
        from ..metrics import f1_from_counts

        if self.average == "image":
            return self.f_sum / self.images if self.images else float("nan")
        return float(f1_from_counts(self.counts))


def forward_logits(model, images, device, precision: Precision, channels_last: bool = False) -> torch.Tensor:
    """fp32 logits of ``model`` (in eval mode) for ``images``, moved to ``device``, under
    ``precision``'s autocast."""
    images = images.to(device, non_blocking=device.type == "cuda")
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with precision.autocast():
        logits = model(images)
    if not isinstance(logits, torch.Tensor):
        raise ValueError("in eval mode the model must return its logits as a tensor (the course's output "
                         f"contract, see course_utils.models), got {type(logits).__name__}")
    return logits.float()


def _model_device(model) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, device=None, *, ignore_index: int = IGNORE_INDEX,
             amp: bool | None = False, progress: bool = False, reduce: bool = True,
             channels_last: bool = False, meters=(), precision: Precision | None = None) -> ConfusionMatrix:
    """The dataset-level confusion matrix of ``model`` on ``loader`` (model in eval mode).

    ``device`` defaults to the device the model is on; given, the model is moved there.
    ``amp`` goes to :func:`~course_utils.precision.choose_precision` (or pass the
    ``precision`` itself); the default is fp32. ``meters`` (see the module docstring) are updated with every
    batch and, with ``reduce``, summed over processes like the matrix. The model's
    training/eval mode is restored afterwards.

    Under ``torch.distributed`` each rank counts its share and (``reduce=True``) the
    counts are summed, so every rank gets the dataset-level matrix; a rank with no batch
    still takes part in the sums. A ``DistributedDataParallel`` model is evaluated through
    its inner module: DDP's forward would broadcast buffers, a collective that ranks with
    different numbers of batches cannot all join. (A ``DistributedSampler`` pads the data
    set by repeating samples; :class:`~course_utils.training.ShardSampler` does not.)
    """
    model = unwrap_ddp(model)
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    precision = precision or choose_precision(device, amp)
    cm = ConfusionMatrix(num_classes, ignore_index)
    meters = list(meters)
    was_training = model.training
    model.eval()
    bar = _bar(progress, loader)
    try:
        for batch in batches(loader):
            images, labels = split_batch(batch)
            check_batch(images, labels)
            logits = forward_logits(model, images, device, precision, channels_last)
            check_logits(logits, labels)
            pred = predicted_labels(logits)
            labels = labels.to(device, non_blocking=device.type == "cuda")
            cm.update(pred, labels)
            for meter in meters:
                meter.update(pred, labels)
            bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    if reduce:
        cm.all_reduce()
        for meter in meters:
            meter.all_reduce()
    return cm


def _bar(progress, loader):
    from .progress import progress_bar

    return progress_bar(progress and is_main_process(), loader_len(loader, required=False), 0,
                        desc="evaluate", unit="batch")


@torch.no_grad()
def predict(model, images, batch_size: int = 4, device=None, amp: bool | None = False) -> np.ndarray:
    """Predicted labels ``(N, H, W)`` (numpy int64) of ``model`` for images ``(N, 3, H, W)`` in [0, 1].

    Runs in eval mode in batches of ``batch_size`` on ``device`` (default: the model's), in
    fp32 unless ``amp`` asks the precision policy, and leaves the model in the mode it was in.
    """
    model = unwrap_ddp(model)
    device = torch.device(device) if device is not None else _model_device(model)
    precision = choose_precision(device, amp)
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start:start + batch_size], dtype=torch.float32)
            out.append(predicted_labels(forward_logits(model, batch, device, precision)).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.int64)
