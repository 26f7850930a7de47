"""What a training run is told (:class:`TrainConfig`) and what it measured (:class:`History`)."""
from __future__ import annotations

import dataclasses
import math

from .._checks import check_choice, check_int, check_positive
from ..labels import IGNORE_INDEX

__all__ = ["TrainConfig", "History"]


@dataclasses.dataclass
class TrainConfig:
    """Everything :func:`~course_utils.training.fit` needs besides the model, data, loss and callbacks.

    Plain values only, so a command-line tool can fill it from arguments and store it
    (``dataclasses.asdict``) next to its checkpoints.

    * ``epochs`` and/or ``time_budget_s``: when to stop (whichever comes first).
    * ``optimizer``: ``"adamw"`` or ``"sgd"`` (momentum ``momentum``); ``lr`` defaults to
      1e-3 for AdamW and 1e-2 for SGD; ``weight_decay`` skips biases and norm weights.
    * ``poly_power``: learning rate ``lr * (1 - progress) ** poly_power``, progress being
      the fraction of planned steps (``epochs * len(train_loader)``) or of the time budget.
    * ``amp``: mixed precision as :func:`course_utils.precision.choose_precision` decides:
      ``None`` lets the policy choose (bf16 on CUDA with native bf16, fp16 with a gradient
      scaler on 7.x GPUs, fp32 elsewhere), ``True`` insists (an error where the device
      has no native reduced precision), ``False`` turns it off.
    * ``channels_last``: NHWC memory layout for the model and the images; ``None`` means
      on for CPU and CUDA (faster convolutions there), off for MPS.
    * ``compile``: train a ``torch.compile``-d copy of the model (same parameters).
    * ``deterministic``: use only deterministic algorithms
      (``torch.use_deterministic_algorithms``), so that a resumed run repeats an
      uninterrupted one exactly on CUDA too (some CUDA kernels, e.g. the backward of
      bilinear upsampling, add in a varying order); slower on CUDA, no effect on the CPU's
      results.
    * ``val_every``: validate every that many epochs (and once at the end).
    * ``checkpoint``: path of the resumable checkpoint, written at every epoch end, every
      ``checkpoint_every`` steps, and when training stops; the best validated weights go to
      ``best_checkpoint`` (default: ``NAME.best.pt`` beside it).
    * ``resume``: ``True`` continues from ``checkpoint`` (which must exist), ``"auto"``
      continues if it exists, ``False`` starts afresh (and overwrites it).
    * ``keep``: which weights the model holds when ``fit`` returns: ``"best"`` (best
      validation mIoU, if any validation ran) or ``"last"``.
    * ``log_every``: the loss is read back from the device every that many steps (each
      read waits for the device; between reads the losses stay on it).
    """

    epochs: int | None = None
    time_budget_s: float | None = None
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.9
    poly_power: float = 0.9
    ignore_index: int = IGNORE_INDEX
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    deterministic: bool = False
    val_every: int = 1
    checkpoint: str | None = None
    best_checkpoint: str | None = None
    checkpoint_every: int | None = None
    resume: bool | str = False
    keep: str = "best"
    progress: bool = True
    log_every: int = 10

    def validate(self) -> "TrainConfig":
        if self.epochs is None and self.time_budget_s is None:
            raise ValueError("give epochs (an integer >= 1) or time_budget_s (seconds > 0), or both")
        if self.epochs is not None:
            self.epochs = check_int("epochs", self.epochs, 1)
        if self.time_budget_s is not None:
            check_positive("time_budget_s", self.time_budget_s)
        check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
        if self.lr is not None:
            check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("momentum", self.momentum, allow_zero=True)
        check_positive("poly_power", self.poly_power, allow_zero=True)
        check_int("ignore_index", self.ignore_index)
        check_choice("amp", self.amp, (None, True, False))
        check_choice("channels_last", self.channels_last, (None, True, False))
        check_choice("compile", self.compile, (True, False))
        check_choice("deterministic", self.deterministic, (True, False))
        self.val_every = check_int("val_every", self.val_every, 1)
        if self.checkpoint_every is not None:
            self.checkpoint_every = check_int("checkpoint_every", self.checkpoint_every, 1)
        check_choice("resume", self.resume, (False, True, "auto"))
        if self.resume and not self.checkpoint:
            raise ValueError("resume needs checkpoint=PATH (the file to continue from)")
        check_choice("keep", self.keep, ("best", "last"))
        self.log_every = check_int("log_every", self.log_every, 1)
        for name in ("checkpoint", "best_checkpoint"):
            if getattr(self, name) is not None:
                setattr(self, name, str(getattr(self, name)))  # str, so weights_only can load it
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.optimizer == "adamw" else 1e-2)


@dataclasses.dataclass
class History:
    """What ``fit`` measured. Lists grow by one entry per step / epoch / validation."""

    step_loss: list = dataclasses.field(default_factory=list)
    step_lr: list = dataclasses.field(default_factory=list)
    epoch_loss: list = dataclasses.field(default_factory=list)
    val_step: list = dataclasses.field(default_factory=list)
    val_epoch: list = dataclasses.field(default_factory=list)
    val_miou: list = dataclasses.field(default_factory=list)
    val_pixel_accuracy: list = dataclasses.field(default_factory=list)
    val_iou: list = dataclasses.field(default_factory=list)
    best_miou: float = math.nan
    best_step: int = -1
    steps: int = 0
    epochs: int = 0
    images_seen: int = 0
    train_time_s: float = 0.0
    elapsed_s: float = 0.0
    stopped_by: str = ""

    @property
    def images_per_s(self) -> float:
        return self.images_seen / self.train_time_s if self.train_time_s > 0 else math.nan

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
