"""The training loop: :func:`fit` is ``Trainer(...).run()``.

AdamW or SGD, the poly schedule, the precision policy's mixed precision, a number of
epochs and/or a time budget, periodic validation (mIoU), progress bars and checkpoints.
Ctrl-C (KeyboardInterrupt) stops cleanly: the model gets its best validated weights back,
the state is saved, and ``fit(..., resume=True)`` continues exactly where it stopped.

Distributed training is a thin layer on top: prepare the model with
:func:`prepare_model` (channels_last and ``torch.compile`` *before* the
``DistributedDataParallel`` wrapper), give the loaders a ``DistributedSampler`` (training)
and a :class:`~course_utils.training.ShardSampler` (validation), and call :func:`fit` in
every process. It calls ``sampler.set_epoch``, shows progress and writes checkpoints on
rank 0 only, validates the unwrapped module and all-reduces the counts, stores every
rank's random state, and makes all ranks agree on when a time budget has run out.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..device import select_device
from ..metrics import _check_range
from ..precision import choose_precision
from .batches import batches, check_batch, check_logits, loader_len, set_sampler_epoch, split_batch
from .checkpoints import save_checkpoint
from .config import History, PolyLR, TrainConfig, build_optimizer, use_channels_last
from .distributed import broadcast_buffers, collective_device, dist_initialized, unwrap_model
from .evaluation import evaluate, logits_of
from .prepare import compile_model, is_compiled
from .progress import progress_bar
from .resume import ResumableState
from .rng import rng_state, set_rng_state

__all__ = ["fit", "Trainer"]


def fit(model: nn.Module, train_loader, val_loader=None, *, config: TrainConfig | None = None,
        loss=None, callbacks=(), device=None, num_classes: int | None = None, **options) -> History:
    """Train ``model`` on ``train_loader``; returns a :class:`~course_utils.training.History`.

    ``options`` are :class:`~course_utils.training.TrainConfig` fields (``epochs``,
    ``time_budget_s``, ``lr``, ``optimizer``, ``amp``, ``compile``, ``checkpoint``,
    ``resume``, ...), overriding ``config``. Batches are ``(images, labels)`` (or dicts
    with ``"image"``/``"label"``): images float ``(N, C, H, W)``, labels integer
    ``(N, H, W)`` with ``ignore_index`` for void.

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


class Trainer(ResumableState):
    """The state of one training run; :func:`fit` is ``Trainer(...).run()``.

    Everything needed to continue exactly is in :meth:`state_dict`: model, optimizer,
    schedule, gradient scaler, step, epoch, the position inside the epoch, and the random
    states (at the start of the epoch, which fix the sampler's shuffle, and now).
    """

    def __init__(self, model, train_loader, val_loader, config: TrainConfig, loss=None, callbacks=(),
                 device=None, num_classes=None):
        self.config = config
        self.device = torch.device(device) if device is not None else select_device()
        self.precision = choose_precision(self.device, config.amp)
        self.scaler = self.precision.grad_scaler()
        self.channels_last = use_channels_last(config.channels_last, self.device)
        self.raw_model = unwrap_model(model)
        self.model = self._place(model)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.callbacks = list(callbacks)
        self.custom_loss = loss is not None
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss(ignore_index=config.ignore_index)
        self.num_classes = num_classes or getattr(self.raw_model, "num_classes", None)
        self.optimizer = build_optimizer(self.raw_model, config)
        self.steps_per_epoch = loader_len(train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError("train_loader is empty (0 batches per epoch)")
        total = config.epochs * self.steps_per_epoch if config.epochs else None
        self.scheduler = PolyLR(self.optimizer, total, config.time_budget_s, config.poly_power)

        self.distributed = dist_initialized()
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
        self._t0 = self._interval_t0 = None
        self._compile_checked = not config.compile
        cp = config.checkpoint
        self.checkpoint = Path(cp) if cp else None
        self.best_checkpoint = (Path(config.best_checkpoint) if config.best_checkpoint else
                                self.checkpoint.with_name(self.checkpoint.stem + ".best" + self.checkpoint.suffix)
                                if self.checkpoint else None)

    @property
    def use_amp(self) -> bool:
        return self.precision.enabled

    def _place(self, model):
        wrapped = isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))
        if not wrapped:
            model = model.to(self.device)
        if self.channels_last:
            if wrapped:
                weights = [p for p in self.raw_model.parameters() if p.ndim == 4]
                if not all(p.is_contiguous(memory_format=torch.channels_last) for p in weights):
                    if self.config.channels_last is None:
                        self.channels_last = False    # "auto" takes the model as it was wrapped
                    else:
                        raise ValueError("channels_last=True: convert the model before wrapping it in "
                                         "DistributedDataParallel (course_utils.training.prepare_model does it in "
                                         "that order), or pass channels_last=False")
            else:
                self.raw_model.to(memory_format=torch.channels_last)
        if self.config.compile and not is_compiled(model):
            if wrapped:
                raise ValueError("compile=True with a model already wrapped in DistributedDataParallel: compile "
                                 "before wrapping (course_utils.training.prepare_model does it in that order)")
            model = compile_model(model)
        return model

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
        was_training = self.raw_model.training
        if cfg.resume:
            self._resume()
        self._t0 = time.perf_counter()
        bar = progress_bar(cfg.progress and self.is_main, self.scheduler.total_steps, self.step)
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
        self.raw_model.train(was_training)
        return self.history

    def _run_epoch(self, bar) -> bool:
        """Train until the loader is exhausted (True) or a stop condition (False)."""
        loader = self.train_loader
        set_sampler_epoch(loader, self.epoch)
        if self.batch_in_epoch == 0:
            self._epoch_rng = rng_state(loader)
            it = batches(loader)
        else:
            # Resuming inside an epoch: replay the shuffle from the epoch's random state and
            # skip the batches already trained on (loading them, so any augmentation
            # randomness in workers is consumed the same way), then restore "now".
            set_rng_state(self._epoch_rng, loader)
            it = batches(loader)
            for _ in range(self.batch_in_epoch):
                next(it)
            set_rng_state(self._step_rng, None)
        self.model.train()
        self._interval_t0 = time.perf_counter()
        for batch in it:
            images, labels = self._to_device(batch)
            self._pending_losses.append(self._train_step(images, labels))
            self.history.step_lr.append(self.optimizer.param_groups[0]["lr"])
            self.history.images_seen += images.shape[0]
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
        try:
            loss = self._forward_backward(images, labels)
        except Exception as err:
            # A compiled model fails at its first call, from dynamo, inductor, or the code
            # inductor generated (e.g. an AssertionError on a kernel's strides).
            if self._compile_checked or isinstance(err, ValueError):
                raise
            raise RuntimeError(f"torch.compile could not compile {type(self.raw_model).__name__} "
                               f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                               "train without compile=True / --compile") from err
        self._compile_checked = True
        if self.config.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self._updating = True
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        self.batch_in_epoch += 1
        # The random state right after a finished step is what a resumed run restores.
        self._step_rng = rng_state(None)
        self._updating = False
        return loss.detach()

    def _forward_backward(self, images, labels) -> torch.Tensor:
        with self.precision.autocast():
            output = self.model(images)
            logits = logits_of(output)
            self._check_batch_against(logits, labels)
            loss = self.loss_fn(output, labels) if self.custom_loss else self.loss_fn(logits.float(), labels)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss must return a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(getattr(loss, 'shape', ()))}")
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return loss

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
        self._step_rng = rng_state(None)
        self._save()
        self._callback("epoch")

    # -- validation: evaluate, record, keep the best ----------------------------------------
    def _validate(self, bar=None) -> None:
        self._flush_losses()
        cm = self._evaluate()
        self._record(cm, bar)
        self._keep_best(cm)
        self._callback("validation")
        self._interval_t0 = time.perf_counter()

    def _evaluate(self):
        # The unwrapped module: DDP's forward broadcasts buffers (a collective), which a
        # rank with fewer validation batches than the others would never join.
        broadcast_buffers(self.raw_model)   # every rank evaluates rank 0's BatchNorm statistics
        return evaluate(self.raw_model, self.val_loader, self._num_classes(), self.device,
                        ignore_index=self.config.ignore_index, precision=self.precision,
                        channels_last=self.channels_last)

    def _record(self, cm, bar) -> None:
        h, miou = self.history, cm.miou()
        h.val_step.append(self.step)
        h.val_epoch.append(self.epoch + (self.batch_in_epoch / max(self.steps_per_epoch, 1)))
        h.val_miou.append(miou)
        h.val_pixel_accuracy.append(cm.pixel_accuracy())
        h.val_iou.append([float(v) for v in cm.iou()])
        if bar is not None:
            bar.set_postfix_str(f"loss {h.step_loss[-1]:.3f}  val mIoU {miou:.3f}" if h.step_loss else
                                f"val mIoU {miou:.3f}", refresh=False)

    def _keep_best(self, cm) -> None:
        h, miou = self.history, cm.miou()
        if math.isnan(miou) or not (math.isnan(h.best_miou) or miou > h.best_miou):
            return
        h.best_miou, h.best_step = miou, self.step
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.raw_model.state_dict().items()}
        if self.best_checkpoint is not None and self.is_main:
            save_checkpoint(self.best_checkpoint, self.raw_model, step=self.step, epoch=self.epoch,
                            metrics={"miou": miou, "pixel_accuracy": cm.pixel_accuracy(),
                                     "iou": [float(v) for v in cm.iou()]})

    # -- checks, helpers ------------------------------------------------------------------
    def _to_device(self, batch):
        images, labels = split_batch(batch)
        check_batch(images, labels)
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, dtype=torch.long, non_blocking=non_blocking)

    def _check_batch_against(self, logits, labels) -> None:
        if self.num_classes is None:
            self.num_classes = logits.shape[1]
        check_logits(logits, labels, self.num_classes)
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
        """Read the losses back from the device (the one wait per ``log_every`` steps) and
        count the time since the last read as training time."""
        if self._interval_t0 is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)   # the clock must not run ahead of the GPU
            now = time.perf_counter()
            self.history.train_time_s += now - self._interval_t0
            self._interval_t0 = now
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
            flag = torch.tensor([float(up)], device=collective_device())
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            up = bool(flag.item())
        return up

    def _after_save(self) -> None:
        # Writing a checkpoint is not training time.
        self._interval_t0 = time.perf_counter() if self._interval_t0 is not None else None

    def _update_times(self) -> None:
        self.history.steps = self.step
        self.history.elapsed_s = self.elapsed_s

    def _callback(self, event: str) -> None:
        # At "step" events history.step_loss may lag by up to log_every steps: reading it
        # every step would make each step wait for the GPU.
        if self.callbacks and event != "step":
            self._flush_losses()
        for cb in self.callbacks:
            cb(self, event)
