"""What makes a :class:`~course_utils.training.Trainer` resumable: its state as a dict,
read back exactly, and written to / read from its checkpoint."""
from __future__ import annotations

import dataclasses

import torch

from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .config import History
from .rng import rng_from_plain, rng_to_plain, set_rng_state

__all__ = ["ResumableState"]


class ResumableState:
    """Mixed into ``Trainer``: :meth:`state_dict`, :meth:`load_state_dict`, saving and resuming."""

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
        self._after_save()
