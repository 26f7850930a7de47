"""Training and evaluation: one loop for the notebooks, the command line and ``torchrun``.

* :func:`fit` trains a segmentation model: AdamW or SGD, the "poly" learning-rate
  schedule, mixed precision on CUDA, a number of epochs and/or a time budget, periodic
  validation (mIoU), progress bars, and checkpoints. Ctrl-C (KeyboardInterrupt) stops
  it cleanly: the model gets its best validated weights back, the state is saved, and
  ``fit(..., resume=True)`` continues exactly where it stopped.
* :func:`evaluate` runs a model over a loader into a dataset-level
  :class:`~course_utils.metrics.ConfusionMatrix`.
* :func:`save_checkpoint` / :func:`load_checkpoint`: atomic writes, hash-checked reads
  with ``torch.load(weights_only=True)`` (no code runs when a checkpoint is loaded).

Distributed training is a thin layer on top: wrap the model in
``DistributedDataParallel``, give the loaders a ``DistributedSampler``, and call
:func:`fit` in every process. It calls ``sampler.set_epoch``, shows progress and writes
checkpoints on rank 0 only, all-reduces validation confusion matrices, stores every
rank's random state, and makes all ranks agree on when a time budget has run out.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_open
from ._checks import check_choice, check_int
from .device import select_device
from .metrics import ConfusionMatrix, _check_range, predicted_labels

__all__ = ["select_device", "fit", "evaluate", "predict", "batches", "TrainConfig", "History", "Trainer", "PolyLR",
           "make_loader", "save_checkpoint", "load_checkpoint", "load_model", "sha256_file",
           "logits_of"]

CHECKPOINT_FORMAT = "course_utils.checkpoint/1"
EVENTS = ("step", "validation", "epoch", "end")


# -- configuration and history -----------------------------------------------------------
@dataclasses.dataclass
class TrainConfig:
    """Everything :func:`fit` needs besides the model, data, loss and callbacks.

    Plain values only, so a command-line tool can fill it from arguments and store it
    (``dataclasses.asdict``) next to its checkpoints.

    * ``epochs`` and/or ``time_budget_s``: when to stop (whichever comes first).
    * ``optimizer``: ``"adamw"`` or ``"sgd"`` (momentum ``momentum``); ``lr`` defaults to
      1e-3 for AdamW and 1e-2 for SGD; ``weight_decay`` skips biases and norm weights.
    * ``poly_power``: learning rate ``lr * (1 - progress) ** poly_power``, progress being
      the fraction of planned steps (``epochs * len(train_loader)``) or of the time budget.
    * ``amp``: mixed precision; ``None`` means on for CUDA. Only CUDA uses it (bf16 when the
      GPU supports it, else fp16 with a gradient scaler); on CPU/MPS it stays off.
    * ``val_every``: validate every that many epochs (and once at the end).
    * ``checkpoint``: path of the resumable checkpoint, written at every epoch end, every
      ``checkpoint_every`` steps, and when training stops; the best validated weights go to
      ``best_checkpoint`` (default: ``NAME.best.pt`` beside it).
    * ``resume``: ``True`` continues from ``checkpoint`` (which must exist), ``"auto"``
      continues if it exists, ``False`` starts afresh (and overwrites it).
    * ``keep``: which weights the model holds when ``fit`` returns: ``"best"`` (best
      validation mIoU, if any validation ran) or ``"last"``.
    """

    epochs: int | None = None
    time_budget_s: float | None = None
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.9
    poly_power: float = 0.9
    ignore_index: int = 255
    amp: bool | None = None
    channels_last: bool = False
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
            _check_positive("time_budget_s", self.time_budget_s)
        check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
        if self.lr is not None:
            _check_positive("lr", self.lr)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("momentum", self.momentum, allow_zero=True)
        _check_positive("poly_power", self.poly_power, allow_zero=True)
        check_int("ignore_index", self.ignore_index)
        check_choice("amp", self.amp, (None, True, False))
        if self.grad_clip is not None:
            _check_positive("grad_clip", self.grad_clip)
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


def _check_positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclasses.dataclass
class History:
    """What :func:`fit` measured. Lists grow by one entry per step / epoch / validation."""

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


# -- the loop ----------------------------------------------------------------------------
def fit(model: nn.Module, train_loader, val_loader=None, *, config: TrainConfig | None = None,
        loss=None, callbacks=(), device=None, num_classes: int | None = None, **options) -> History:
    """Train ``model`` on ``train_loader``; returns a :class:`History`.

    ``options`` are :class:`TrainConfig` fields (``epochs``, ``time_budget_s``, ``lr``,
    ``optimizer``, ``checkpoint``, ``resume``, ...), overriding ``config``. Batches are
    ``(images, labels)`` (or dicts with ``"image"``/``"label"``): images float
    ``(N, C, H, W)``, labels integer ``(N, H, W)`` with ``ignore_index`` for void.

    ``loss(output, labels)`` replaces the default cross-entropy (with ``ignore_index``)
    and receives the model's raw output, so models with auxiliary outputs (a tuple or a
    dict with ``"out"``) can weigh them. ``callbacks`` are called as
    ``callback(trainer, event)`` with event ``"step"``, ``"validation"``, ``"epoch"`` or
    ``"end"``; ``trainer.stop()`` ends training after the current step.
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; fit accepts: {', '.join(sorted(fields))}")
    config = dataclasses.replace(config or TrainConfig(), **options).validate()
    trainer = Trainer(model, train_loader, val_loader, config, loss=loss, callbacks=callbacks,
                      device=device, num_classes=num_classes)
    return trainer.run()


class Trainer:
    """The state of one training run; :func:`fit` is ``Trainer(...).run()``.

    Everything needed to continue exactly is in :meth:`state_dict`: model, optimizer,
    schedule, gradient scaler, step, epoch, the position inside the epoch, and the random
    states (at the start of the epoch, which fix the sampler's shuffle, and now).
    """

    def __init__(self, model, train_loader, val_loader, config: TrainConfig, loss=None, callbacks=(),
                 device=None, num_classes=None):
        self.config = config
        self.device = torch.device(device) if device is not None else select_device()
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.raw_model = unwrap_model(model)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.callbacks = list(callbacks)
        self.custom_loss = loss is not None
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss(ignore_index=config.ignore_index)
        self.num_classes = num_classes or getattr(self.raw_model, "num_classes", None)

        cuda = self.device.type == "cuda"
        if config.amp and not cuda:
            warnings.warn(f"amp=True has no effect on {self.device.type}: mixed precision is used on CUDA only")
        self.use_amp = bool(cuda and config.amp is not False)
        self.amp_dtype = (torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.optimizer = build_optimizer(self.model, config)
        self.steps_per_epoch = _loader_len(train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError("train_loader is empty (0 batches per epoch)")
        total = config.epochs * self.steps_per_epoch if config.epochs else None
        self.scheduler = PolyLR(self.optimizer, total, config.time_budget_s, config.poly_power)

        self.distributed = _dist_initialized()
        self.is_main = not self.distributed or torch.distributed.get_rank() == 0
        self.history = History()
        self.step = self.epoch = self.batch_in_epoch = 0
        self.elapsed_before = 0.0
        self.best_state = None
        self._stop = False
        self._updating = False      # True while the optimizer writes the weights
        self._pending_losses = []
        self._epoch_rng = self._step_rng = None
        self._checked_steps = 0
        self._t0 = None
        cp = config.checkpoint
        self.checkpoint = Path(cp) if cp else None
        self.best_checkpoint = (Path(config.best_checkpoint) if config.best_checkpoint else
                                self.checkpoint.with_name(self.checkpoint.stem + ".best" + self.checkpoint.suffix)
                                if self.checkpoint else None)

    # public hooks for callbacks
    def stop(self) -> None:
        """Ask training to stop after the current step (state saved, best weights kept)."""
        self._stop = True

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> History:
        cfg = self.config
        was_training = self.model.training
        if cfg.resume:
            self._resume()
        self._t0 = time.perf_counter()
        bar = _progress_bar(cfg.progress and self.is_main,
                            self.scheduler.total_steps, self.step)
        try:
            while True:
                if cfg.epochs is not None and self.epoch >= cfg.epochs:
                    self.history.stopped_by = "epochs"
                    break
                if self._run_epoch(bar):
                    self._end_epoch(bar)
                if self._time_up():
                    self.history.stopped_by = "time"
                    break
                if self._stop:
                    self.history.stopped_by = "callback"
                    break
            if self.val_loader is not None and (not self.history.val_step or self.history.val_step[-1] != self.step):
                self._validate(bar)
            self._save()
        except KeyboardInterrupt:
            self.history.stopped_by = "interrupt"
            self._flush_losses()
            self._update_times()
            if self._updating:
                # Interrupted inside optimizer.step: weights and optimizer state may disagree.
                warnings.warn("interrupted while the optimizer was updating the weights; the previous "
                              "checkpoint is kept")
            elif self.distributed:
                # Saving gathers every rank's random state, and the other ranks may never
                # reach that collective: resume from the last periodic checkpoint instead.
                warnings.warn("interrupted under torch.distributed; resume from the last periodic checkpoint")
            else:
                self._save()
        finally:
            bar.close()
        self._update_times()
        self._callback("end")
        if cfg.keep == "best" and self.best_state is not None:
            self.raw_model.load_state_dict(self.best_state)
        self.model.train(was_training)
        return self.history

    def _run_epoch(self, bar) -> bool:
        """Train until the loader is exhausted (True) or a stop condition (False)."""
        loader = self.train_loader
        _set_sampler_epoch(loader, self.epoch)
        if self.batch_in_epoch == 0:
            self._epoch_rng = _rng_state(loader)
            it = batches(loader)
        else:
            # Resuming inside an epoch: replay the shuffle from the epoch's random state and
            # skip the batches already trained on (loading them, so any augmentation
            # randomness in workers is consumed the same way), then restore "now".
            _set_rng_state(self._epoch_rng, loader)
            it = batches(loader)
            for _ in range(self.batch_in_epoch):
                next(it)
            _set_rng_state(self._step_rng, None)
        self.model.train()
        for batch in it:
            t_step = time.perf_counter()
            images, labels = self._to_device(batch)
            loss = self._train_step(images, labels)
            self._pending_losses.append(loss)
            self.history.step_lr.append(self.optimizer.param_groups[0]["lr"])
            self.history.images_seen += images.shape[0]
            self.history.train_time_s += time.perf_counter() - t_step
            if self.step % self.config.log_every == 0 or self.device.type == "cpu":
                self._flush_losses(bar)
            bar.update(1)
            if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self._save()
            self._callback("step")
            if self._time_up() or self._stop:
                return False
        return True

    def _train_step(self, images, labels) -> torch.Tensor:
        self.scheduler.apply(self.step, self.elapsed_s)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            output = self.model(images)
            logits = logits_of(output)
            self._check_batch_against(logits, labels)
            loss = self.loss_fn(output, labels) if self.custom_loss else self.loss_fn(logits, labels)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss must return a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(getattr(loss, 'shape', ()))}")
        self.scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self._updating = True
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self.batch_in_epoch += 1
        # The random state right after a finished step is what a resumed run restores.
        self._step_rng = _rng_state(None)
        self._updating = False
        return loss.detach()

    def _end_epoch(self, bar) -> None:
        self._flush_losses(bar)
        n = self.batch_in_epoch
        if self.val_loader is not None and (self.epoch + 1) % self.config.val_every == 0:
            self._validate(bar)
        # The epoch counts as done only now, after its validation: an interrupt during
        # validation resumes by re-running it, not by skipping it.
        losses = self.history.step_loss[-n:] if n else []
        self.history.epoch_loss.append(float(np.mean(losses)) if losses else math.nan)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.history.epochs = self.epoch
        self._step_rng = _rng_state(None)
        self._save()
        self._callback("epoch")

    def _validate(self, bar=None) -> None:
        cm = evaluate(self.model, self.val_loader, self._num_classes(), self.device,
                      ignore_index=self.config.ignore_index, amp=self.use_amp,
                      channels_last=self.config.channels_last)
        self.model.train()
        h = self.history
        miou = cm.miou()
        h.val_step.append(self.step)
        h.val_epoch.append(self.epoch + (self.batch_in_epoch / max(self.steps_per_epoch, 1)))
        h.val_miou.append(miou)
        h.val_pixel_accuracy.append(cm.pixel_accuracy())
        h.val_iou.append([float(v) for v in cm.iou()])
        if bar is not None:
            bar.set_postfix_str(f"loss {h.step_loss[-1]:.3f}  val mIoU {miou:.3f}" if h.step_loss else
                                f"val mIoU {miou:.3f}", refresh=False)
        if not math.isnan(miou) and (math.isnan(h.best_miou) or miou > h.best_miou):
            h.best_miou, h.best_step = miou, self.step
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.raw_model.state_dict().items()}
            if self.best_checkpoint is not None and self.is_main:
                save_checkpoint(self.best_checkpoint, self.raw_model, step=self.step, epoch=self.epoch,
                                metrics={"miou": miou, "pixel_accuracy": cm.pixel_accuracy(),
                                         "iou": [float(v) for v in cm.iou()]})
        self._callback("validation")

    # -- checks, helpers ------------------------------------------------------------------
    def _to_device(self, batch):
        images, labels = split_batch(batch)
        check_batch(images, labels)
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, dtype=torch.long, non_blocking=non_blocking)

    def _check_batch_against(self, logits, labels) -> None:
        if logits.ndim != 4 or logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
            raise ValueError(f"the model's logits {tuple(logits.shape)} do not match the labels "
                             f"{tuple(labels.shape)}: expected (N, num_classes, H, W) at the label size")
        if self.num_classes is None:
            self.num_classes = logits.shape[1]
        elif logits.shape[1] != self.num_classes:
            raise ValueError(f"the model outputs {logits.shape[1]} classes but num_classes is {self.num_classes}")
        # A label past the classes makes cross-entropy fail with an obscure message (on CUDA
        # a device-side assert that kills the session). Checking costs a sync, so on a GPU
        # only the first batches are checked.
        if self.device.type == "cpu" or self._checked_steps < 10:
            self._checked_steps += 1
            valid = labels[labels != self.config.ignore_index]
            _check_range("labels", valid, self.num_classes, self.config.ignore_index)

    def _num_classes(self) -> int:
        if self.num_classes is None:
            raise ValueError("num_classes is unknown: pass num_classes= to fit")
        return self.num_classes

    def _flush_losses(self, bar=None) -> None:
        if not self._pending_losses:
            return
        values = torch.stack(self._pending_losses).float().cpu().tolist()
        self._pending_losses.clear()
        self.history.step_loss.extend(values)
        if bar is not None:
            post = f"loss {values[-1]:.3f}"
            if self.history.val_miou:
                post += f"  val mIoU {self.history.val_miou[-1]:.3f}"
            bar.set_postfix_str(post, refresh=False)

    def _time_up(self) -> bool:
        budget = self.config.time_budget_s
        up = budget is not None and self.elapsed_s >= budget
        if budget is not None and self.distributed:
            # Clocks differ between ranks: all stop when the first one runs out.
            flag = torch.tensor([float(up)], device=_collective_device())
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            up = bool(flag.item())
        return up

    def _update_times(self) -> None:
        self.history.steps = self.step
        self.history.elapsed_s = self.elapsed_s

    def _callback(self, event: str) -> None:
        if self.callbacks:
            self._flush_losses()
        for cb in self.callbacks:
            cb(self, event)

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"epoch_start": _rng_to_plain(self._epoch_rng), "now": _rng_to_plain(self._step_rng)}
        if self.distributed:
            per_rank = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, rng)
        else:
            per_rank = [rng]
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.raw_model.state_dict(),
            "model_config": getattr(self.raw_model, "build_config", None),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "trainer": {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                        "steps_per_epoch": self.steps_per_epoch, "elapsed_s": self.elapsed_s,
                        "num_classes": self.num_classes},
            "rng": per_rank,
            "history": self.history.as_dict(),
            "config": dataclasses.asdict(self.config),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT or "trainer" not in state:
            raise ValueError("the checkpoint is not a resumable training state "
                             f"(format {state.get('format')!r}); best-weights files hold only 'model'")
        t = state["trainer"]
        if t["steps_per_epoch"] != self.steps_per_epoch:
            raise ValueError(f"the checkpoint was trained with {t['steps_per_epoch']} batches per epoch, this "
                             f"loader has {self.steps_per_epoch}: resuming would not see the same data")
        self.raw_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = t["step"], t["epoch"], t["batch_in_epoch"]
        self.elapsed_before = t["elapsed_s"]
        self.num_classes = self.num_classes or t["num_classes"]
        self.history = History.from_dict(state["history"])
        rank = torch.distributed.get_rank() if self.distributed else 0
        rng = state["rng"][rank if rank < len(state["rng"]) else 0]
        self._epoch_rng = _rng_from_plain(rng["epoch_start"])
        self._step_rng = _rng_from_plain(rng["now"])
        if self._step_rng is not None:
            _set_rng_state(self._step_rng, None)

    def _resume(self) -> None:
        if not self.checkpoint.exists():
            if self.config.resume == "auto":
                return
            raise ValueError(f"resume=True but the checkpoint {str(self.checkpoint)!r} does not exist")
        self.load_state_dict(load_checkpoint(self.checkpoint, map_location="cpu"))
        if self.best_checkpoint is not None and self.best_checkpoint.exists() and self.config.keep == "best":
            self.best_state = load_checkpoint(self.best_checkpoint, map_location="cpu")["model"]

    def _save(self) -> None:
        self._update_times()
        if self.checkpoint is None:
            return
        state = self.state_dict()    # collective when distributed: every rank takes part
        if self.is_main:
            save_checkpoint(self.checkpoint, **state)


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
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)


# -- evaluation ------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, device=None, *, ignore_index: int = 255,
             amp: bool | None = None, progress: bool = False, reduce: bool = True,
             channels_last: bool = False) -> ConfusionMatrix:
    """The dataset-level confusion matrix of ``model`` on ``loader`` (model in eval mode).

    ``device`` defaults to the device the model is on; given, the model is moved there.

    Under ``torch.distributed`` each rank counts its share and (``reduce=True``) the
    matrices are summed, so every rank gets the dataset-level matrix. (A
    ``DistributedSampler`` pads the dataset to a multiple of the world size by repeating a
    few samples; use one with ``drop_last``/no padding for exact counts.)
    """
    if device is None:   # where the model already is
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    model.to(device)
    cm = ConfusionMatrix(num_classes, ignore_index)
    was_training = model.training
    model.eval()
    use_amp = bool(device.type == "cuda" and amp is not False)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    bar = _progress_bar(progress and (not _dist_initialized() or torch.distributed.get_rank() == 0),
                        _loader_len(loader, required=False), 0, desc="evaluate", unit="batch")
    try:
        for batch in batches(loader):
            images, labels = split_batch(batch)
            check_batch(images, labels)
            images = images.to(device, non_blocking=device.type == "cuda")
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=use_amp):
                logits = logits_of(model(images))
            if logits.ndim != 4 or logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
                raise ValueError(f"the model's logits {tuple(logits.shape)} do not match the labels "
                                 f"{tuple(labels.shape)}: expected (N, num_classes, H, W) at the label size")
            cm.update(predicted_labels(logits), labels.to(device, non_blocking=device.type == "cuda"))
            bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    if reduce:
        cm.all_reduce()
    return cm


@torch.no_grad()
def predict(model, images, batch_size: int = 4, device=None) -> np.ndarray:
    """Predicted labels ``(N, H, W)`` (numpy int64) of ``model`` for images ``(N, 3, H, W)`` in [0, 1].

    Runs in eval mode in batches of ``batch_size`` on ``device`` (default: the model's), and
    leaves the model in the mode it was in.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start:start + batch_size], dtype=torch.float32).to(device)
            out.append(predicted_labels(logits_of(model(batch))).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.int64)


def logits_of(output) -> torch.Tensor:
    """The main logits of a model's output: the tensor itself, ``output["out"]`` of a dict, or
    the first entry of a tuple/list (models may add auxiliary outputs alongside)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "out" in output:
        return output["out"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ValueError("the model must return logits (a tensor), a dict with key 'out', or a tuple whose first "
                     f"entry is the logits; got {type(output).__name__}")


def split_batch(batch):
    """``(images, labels)`` from a batch given as a tuple/list or a dict."""
    if isinstance(batch, dict):
        for ki, kl in (("image", "label"), ("images", "labels")):
            if ki in batch and kl in batch:
                return batch[ki], batch[kl]
        raise ValueError(f"a dict batch needs keys 'image' and 'label', got {sorted(batch)}")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"a batch must be (images, labels) or a dict with 'image' and 'label', got {type(batch).__name__}")


def check_batch(images, labels) -> None:
    """Raise ``ValueError`` unless images are float ``(N, C, H, W)`` and labels integer ``(N, H, W)``."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"images and labels must be torch tensors, got {type(images).__name__} and "
                         f"{type(labels).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (float32 in [0, 1]), got dtype {images.dtype}")
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape (N, H, W), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer class indices (int64), got dtype {labels.dtype}")
    if images.shape[0] != labels.shape[0] or images.shape[2:] != labels.shape[1:]:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} disagree: labels must be "
                         "(N, H, W) for images (N, C, H, W)")


# -- data loading -------------------------------------------------------------------------------
def make_loader(dataset, batch_size: int, *, shuffle: bool = False, device=None, num_workers: int = 0,
                seed: int = 0, drop_last: bool | None = None, sampler=None) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` set up for training or evaluation on ``device``.

    Pinned memory on CUDA (so ``.to(device, non_blocking=True)`` overlaps the copy),
    a seeded shuffle, workers that re-seed NumPy and ``random`` (forked workers would
    otherwise share one NumPy stream and augment identically), and ``drop_last`` for
    training so BatchNorm never sees a last batch of one image. A resumed :func:`fit`
    replays the shuffle and the workers' seeds exactly.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    num_workers = check_int("num_workers", num_workers, 0)
    seed = check_int("seed", seed)
    device = torch.device(device) if device is not None else select_device()
    training = shuffle or sampler is not None
    if sampler is None and shuffle:
        # The shuffle gets a generator of its own, so it does not depend on how many
        # worker seeds were drawn from the loader's generator before it.
        sampler = torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", drop_last=training if drop_last is None else drop_last,
        generator=torch.Generator().manual_seed(seed + 1), worker_init_fn=_seed_worker if num_workers else None,
        # Not persistent: workers hold a copy of the dataset made when they start, so a
        # dataset's set_epoch (SynthCity's fresh augmentation per epoch) would never reach
        # persistent ones, and a resumed run would start them at a different epoch.
        persistent_workers=False)


def batches(loader):
    """Iterate ``loader``, building each batch with a single intra-op thread.

    With ``num_workers=0`` the batches are made in this process, between training steps,
    from many tiny tensor operations (a uint8 -> float conversion, a flip, a resize per
    sample, a stack). Spread over OpenMP threads they gain nothing, and on a busy machine
    each one waits for a descheduled thread: measured on 2 shared cores, SynthCity served
    28 augmented scenes/s with 2 threads and 1560/s with one. The model's own operations
    still get every thread; worker processes already run with one. A side effect: some
    kernels round the last bit differently with more threads, so one thread also makes the
    samples the same on a laptop with 8 cores as on the 2-core CI machine.
    """
    it = iter(loader)
    in_process = getattr(loader, "num_workers", 0) == 0
    while True:
        threads = torch.get_num_threads()
        if in_process and threads > 1:
            torch.set_num_threads(1)
        try:
            batch = next(it)
        except StopIteration:
            return
        finally:
            if in_process and threads > 1:
                torch.set_num_threads(threads)
        yield batch


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _loader_len(loader, required: bool = True):
    try:
        return len(loader)
    except TypeError:
        if required:
            raise ValueError("train_loader must have a length (a map-style dataset), so epochs and the "
                             "schedule can be planned") from None
        return None


def _set_sampler_epoch(loader, epoch: int) -> None:
    # Samplers (DistributedSampler) and datasets with epoch-dependent augmentation
    # (SynthCity) both follow the set_epoch convention.
    seen = set()
    for s in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
              getattr(getattr(loader, "batch_sampler", None), "sampler", None),
              getattr(loader, "dataset", None)):
        if s is not None and id(s) not in seen and hasattr(s, "set_epoch"):
            seen.add(id(s))
            s.set_epoch(epoch)


# -- random states --------------------------------------------------------------------------
def _loader_generators(loader) -> list:
    gens, seen = [], set()
    if loader is None:
        return gens
    candidates = (getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None),
                  getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None))
    for g in candidates:
        if isinstance(g, torch.Generator) and id(g) not in seen:
            seen.add(id(g))
            gens.append(g)
    return gens


def _rng_state(loader) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "loader": [g.get_state() for g in _loader_generators(loader)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, loader) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader is not None:
        for g, s in zip(_loader_generators(loader), state["loader"]):
            g.set_state(s)


def _rng_to_plain(state):
    """Random states as tensors and plain Python values, which ``weights_only`` loading accepts."""
    if state is None:
        return None
    name, keys, pos, has_gauss, cached = state["numpy"]
    plain = dict(state)
    plain["numpy"] = (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                      float(cached))
    version, internal, gauss = state["python"]
    plain["python"] = (version, list(internal), gauss)
    return plain


def _rng_from_plain(plain):
    if plain is None:
        return None
    state = dict(plain)
    name, keys, pos, has_gauss, cached = plain["numpy"]
    state["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    version, internal, gauss = plain["python"]
    state["python"] = (version, tuple(internal), gauss)
    return state


# -- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(path, model=None, **contents) -> str:
    """Write a checkpoint atomically; returns its SHA-256 (hex).

    ``model`` (a module, its state dict saved as ``"model"`` with its ``build_config`` as
    ``"model_config"``) and any other ``contents``; objects with a ``state_dict()``
    (optimizers, schedulers, scalers) are stored as their state dicts. The bytes go to a
    temporary file in the same directory, are flushed to disk (fsync), and then replace
    ``path`` in one ``os.replace``: a crash leaves either the old file or the new one,
    never half of one.
    """
    path = Path(path)
    payload = {}
    if model is not None:
        if isinstance(model, nn.Module):
            raw = unwrap_model(model)
            payload["model"] = raw.state_dict()
            payload["model_config"] = getattr(raw, "build_config", None)
        else:
            payload["model"] = model
    for key, value in contents.items():
        payload[key] = value.state_dict() if hasattr(value, "state_dict") and not isinstance(value, dict) else value
    digest = hashlib.sha256()
    with atomic_open(path, "wb") as f:
        torch.save(payload, _HashingWriter(f, digest))
    return digest.hexdigest()


class _HashingWriter:
    """A write-only file wrapper that hashes the bytes as ``torch.save`` writes them."""

    def __init__(self, f, digest):
        self._f, self._digest = f, digest

    def write(self, data) -> int:
        self._digest.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path, expected_sha256: str | None = None, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    With ``expected_sha256`` the file's hash is checked first and a mismatch raises
    ``ValueError`` naming the file: a corrupted or substituted file is never unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if expected_sha256 is not None:
        expected = str(expected_sha256).strip().lower()
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(f"checkpoint {str(path)!r} has sha256 {actual}, expected {expected}: "
                             "the file is corrupted or not the one the manifest describes")
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model(path, expected_sha256: str | None = None, map_location="cpu") -> nn.Module:
    """Rebuild the model a checkpoint was saved from (``build_model`` + its weights)."""
    from .models import build_model

    state = load_checkpoint(path, expected_sha256, map_location)
    config = state.get("model_config")
    if not config:
        raise ValueError(f"checkpoint {str(path)!r} does not say which model it holds (no 'model_config'); "
                         "build the model yourself and load state['model']")
    model = build_model(config["name"], config["num_classes"], **config.get("options", {}))
    model.load_state_dict(state["model"])
    return model


# -- small utilities ----------------------------------------------------------------------------
def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose ``state_dict`` has plain keys: unwraps DDP/DataParallel and torch.compile."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def _dist_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, *a, **k):
        pass

    def close(self):
        pass


def _progress_bar(enabled: bool, total, initial: int, desc: str = "train", unit: str = "step"):
    # TQDM_DISABLE is read here too: tqdm.auto in a kernel builds its widget (and sends
    # comm messages on every update) even when the environment disables the bar, which
    # floods a long training cell's output under nbval.
    if not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return _NoBar()
    from tqdm.auto import tqdm

    # mininterval: a few redraws per second are plenty for a student to watch.
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=True, mininterval=0.5)
