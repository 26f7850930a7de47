"""Distributed training on the CPU (gloo): every rank validates with rank 0's BatchNorm
statistics, and a rank that fails ends the others promptly.

Two processes each time, started by ``torchrun`` or, to stand for the ranks of another
node (which no local launcher stops), as two plain processes joined by ``env://``.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.datasets import SynthCity
from course_utils.training import load_checkpoint, load_model
from course_utils.training.distributed import broadcast_buffers

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("torchrun")
TORCHRUN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "torch.distributed.run"]
# A hung rank would otherwise hold the test for NCCL's ten minutes; these finish in seconds.
TIMEOUT_S = 90

pytestmark = pytest.mark.usefixtures("one_thread")


def env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT),
                TQDM_DISABLE="1", COURSE_DEVICE="cpu", PYTHONWARNINGS="error", **extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_plain(script: Path, *args, world=2, **extra):
    """``script`` in ``world`` plain processes joined by env:// (no launcher to stop them):
    ``[(returncode, stdout, stderr)]`` per rank; a process still running after
    ``TIMEOUT_S`` is killed and reported with returncode None."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **extra))
             for r in range(world)]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=TIMEOUT_S)
            results.append((p.returncode, out, err))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            results.append((None, out, err))
    return results


# -- broadcast_buffers -------------------------------------------------------------------------
def bn_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))


def fill_buffers(model, rank):
    """Buffers that say which rank wrote them: float statistics 100 rank + position, counts 7 + rank."""
    with torch.no_grad():
        for i, b in enumerate(model.buffers()):
            if b.is_floating_point():
                b.copy_(100 * rank + i + torch.arange(b.numel(), dtype=b.dtype).view(b.shape))
            else:
                b.fill_(7 + rank)
    return model


def test_broadcast_buffers_without_torch_distributed_changes_nothing():
    model = fill_buffers(bn_model(), 3)
    before = [b.clone() for b in model.buffers()]
    broadcast_buffers(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))


BROADCAST = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_ddp import bn_model, fill_buffers
from course_utils.training.distributed import broadcast_buffers
dist.init_process_group("gloo", init_method="env://")
rank = dist.get_rank()
model = bn_model()
wrapped = torch.nn.parallel.DistributedDataParallel(model)     # (which copies rank 0's buffers once)
for src in (1, 0):
    fill_buffers(model, rank)
    broadcast_buffers(wrapped, src=src)
    torch.save([b.clone() for b in model.buffers()], f"{{sys.argv[1]}}/src{{src}}_rank{{rank}}.pt")
# As shutdown_distributed does: tearing gloo down while the other rank still saves
# aborts the process ("terminate called without an active exception") now and then.
dist.barrier()
dist.destroy_process_group()
"""


def test_broadcast_buffers_gives_every_rank_the_buffers_of_src(tmp_path):
    script = tmp_path / "broadcast.py"
    script.write_text(BROADCAST.format(tests=str(ROOT / "tests")))
    results = run_plain(script, tmp_path)
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
    for src in (0, 1):
        expected = list(fill_buffers(bn_model(), src).buffers())
        for rank in (0, 1):
            got = torch.load(tmp_path / f"src{src}_rank{rank}.pt")
            assert len(got) == len(expected) == 6        # two BatchNorms: mean, variance, count
            for g, e in zip(got, expected):
                assert g.dtype == e.dtype and torch.equal(g, e), (src, rank)


# -- validation under DDP uses rank 0's BatchNorm statistics --------------------------------------
# BatchNorm (the default norm), trained enough that its statistics move: each rank then
# ends every step with statistics of its own half of the batch. fp32 and NCHW, so the
# evaluation below repeats the ranks' arithmetic.
BN_RUN = ["--model", "fcn8s", "--model-option", "width=8", "--data", "synthcity", "--size", "32",
          "--n-train", "16", "--n-val", "8", "--epochs", "3", "--batch-size", "4", "--lr", "0.05",
          "--no-augment", "--no-amp", "--no-channels-last", "--pretrained-encoder", "no", "--quiet"]


def confusion_of(checkpoint, world=2, batch=2):
    """The validation confusion matrix of ``checkpoint`` (its weights and buffers), each
    shard (every ``world``-th scene, as ShardSampler deals them) in batches of ``batch``,
    counted with np.bincount: independent of the course's metrics."""
    model = load_model(checkpoint).eval()
    data = SynthCity(8, size=32, seed=10_000)      # the CLI's validation scenes
    cm = np.zeros((9, 9), dtype=np.int64)
    for rank in range(world):
        shard = list(range(rank, len(data.images), world))
        for i in range(0, len(shard), batch):
            idx = shard[i:i + batch]
            with torch.no_grad():
                pred = model(data.images[idx].float() / 255).argmax(1).numpy()
            true = data.labels[idx].numpy().astype(np.int64)
            cm += np.bincount(true.ravel() * 9 + pred.ravel(), minlength=81).reshape(9, 9)
    return cm


def iou_of(cm):
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    return [i / u if u else float("nan") for i, u in zip(inter, union)]


def test_two_processes_validate_with_the_statistics_rank_0_saves(tmp_path):
    done = subprocess.run([*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "course_utils.train", *BN_RUN,
                           "--out", str(tmp_path)], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=4 * TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    state = load_checkpoint(tmp_path / "latest.pt")
    history = state["history"]
    assert json.loads((tmp_path / "config.json").read_text())["world_size"] == 2
    # The last validation ran on the weights and statistics latest.pt holds (rank 0's), and
    # the best one on those of best.pt: the reported numbers must be theirs, to the pixel.
    best = load_checkpoint(tmp_path / "best.pt")
    for path, at in ((tmp_path / "latest.pt", -1), (tmp_path / "best.pt", history["val_step"].index(best["step"]))):
        cm = confusion_of(path)
        assert round(history["val_pixel_accuracy"][at] * cm.sum()) == np.trace(cm), path.name
        assert history["val_iou"][at] == pytest.approx(iou_of(cm), nan_ok=True, abs=1e-12), path.name
        assert history["val_miou"][at] == pytest.approx(np.nanmean(iou_of(cm)), abs=1e-12)


# -- a failing rank ends every rank ------------------------------------------------------------
FAILING = """
import sys, time
from course_utils.cli.common import run_main
from course_utils.cli.distributed import init_distributed

def body(argv):
    rank, world, device = init_distributed()
    if rank == int(argv[0]):
        time.sleep(1)
        raise RuntimeError(f"rank {{rank}} fails on purpose")
    # Busy in something that cannot see a peer die (as a rank waiting in an NCCL collective
    # does): without a word from the failing rank, this rank would go on for two minutes.
    time.sleep(120)
    return 0

sys.exit(run_main(body, sys.argv[1:], "failing"))
"""


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_rank_ends_the_others(tmp_path, failing):
    script = tmp_path / "failing.py"
    script.write_text(FAILING.format())
    results = run_plain(script, failing)
    codes = [code for code, _, _ in results]
    assert None not in codes, f"a rank was still running after {TIMEOUT_S} s: {codes}"
    assert all(code != 0 for code in codes)
    assert "fails on purpose" in results[failing][2]
    other = 1 - failing
    assert f"rank {other}: rank {failing} failed: RuntimeError: rank {failing} fails on purpose" in results[other][2]


def test_a_run_that_fails_on_every_rank_under_torchrun_ends(tmp_path):
    # Every rank refuses the model option after joining the process group: each reports its
    # own one-line error, and none waits for the others' acknowledgement forever.
    done = subprocess.run([*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "course_utils.train",
                           *BN_RUN, "--model-option", "width=0", "--out", str(tmp_path)], env=env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode != 0
    assert done.stderr.count("error: width must be an integer") == 2, done.stderr[-2000:]
