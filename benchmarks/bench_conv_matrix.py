"""The sparse conv matrix for a 256x256 input: build time as a ratio to one F.conv2d call."""
import time

import numpy as np
import torch
import torch.nn.functional as F

from course_utils import conv_matrix as cm

SIZE, KERNEL = 256, 3
BUILD_TARGET = 1.0  # seconds: building C for a demo must feel instant


def fastest(fn, repeat: int) -> float:
    """Shortest of ``repeat`` calls, in seconds.

    The minimum, not the median: a sub-millisecond conv2d on a core shared with other
    processes sometimes waits ~15 ms for its second thread, which says nothing about
    either op. Both sides of every ratio are timed the same way.
    """
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    # One thread on both sides: the matrix is built by single-threaded NumPy, and a
    # 256x256 single-channel conv2d gains nothing from a second thread on a shared
    # 2-core machine except waits for it (seen as 12-30 ms outliers).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run()
    finally:
        torch.set_num_threads(threads)


def _run():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(KERNEL, KERNEL)).astype(np.float32)
    x = rng.normal(size=(SIZE, SIZE)).astype(np.float32)
    kt, xt = torch.from_numpy(k)[None, None], torch.from_numpy(x)[None, None]
    print(f"{'stride':>6}{'build ms':>10}{'conv2d ms':>11}{'ratio':>8}{'C^T y ms':>10}"
          f"{'conv_T ms':>11}{'max |C^T y - conv_transpose2d|':>33}")
    for stride in (1, 2):
        build = fastest(lambda: cm.conv2d_matrix(k, (SIZE, SIZE), stride=stride, padding=1, sparse=True),
                        repeat=5)
        conv = fastest(lambda: F.conv2d(xt, kt, stride=stride, padding=1), repeat=20)
        c = cm.conv2d_matrix(k, (SIZE, SIZE), stride=stride, padding=1, sparse=True)
        ct = c.T.tocsr()
        y = F.conv2d(xt, kt, stride=stride, padding=1)
        op = cm.matching_output_padding(SIZE, KERNEL, stride, 1)
        ref = F.conv_transpose2d(y, kt, stride=stride, padding=1, output_padding=op)
        yr = y.numpy().ravel()
        apply_t = fastest(lambda: ct @ yr, repeat=10)
        conv_t = fastest(lambda: F.conv_transpose2d(y, kt, stride=stride, padding=1, output_padding=op),
                         repeat=20)
        err = float(np.abs(ct @ yr - ref.numpy().ravel()).max())
        verdict = "meets" if build < BUILD_TARGET and err < 1e-5 else "MISSES"
        print(f"{stride:>6}{build * 1e3:>10.1f}{conv * 1e3:>11.2f}{build / conv:>8.1f}{apply_t * 1e3:>10.2f}"
              f"{conv_t * 1e3:>11.2f}{err:>33.1e}  {verdict} (build < 1 s, error < 1e-5)")
        print(f"{'':>6}C is {c.shape[0]}x{c.shape[1]}, {c.nnz} non-zeros")
    print(f"{SIZE}x{SIZE} input, {KERNEL}x{KERNEL} kernel, padding 1, float32; ratio = build / one conv2d")
