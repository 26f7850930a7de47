"""Training and evaluation: one loop for the notebooks, the command line and ``torchrun``.

* :func:`fit` trains a segmentation model and returns a :class:`History`; one step of it
  is :func:`train_step` (forward, loss, backward, update), and the loss is the model's own
  (:func:`criterion_for`) unless given (:mod:`.loop`, configured by :class:`TrainConfig`).
* :func:`evaluate` is the one evaluation path: a dataset-level
  :class:`~course_utils.metrics.ConfusionMatrix` plus optional meters such as
  :class:`BoundaryMeter` that merge across processes; :func:`predict` gives label maps.
* :func:`save_checkpoint` / :func:`load_checkpoint` / :func:`load_model`: atomic writes,
  hash-checked ``weights_only`` reads (:mod:`.checkpoints`).
* :func:`make_loader` and :class:`ShardSampler` (:mod:`.batches`), :func:`prepare_model`
  for DDP (:mod:`.prepare`), :class:`StopAt` (:mod:`.callbacks`).

Inside, one module per subject: the schedule (:mod:`.schedule`), the optimizer
(:mod:`.optimizer`), random states (:mod:`.rng`), what the library needs from
``torch.distributed`` (:mod:`.distributed`), progress bars (:mod:`.progress`). The
command-line tools built on it live in :mod:`course_utils.cli`; nothing here imports them.
"""
# select_device is part of this package's documented contract (DESIGN.md), so notebooks
# that train import everything from one place; it lives in course_utils.device.
from ..device import select_device
from .batches import ShardSampler, make_loader
from .callbacks import StopAt
from .checkpoints import load_checkpoint, load_model, model_from_state, save_checkpoint, sha256_file
from .config import History, TrainConfig
from .evaluation import BoundaryMeter, evaluate, predict
from .loop import criterion_for, fit, train_step
from .prepare import prepare_model, use_channels_last

__all__ = ["fit", "train_step", "criterion_for", "TrainConfig", "History", "evaluate", "predict", "BoundaryMeter",
           "make_loader", "ShardSampler", "save_checkpoint", "load_checkpoint", "load_model", "model_from_state",
           "sha256_file", "prepare_model", "use_channels_last", "StopAt", "select_device"]
