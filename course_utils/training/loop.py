"""The training loop: :func:`train_step` is one optimisation step; :func:`fit` is
``Trainer(...).run()``, the loop around it.

The loop adds what a real run needs around the step: AdamW or SGD with the poly schedule,
the precision policy's mixed precision, a number of epochs and/or a time budget, periodic
validation (mIoU), progress bars and checkpoints. Ctrl-C (KeyboardInterrupt) stops
cleanly: the model gets its best validated weights back, the state is saved, and
``fit(..., resume=True)`` continues exactly where it stopped.

Distributed training is a thin layer on top: prepare the model with
:func:`~course_utils.training.prepare_model`, give the loaders a ``DistributedSampler``
(training) and a :class:`~course_utils.training.batches.ShardSampler` (validation), and
call :func:`fit` in every process. It calls ``sampler.set_epoch``, shows progress and
writes checkpoints on rank 0 only, validates the unwrapped module with rank 0's
BatchNorm statistics and all-reduces the counts, stores every rank's random state, and
makes all ranks agree on when a time budget has run out.
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
from ..losses import SegmentationCrossEntropy
from ..precision import choose_precision
from .batches import batches, check_batch, loader_len, set_sampler_epoch, split_batch
from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .checks import CheckedLoss, is_compiler_error
from .config import History, TrainConfig
from .distributed import broadcast_buffers, collective_device, dist_initialized, is_ddp, unwrap_model
from .evaluation import evaluate
from .optimizer import build_optimizer
from .prepare import compile_model, is_compiled, prepare_model, use_channels_last
from .progress import progress_bar
from .rng import rng_from_plain, rng_state, rng_to_plain, set_rng_state
from .schedule import PolyLR

__all__ = ["fit", "train_step", "criterion_for", "Trainer"]


def train_step(model, images, labels, criterion, optimizer, precision, scaler=None) -> torch.Tensor:
    """One optimisation step: forward, loss, backward, update. Returns the loss, detached
    and left on the device (reading it would make the step wait for a GPU)."""
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        output = model(images)            # training mode: {"out": logits, ...auxiliary outputs}
        loss = criterion(output, labels)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:                                 # fp16: scale the loss so small gradients survive
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


def criterion_for(model: nn.Module, ignore_index: int):
    """The loss ``model`` trains with: its own ``criterion(ignore_index)`` (Gated-SCNN's adds
    its edge and dual-task terms), else cross-entropy on ``output["out"]``."""
    own = getattr(unwrap_model(model), "criterion", None)
    return own(ignore_index=ignore_index) if callable(own) else SegmentationCrossEntropy(ignore_index)


def fit(model: nn.Module, train_loader, val_loader=None, *, config: TrainConfig | None = None,
        loss=None, callbacks=(), device=None, num_classes: int | None = None, **options) -> History:
    """Train ``model`` on ``train_loader``; returns a :class:`~course_utils.training.History`.

    ``options`` are :class:`~course_utils.training.TrainConfig` fields (``epochs``,
    ``time_budget_s``, ``lr``, ``optimizer``, ``amp``, ``compile``, ``checkpoint``,
    ``resume``, ...), overriding ``config``. Batches are ``(images, labels)``: images
    float ``(N, C, H, W)``, labels integer ``(N, H, W)`` with ``ignore_index`` for void.

    The model follows the course's output contract: in training mode it returns a dict
    ``{"out": logits, ...}`` whose other entries are auxiliary outputs. ``loss(output,
    labels)`` receives that dict; by default it is the model's own
    (:func:`criterion_for`). ``callbacks`` are called as ``callback(trainer, event)`` with
    event ``"step"``, ``"validation"``, ``"epoch"`` or ``"end"``; ``trainer.stop()`` ends
    training after the current step.
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
        self.precision = choose_precision(self.device, config.amp)
        self.scaler = self.precision.grad_scaler()
        self.channels_last = use_channels_last(config.channels_last, self.device)
        self.raw_model = unwrap_model(model)
        self.model = self._place(model)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.callbacks = list(callbacks)
        self.num_classes = num_classes or getattr(self.raw_model, "num_classes", None)
        self.criterion = CheckedLoss(loss if loss is not None else criterion_for(model, config.ignore_index),
                                      self, every_step=self.device.type == "cpu")
        self.optimizer = build_optimizer(self.raw_model, config)
        # While the optimizer writes the weights, an interrupt leaves them half updated.
        self._updating = False
        self.optimizer.register_step_pre_hook(lambda *a: setattr(self, "_updating", True))
        self.optimizer.register_step_post_hook(lambda *a: setattr(self, "_updating", False))
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
        self._pending_losses = []
        self._epoch_rng = self._step_rng = None
        self._t0 = self._interval_t0 = None
        self._compile_checked = not config.compile
        cp = config.checkpoint
        self.checkpoint = Path(cp) if cp else None
        self.best_checkpoint = (Path(config.best_checkpoint) if config.best_checkpoint else
                                self.checkpoint.with_name(self.checkpoint.stem + ".best" + self.checkpoint.suffix)
                                if self.checkpoint else None)

    def _place(self, model):
        if not is_ddp(model):
            return prepare_model(model, self.device, channels_last=self.channels_last,
                                 compile=self.config.compile and not is_compiled(model))
        # Wrapped already (the command line's prepare_model): the layout must have been set
        # before wrapping, and compiling goes around the wrapper.
        weights = [p for p in self.raw_model.parameters() if p.ndim == 4]
        if self.channels_last and not all(p.is_contiguous(memory_format=torch.channels_last) for p in weights):
            if self.config.channels_last is None:
                self.channels_last = False    # "auto" takes the model as it was wrapped
            else:
                raise ValueError("channels_last=True: convert the model before wrapping it in "
                                 "DistributedDataParallel (course_utils.training.prepare_model does it in "
                                 "that order), or pass channels_last=False")
        return compile_model(model) if self.config.compile and not is_compiled(model) else model

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
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        try:
            if cfg.resume:
                self._resume()
            self._train()
            self._update_times()
            self._callback("end")
        finally:
            torch.use_deterministic_algorithms(deterministic_before)
        if cfg.keep == "best" and self.best_state is not None:
            self.raw_model.load_state_dict(self.best_state)
        self.raw_model.train(was_training)
        return self.history

    def _train(self) -> None:
        cfg = self.config
        self._t0 = time.perf_counter()
        bar = progress_bar(cfg.progress and self.is_main, self.scheduler.total_steps, self.step)
        try:
            while True:
                if cfg.epochs is not None and self.epoch >= cfg.epochs:
                    self.history.stopped_by = "epochs"
                    break
                if self._run_epoch(bar):
                    self._end_epoch(bar)
                if self._time_up(check_now=True):
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
            self._pending_losses.append(self._step(images, labels))
            self.history.step_lr.append(self.optimizer.param_groups[0]["lr"])
            self.history.images_seen += images.shape[0]
            logging_step = self.step % self.config.log_every == 0
            if logging_step or self.device.type == "cpu":
                self._flush_losses(bar)
            bar.update(1)
            if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self._save()
            self._callback("step")
            if self._time_up(check_now=logging_step) or self._stop:
                return False
        return True

    def _step(self, images, labels) -> torch.Tensor:
        self.scheduler.apply(self.step, self.elapsed_s)
        try:
            loss = train_step(self.model, images, labels, self.criterion, self.optimizer, self.precision,
                              self.scaler)
        except Exception as err:
            if self._compile_checked or not is_compiler_error(err):
                raise
            raise RuntimeError(f"torch.compile could not compile {type(self.raw_model).__name__} "
                               f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                               "train without compile=True / --compile") from err
        self._compile_checked = True
        self.step += 1
        self.batch_in_epoch += 1
        # The random state right after a finished step is what a resumed run restores.
        self._step_rng = rng_state(None)
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
        # The unwrapped module (DDP's forward broadcasts buffers, a collective that a rank
        # with fewer validation batches would never join), with rank 0's BatchNorm
        # statistics, so the result does not depend on the number of processes.
        broadcast_buffers(self.raw_model)
        cm = evaluate(self.raw_model, self.val_loader, self._num_classes(), self.device,
                      ignore_index=self.config.ignore_index, channels_last=self.channels_last)
        self._record(cm, bar)
        self._keep_best(cm)
        self._callback("validation")
        self._interval_t0 = time.perf_counter()

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

    # -- the resumable state ----------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"epoch_start": rng_to_plain(self._epoch_rng), "now": rng_to_plain(self._step_rng)}
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
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
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
        if state.get("scaler") and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = t["step"], t["epoch"], t["batch_in_epoch"]
        self.elapsed_before = t["elapsed_s"]
        self.num_classes = self.num_classes or t["num_classes"]
        self.history = History.from_dict(state["history"])
        rank = torch.distributed.get_rank() if self.distributed else 0
        rng = state["rng"][rank if rank < len(state["rng"]) else 0]
        self._epoch_rng = rng_from_plain(rng["epoch_start"])
        self._step_rng = rng_from_plain(rng["now"])
        if self._step_rng is not None:
            set_rng_state(self._step_rng, None)

    def _resume(self) -> None:
        if not self.checkpoint.exists():
            if self.config.resume == "auto":
                return
            raise ValueError(f"resume=True but the checkpoint {str(self.checkpoint)!r} does not exist")
        self.load_state_dict(load_checkpoint(self.checkpoint, map_location="cpu"))
        if self.best_checkpoint is not None and self.best_checkpoint.exists() and self.config.keep == "best":
            self.best_state = load_checkpoint(self.best_checkpoint, map_location="cpu")["model"]

    def _save(self) -> None:
        self._flush_losses()     # the losses and the training time so far belong in the state
        self._update_times()
        if self.checkpoint is None:
            return
        state = self.state_dict()    # collective when distributed: every rank takes part
        if self.is_main:
            save_checkpoint(self.checkpoint, **state)
        # Writing a checkpoint is not training time.
        self._interval_t0 = time.perf_counter() if self._interval_t0 is not None else None

    # -- helpers ----------------------------------------------------------------------------
    def _to_device(self, batch):
        images, labels = split_batch(batch)
        check_batch(images, labels)
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, dtype=torch.long, non_blocking=non_blocking)

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

    def _time_up(self, check_now: bool) -> bool:
        budget = self.config.time_budget_s
        if budget is None:
            return False
        up = self.elapsed_s >= budget
        if self.distributed:
            if not check_now:
                return False
            # Clocks differ between ranks: all stop when the first one runs out. Asking costs
            # a collective and a wait, so only every log_every steps (the same steps on
            # every rank) and at epoch ends.
            flag = torch.tensor([float(up)], device=collective_device())
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            up = bool(flag.item())
        return up

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
