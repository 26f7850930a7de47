"""Training and evaluation: one loop for the notebooks, the command line and ``torchrun``.

* :func:`fit` trains a segmentation model (:mod:`.loop`, configured by
  :class:`TrainConfig` in :mod:`.config`) and returns a :class:`History`.
* :func:`evaluate` is the one evaluation path: a dataset-level
  :class:`~course_utils.metrics.ConfusionMatrix` plus optional meters that merge across
  processes (:mod:`.evaluation`); :func:`predict` gives label maps for a few images.
* :func:`save_checkpoint` / :func:`load_checkpoint` / :func:`load_model`: atomic writes,
  hash-checked ``weights_only`` reads (:mod:`.checkpoints`).
* Batches and loaders (:mod:`.batches`), random states (:mod:`.rng`), what the library
  needs from ``torch.distributed`` (:mod:`.distributed`), making a model ready for DDP
  (:mod:`.prepare`).

The command-line tools built on it live in :mod:`course_utils.cli`; nothing here imports them.
"""
from ..device import select_device
from .batches import (ShardSampler, batches, check_batch, check_logits, loader_len, make_loader,
                      set_sampler_epoch, split_batch)
from .checkpoints import (CHECKPOINT_FORMAT, load_checkpoint, load_model, model_from_state, save_checkpoint,
                          sha256_file)
from .config import History, PolyLR, TrainConfig, build_optimizer, use_channels_last
from .distributed import unwrap_ddp, unwrap_model
from .evaluation import BoundaryMeter, Meter, evaluate, forward_logits, logits_of, predict
from .loop import Trainer, fit
from .prepare import EVENTS, StopAt, compile_model, prepare_model

__all__ = ["select_device", "fit", "evaluate", "predict", "batches", "TrainConfig", "History", "Trainer", "PolyLR",
           "make_loader", "save_checkpoint", "load_checkpoint", "load_model", "sha256_file", "logits_of",
           "model_from_state", "split_batch", "check_batch", "check_logits", "ShardSampler", "Meter",
           "BoundaryMeter", "forward_logits", "prepare_model", "compile_model", "StopAt", "EVENTS",
           "CHECKPOINT_FORMAT", "build_optimizer", "unwrap_model", "unwrap_ddp", "use_channels_last",
           "loader_len", "set_sampler_epoch"]
