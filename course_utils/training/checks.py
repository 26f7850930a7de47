"""What the training loop checks before it trusts a step: the model's output, the labels'
range and the loss's shape (:class:`CheckedLoss`), and whose error a failing first step of a
compiled model is (:func:`is_compiler_error`)."""
from __future__ import annotations

import traceback

import torch

from ..labels import check_label_range
from .batches import check_logits

__all__ = ["CheckedLoss", "is_compiler_error"]

# Older torch releases name only the CUDA out-of-memory error; recent ones have torch.OutOfMemoryError.
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class CheckedLoss:
    """The criterion, after checks of the model's output and the labels that turn an obscure
    failure (on CUDA a device-side assert that kills the session) into a sentence. Checking
    the labels' range costs a wait for the device, so on a GPU only the first steps are checked."""

    def __init__(self, criterion, trainer, every_step: bool, first_steps: int = 10):
        self.criterion, self.trainer = criterion, trainer
        self.every_step, self.remaining = every_step, first_steps

    def __call__(self, output, labels):
        check = self.every_step or self.remaining > 0
        if check:
            self.remaining -= 1
            self._check_output(output, labels)
        loss = self.criterion(output, labels)
        if check and (not isinstance(loss, torch.Tensor) or loss.ndim != 0):
            raise ValueError(f"loss must return a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(getattr(loss, 'shape', ()))}")
        return loss

    def _check_output(self, output, labels) -> None:
        if not isinstance(output, dict) or not isinstance(output.get("out"), torch.Tensor):
            raise ValueError("in training mode the model must return a dict {'out': logits, ...} (the course's "
                             f"output contract, see course_utils.models), got {type(output).__name__}")
        trainer = self.trainer
        if trainer.num_classes is None:
            trainer.num_classes = output["out"].shape[1]
        check_logits(output["out"], labels, trainer.num_classes)
        check_label_range("labels", labels, trainer.num_classes, trainer.config.ignore_index)


def is_compiler_error(err: BaseException) -> bool:
    """Whether the first call of a compiled model failed in the compiler (dynamo, inductor, or
    the code inductor generated) rather than in the model or the device (e.g. out of memory)."""
    if isinstance(err, (ValueError, _OUT_OF_MEMORY)):
        return False
    if type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
        return True
    # Inductor's generated kernels live in its cache folder (torchinductor_USER) and check
    # their inputs' strides with plain asserts.
    frames = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(err.__traceback__)]
    return isinstance(err, AssertionError) and any("torchinductor" in f for f in frames)
