"""What a training run is told (:class:`TrainConfig`), what it measured (:class:`History`),
and the "poly" learning-rate schedule (:class:`PolyLR`)."""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .._checks import check_choice, check_int
from ..labels import IGNORE_INDEX

__all__ = ["TrainConfig", "History", "PolyLR", "build_optimizer"]


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
      scaler on older GPUs, fp32 elsewhere), ``True`` insists (an error where the device
      has no native reduced precision), ``False`` turns it off.
    * ``channels_last``: NHWC memory layout for the model and the images; ``None`` means
      on for CPU and CUDA (faster convolutions there), off for MPS.
    * ``compile``: train a ``torch.compile``-d copy of the model (same parameters).
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
    grad_clip: float | None = None
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
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
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


def use_channels_last(setting: bool | None, device) -> bool:
    """``TrainConfig.channels_last`` resolved for ``device``: ``None`` means CPU and CUDA yes, MPS no."""
    if setting is not None:
        return bool(setting)
    return torch.device(device).type in ("cpu", "cuda")


def check_positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


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


class PolyLR:
    """The poly schedule: ``lr = base_lr * (1 - progress) ** power``, progress in [0, 1].

    Progress is measured, not counted by calls: the larger of ``step / total_steps`` and
    ``elapsed_s / time_budget_s``. So a time-budgeted run still anneals to zero at the
    end of its budget, and resuming needs only the step and elapsed time.
    """

    def __init__(self, optimizer, total_steps=None, time_budget_s=None, power: float = 0.9):
        self.optimizer = optimizer
        self.total_steps, self.time_budget_s, self.power = total_steps, time_budget_s, power
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]

    def progress(self, step: int, elapsed_s: float) -> float:
        p = 0.0
        if self.total_steps:
            p = max(p, step / self.total_steps)
        if self.time_budget_s:
            p = max(p, elapsed_s / self.time_budget_s)
        return min(p, 1.0)

    def apply(self, step: int, elapsed_s: float) -> float:
        factor = (1.0 - self.progress(step, elapsed_s)) ** self.power
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    def state_dict(self) -> dict:
        return {"total_steps": self.total_steps, "time_budget_s": self.time_budget_s,
                "power": self.power, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        # The plan (total steps, budget) comes from the current call, so a resumed run may
        # be given more epochs; the base learning rates are the run's own.
        self.base_lrs = list(state["base_lrs"])


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the trainable parameters; no weight decay on biases and norm weights
    (decaying a norm's scale only fights the normalisation)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    lr = config.learning_rate
    # One fused kernel per step instead of a dozen small operations per parameter tensor:
    # PyTorch picks its multi-tensor code only on CUDA and otherwise loops over the tensors
    # (measured: AdamW took 14 ms of FCN-8s's ~100 ms CPU step; fused, 5-9 ms). The update
    # is the same formula (a test compares it with the loop), rounded in another order.
    fused = _fused_supported(decay + no_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, fused=fused)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, fused=fused)


def _fused_supported(params) -> bool:
    """Fused optimizer kernels exist for floating-point parameters on CPU, CUDA and MPS."""
    devices = {p.device.type for p in params}
    return devices <= {"cpu", "cuda", "mps"} and len(devices) == 1 and all(p.is_floating_point() for p in params)
