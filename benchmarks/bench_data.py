"""How fast augmented SynthCity batches become ready to train, per path, as ratios measured here.

* per sample (the CPU path): ``make_loader`` on the CPU, each scene converted to float and
  flipped/scaled/cropped on its own, as notebook 06's CPU plan (batch 4, shuffled) and the
  command line (batch 8, ``DistributedSampler``, ``--workers auto`` = 0 on a CPU) make
  them; read the way ``fit`` reads them (``batches()``: one thread, then channels_last).
* whole batch on the CPU: the same batches through ``augment_on="device"`` with the CPU
  as the device. Not used on CPUs (the per-sample path's floats are what the stored
  notebooks were made from); shown to compare the two ways of computing the same thing.
* host side of the GPU path: what the training process still does per batch when the
  GPU augments (collate 8-bit scenes, draw each sample's numbers, build the small index
  and weight tables, launch the operations), measured with PyTorch's "meta" device,
  which runs no arithmetic: the rate one CPU thread could feed a GPU at.
* on CUDA, when there is one: the whole GPU path, copy and augmentation included.

Rates are the best of several passes (a shared machine only ever slows a pass down), in
wall-clock time and in this thread's CPU time (which a busy machine disturbs less; the
batches are built on this one thread, as ``batches()`` builds them for ``fit``).
"""
import time

import torch

from course_utils.datasets import SynthCity
from course_utils.training import make_loader
from course_utils.training.batches import batches, set_sampler_epoch

SIZE, SCENES, PASSES = 128, 256, 5


def loader_rate(loader, passes: int = PASSES, device=None) -> tuple[float, float]:
    """(wall, CPU) images/s that ``fit`` would receive from ``loader``, best of ``passes`` epochs."""
    for _ in batches(loader):       # warm-up: caches, allocator, the resampling tables
        pass
    wall = cpu = 0.0
    for epoch in range(1, passes + 1):
        set_sampler_epoch(loader, epoch)
        n, start, start_cpu = 0, time.perf_counter(), time.thread_time()
        for images, _ in batches(loader):
            if device is not None:      # as fit moves them (a no-op for batches already there)
                images = images.to(device, non_blocking=device.type == "cuda")
            images = images.contiguous(memory_format=torch.channels_last)   # as fit lays them out
            n += images.shape[0]
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = max(wall, n / (time.perf_counter() - start))
        cpu = max(cpu, n / max(time.thread_time() - start_cpu, 1e-9))
    return wall, cpu


def cli_loader(data, batch, device, augment_on):
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0,
                                                  drop_last=True)
    return make_loader(data, batch, sampler=sampler, device=device, num_workers=0, seed=0, augment_on=augment_on)


def main():
    data = SynthCity(SCENES, SIZE, seed=0, augment=True)
    cpu, meta = torch.device("cpu"), torch.device("meta")
    plans = [("notebook 06 CPU plan, batch 4", lambda on: make_loader(data, 4, shuffle=True, device=cpu, seed=0,
                                                                      augment_on=on)),
             ("command line on a CPU, batch 8", lambda on: cli_loader(data, 8, cpu, on))]
    print(f"augmented SynthCity {SIZE} px into training-ready batches: images/s, wall (this thread's CPU time), "
          f"best of {PASSES} passes")
    print(f"{'':<32}{'per sample':>17}{'whole batch':>17}{'ratio':>12}")
    for name, make in plans:
        per_sample = loader_rate(make("loader"))
        whole = loader_rate(make("device"))
        print(f"{name:<32}{_pair(per_sample):>17}{_pair(whole):>17}"
              f"{whole[0] / per_sample[0]:>6.2f} ({whole[1] / per_sample[1]:.2f})")
    print("the CPU trains from the per-sample path (make_loader's augment_on='auto' keeps it there)")
    for batch in (8, 64):
        host = loader_rate(make_loader(data, batch, shuffle=True, device=meta, seed=0, augment_on="device"),
                           device=meta)
        print(f"GPU path, host side only (device 'meta'), batch {batch}: {_pair(host)} images/s")

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        for batch in (8, 64):
            per_sample = loader_rate(cli_loader(data, batch, gpu, "loader"), device=gpu)
            on_gpu = loader_rate(cli_loader(data, batch, gpu, "auto"), device=gpu)
            print(f"CUDA, batch {batch}, no workers: per sample {_pair(per_sample)} images/s, augmented on the GPU "
                  f"{_pair(on_gpu)} images/s = {on_gpu[0] / per_sample[0]:.1f} x (wall)")
    else:
        print("no CUDA here: the GPU path's own rate is not measured")


def _pair(rates) -> str:
    return f"{rates[0]:.0f} ({rates[1]:.0f})"


if __name__ == "__main__":
    main()
