"""Joining and leaving a ``torchrun`` process group.

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR``/``MASTER_PORT``) :func:`init_distributed` joins the process group: NCCL
with the GPU ``cuda:LOCAL_RANK`` made current (NCCL's collectives run on the current
device), or gloo on the CPU when there is no CUDA or ``COURSE_DEVICE=cpu`` asks for the
CPU. Without those variables it does nothing, so one code path serves one process and many.

When one rank fails, every rank must end promptly, and what the others notice by
themselves depends on the backend. With gloo, a collective fails within a moment once a
peer's process has exited ("Connection closed by peer"). With NCCL, a rank waiting in a
collective does not see a peer die: it waits until NCCL's watchdog times out (ten minutes
by default), and a graceful ``destroy_process_group`` on the failing rank can itself wait
for those peers. ``torchrun`` stops a node's other workers once one of them exits non-zero,
but not the workers of other nodes, nor processes started by another launcher. So:

* the failing rank (:func:`shutdown_distributed` without ``wait_for_all``) writes its
  failure into the job's key-value store (the one ``MASTER_ADDR:MASTER_PORT`` names,
  which every rank of every node reaches), waits a moment for the others to read it, and
  *aborts* its process group instead of destroying it; its command then exits non-zero;
* every rank runs a watcher thread (:class:`FailureWatch`, started by
  :func:`init_distributed`) that polls the store and ends its process with exit code 1
  as soon as another rank's failure appears there, whatever that process is waiting for.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import torch

__all__ = ["init_distributed", "shutdown_distributed", "FailureWatch", "FAILED_KEY", "POLL_S"]

# Store keys: the first failure's description, and how many ranks have read it.
FAILED_KEY = "course_utils/failed"
SEEN_KEY = "course_utils/failure_seen"
# How often each rank looks for a failure; how long a failing rank waits for the others to
# read its failure before it leaves (a rank hosting the store takes the store with it).
POLL_S = 0.5
ACK_WAIT_S = 5.0
ACK_POLL_S = 0.05
LINGER_S = 2.0

_watch = None       # this process's FailureWatch, while it is in a process group


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the ``torchrun`` process group if there is one: ``(rank, world_size, device)``."""
    import torch.distributed as dist

    from ..device import select_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return 0, 1, select_device()
    wanted = os.environ.get("COURSE_DEVICE")
    if wanted not in (None, "", "cpu", "cuda"):
        raise ValueError(f"COURSE_DEVICE must be 'cpu' or 'cuda' under torchrun, got {wanted!r}")
    cuda = torch.cuda.is_available() and wanted != "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("COURSE_DEVICE=cuda but torch.cuda.is_available() is False")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s): "
                             "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        # init_method "env://" reads MASTER_ADDR/PORT, RANK and WORLD_SIZE, which torchrun
        # sets for single- and multi-node launches alike.
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://",
                                **({"device_id": device} if cuda else {}))
    _start_watch()
    return dist.get_rank(), dist.get_world_size(), device


def shutdown_distributed(wait_for_all: bool = False) -> None:
    """Leave the process group: ``wait_for_all`` after a run every rank completed, else
    (this rank failed) tell the other ranks and abort.

    Rank 0 still writes files after the last collective; tearing gloo down on one rank
    while the other is busy aborted the process ("terminate called without an active
    exception") about one run in three. A barrier on success prevents it. After an error
    no barrier, since the other ranks may never arrive: the failure goes to the store for
    their watchers (see the module docstring) and the group is aborted, not destroyed.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait_for_all:
        dist.barrier()      # watched: a rank failing now still ends this one
        _stop_watch()
        dist.destroy_process_group()
        return
    _stop_watch()           # this rank's own failure is not for its own watcher
    _announce_failure(_failure_text())
    _abort()


class FailureWatch:
    """A daemon thread that ends this process (exit code 1) when another rank's failure
    appears under :data:`FAILED_KEY` in ``store``; it checks every ``poll_s`` seconds."""

    def __init__(self, store, rank: int, poll_s: float = POLL_S):
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0 seconds, got {poll_s}")
        self.store, self.rank, self.poll_s = store, rank, poll_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="course-failure-watch", daemon=True)

    def start(self) -> "FailureWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.poll_s):
            try:
                failed = self.store.check([FAILED_KEY])
            except Exception:  # noqa: BLE001 - the store is gone: the job is ending, its collectives notice
                return
            if failed and not self._stopped.is_set():
                self._end_process()

    def _end_process(self) -> None:
        try:
            what = self.store.get(FAILED_KEY).decode(errors="replace")
            self.store.add(SEEN_KEY, 1)
        except Exception:  # noqa: BLE001 - ending is what matters now
            what = "another rank failed"
        print(f"rank {self.rank}: {what}; ending this rank too", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Linger, so the failing rank (which has the error to report) ends first: torchrun
        # names the first process to exit as the failure; and where this process hosts the
        # store, leaving at once would cut the failing rank's reading of the count short.
        time.sleep(LINGER_S)
        os._exit(1)     # from this thread, whatever the main thread waits for


def _start_watch() -> None:
    global _watch
    import torch.distributed as dist

    if dist.get_world_size() < 2 or _watch is not None:
        return
    store = _failure_store()
    if store is not None:
        _watch = FailureWatch(store, dist.get_rank()).start()


def _stop_watch() -> None:
    global _watch
    if _watch is not None:
        _watch.stop()
        _watch = None


def _failure_store():
    """A connection of this process's own to the job's key-value store, or None.

    Its own, because a store connection serves one request at a time: a main thread
    waiting on the process group's store would hold up the watcher. ``MASTER_ADDR`` and
    ``MASTER_PORT`` name that store for ``torchrun`` and ``env://`` alike. The keys live
    under the launch attempt, since ``torchrun --max-restarts`` keeps its store across
    restarts and a restarted job must not read the previous attempt's failure.
    """
    import datetime

    import torch.distributed as dist

    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port:
        return None
    try:
        dist.distributed_c10d._get_default_store()     # a real process group's store is up
        client = dist.TCPStore(host, int(port), is_master=False, timeout=datetime.timedelta(seconds=30))
    except Exception:  # noqa: BLE001 - without it, ranks rely on their collectives and the launcher
        return None
    return dist.PrefixStore(f"attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", client)


def _failure_text() -> str:
    import torch.distributed as dist

    err = sys.exc_info()[1]      # the exception in flight, when called from a finally clause
    detail = f": {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}" if err else ""
    return f"rank {dist.get_rank()} failed{detail}"


def _announce_failure(text: str) -> None:
    """Write ``text`` to the store and wait up to ``ACK_WAIT_S`` for the other ranks to
    read it. A rank failing after another one did (its collective saw the peer go) only
    counts itself as having read it: the first failure is the one to report."""
    import torch.distributed as dist

    store, others = _failure_store(), dist.get_world_size() - 1
    if store is None:
        return
    try:
        if store.check([FAILED_KEY]):
            store.add(SEEN_KEY, 1)
            return
        store.set(FAILED_KEY, text)
        deadline = time.monotonic() + ACK_WAIT_S
        while store.add(SEEN_KEY, 0) < others and time.monotonic() < deadline:
            time.sleep(ACK_POLL_S)
    except Exception:  # noqa: BLE001 - the store is gone (its host failed first): nothing to tell
        pass


def _abort() -> None:
    """Abort the process group: unlike ``destroy_process_group``, it does not wait for peers."""
    import torch.distributed as dist

    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    try:
        if abort is not None:
            abort()
            return
    except Exception:  # noqa: BLE001 - an abort that fails leaves the destroy below
        pass
    if dist.is_initialized():
        dist.destroy_process_group()
