"""The ops written for speed and portability give the results of the ones they replace.

* ``replicate_pad`` (slices and ``cat``) equals ``F.pad(mode="replicate")``, values and
  gradients, so the models' outputs (and the committed zoo weights' scores) do not change;
  it exists because the replicate-pad backward fails inside ``torch.compile``.
* ``adaptive_avg_pool2d`` equals ``F.adaptive_avg_pool2d`` for every size, also through the
  averaging-matrix path that MPS needs when the size is not a multiple of the bins.
* Every model runs on the meta device (no CPU tensor made inside forward, no host sync).
* A compiled model trains like the eager one.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from course_utils.models import adaptive_avg_pool2d, available_models, replicate_pad
from course_utils.models.backbone import pooling_matrix, upsample_aligned
from course_utils.training import criterion_for

from helpers import small

pytestmark = pytest.mark.usefixtures("one_thread")


@settings(max_examples=40)
@given(st.integers(1, 7), st.integers(1, 7), st.tuples(*[st.integers(0, 3)] * 4), st.integers(0, 2**31 - 1))
def test_replicate_pad_is_f_pad_replicate(h, w, pads, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, h + pads[2] + pads[3], w + pads[0] + pads[1], generator=g, dtype=torch.float64)
    ours = replicate_pad(x, *pads)
    ref = F.pad(x, pads, mode="replicate")
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    g_ours, = torch.autograd.grad((ours * weights).sum(), x)
    g_ref, = torch.autograd.grad((ref * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


def old_upsample_aligned(x, size, stride):
    """upsample_aligned as first written, with F.pad(mode="replicate")."""
    h, w = size
    if stride > 1:
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        rows, cols = (x.shape[-2] - 1) * stride + 1, (x.shape[-1] - 1) * stride + 1
        x = F.interpolate(x, size=(rows, cols), mode="bilinear", align_corners=True)
    return x[..., :h, :w]


@pytest.mark.parametrize("stride", [1, 2, 4, 16])
@pytest.mark.parametrize("size", [(128, 128), (97, 131), (5, 3)])
def test_upsample_aligned_is_unchanged(stride, size):
    x = torch.randn(2, 4, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    torch.testing.assert_close(upsample_aligned(x, size, stride), old_upsample_aligned(x, size, stride),
                               rtol=0, atol=0)


@settings(max_examples=60)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_adaptive_avg_pool_matches_pytorch_for_any_size(h, w, oh, ow, seed):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = F.adaptive_avg_pool2d(x, (oh, ow))
    torch.testing.assert_close(adaptive_avg_pool2d(x, (oh, ow)), ref, rtol=1e-12, atol=1e-12)
    # The averaging-matrix path (what runs on MPS for sizes that are not multiples), forced.
    via_matrices = pooling_matrix(h, oh, x.dtype) @ x @ pooling_matrix(w, ow, x.dtype).T
    torch.testing.assert_close(via_matrices, ref, rtol=1e-12, atol=1e-12)


def test_pooling_matrix_by_hand():
    # 5 cells into 3 bins: PyTorch's bins are [0, 2), [1, 4), [3, 5) (they overlap).
    expected = torch.tensor([[1 / 2, 1 / 2, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 1 / 2, 1 / 2]])
    torch.testing.assert_close(pooling_matrix(5, 3), expected)


def test_pspnet_at_128_px_pools_a_16x16_map_into_3x3_and_6x6_bins_without_adaptive_pooling(monkeypatch):
    # MPS refuses F.adaptive_avg_pool2d when 16 is not a multiple of the bins (3, 6): make
    # that call fail the same way here and check PSPNet never makes it.
    original = F.adaptive_avg_pool2d

    def strict(x, output_size):
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
        if x.shape[-2] % oh or x.shape[-1] % ow:
            raise RuntimeError("Adaptive pool MPS: input sizes must be divisible by output sizes")
        return original(x, output_size)

    monkeypatch.setattr(F, "adaptive_avg_pool2d", strict)
    model = small("pspnet", output_stride=8).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 128, 128)).shape == (1, 5, 128, 128)


@pytest.mark.parametrize("name", available_models())
def test_every_model_trains_a_step_on_the_meta_device(name):
    # The meta device has shapes but no data: any tensor made on the CPU inside forward, or
    # any value read back to Python, fails here.
    model = small(name).to("meta").train()
    x = torch.empty(2, 3, 40, 52, device="meta")
    y = torch.empty(2, 40, 52, dtype=torch.long, device="meta")
    out = model(x)
    loss = criterion_for(model, 255)(out, y)
    loss.backward()
    assert out["out"].shape == (2, 5, 40, 52) and out["out"].device.type == "meta"
    assert all(p.grad is None or p.grad.device.type == "meta" for p in model.parameters())


@pytest.mark.slow
def test_a_compiled_model_trains_like_the_eager_one():
    # fcn8s has the replicate pads that broke torch.compile's backward pass. A few SGD
    # steps from the same weights on the same batches: the same losses up to rounding.
    # Compiling takes a minute or more on 2 cores, hence the mark
    # (deselect with -m 'not slow'); benchmarks/bench_models.py compiles all three models.
    torch.manual_seed(0)
    batches = [(torch.rand(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))) for _ in range(3)]
    losses = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(1)
        model = small("fcn8s", dropout=0.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        run = torch.compile(model) if mode == "compiled" else model
        losses[mode] = []
        for x, y in batches:
            opt.zero_grad()
            loss = F.cross_entropy(run(x)["out"], y)
            loss.backward()
            opt.step()
            losses[mode].append(float(loss))
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4)
    assert losses["eager"][-1] < losses["eager"][0]
