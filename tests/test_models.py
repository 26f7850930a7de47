"""course_utils.models: shapes for any input size, batch size 1, bilinear init, convolutionalisation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from course_utils.training import criterion_for
from course_utils import upsampling as up
from course_utils.models import (BilinearUpsample, ResNetBackbone, available_models, build_model,
                                 convolutionalize)

NAMES = available_models()
SIZES = [(64, 64), (97, 131), (33, 7), (1, 1), (256, 512)]


from helpers import assert_same_values_and_gradients, small

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_the_fcn_family_is_registered():
    assert {"fcn32s", "fcn16s", "fcn8s"} <= set(NAMES)


# -- the self test: does the architecture change with the input size? -----------------------
@pytest.mark.parametrize("name", NAMES)
def test_output_is_input_sized_and_parameters_do_not_change(name):
    torch.manual_seed(0)
    model = small(name).eval()
    count, shapes = n_params(model), {k: v.shape for k, v in model.state_dict().items()}
    with torch.no_grad():
        for h, w in SIZES:
            out = model(torch.rand(2, 3, h, w))
            assert out.shape == (2, 5, h, w), (h, w)
            assert torch.isfinite(out).all()
    assert n_params(model) == count
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_batch_size_one_trains_a_step(name, norm):
    torch.manual_seed(0)
    model = small(name, norm=norm).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(1, 3, 97, 131), torch.randint(0, 5, (1, 97, 131))
    output = model(x)
    # Each model's own loss: Gated-SCNN's edge output would stay untouched by CE alone.
    loss = criterion_for(model, 255)(output, y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert sum(changed) > len(changed) // 2


def test_batchnorm_at_batch_one_needs_more_than_one_pixel_groupnorm_does_not():
    # 16x16 -> the stride-32 features are 1x1: BatchNorm in training mode then has a single
    # value per channel to normalise and PyTorch refuses; GroupNorm normalises over channels.
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        small("fcn8s", norm="batch").train()(x)
    out = small("fcn8s", norm="group").train()(x)["out"]
    out.sum().backward()
    assert out.shape == (1, 5, 16, 16)
    # In eval mode BatchNorm uses its running statistics, so any size works.
    assert small("fcn8s", norm="batch").eval()(x).shape == (1, 5, 16, 16)


# -- transposed convolutions initialised to bilinear interpolation ------------------------------
@settings(max_examples=25)
@given(h=st.integers(1, 9), w=st.integers(1, 9), f=st.integers(1, 8), c=st.integers(1, 3),
       depthwise=st.booleans(), seed=st.integers(0, 2**16))
def test_bilinear_init_is_zero_insert_upsampling_with_replicated_edges(h, w, f, c, depthwise, seed):
    x = np.random.default_rng(seed).normal(size=(c, h, w))
    layer = BilinearUpsample(c, f, depthwise=depthwise).double()
    layer.reset_parameters()   # the kernel again, now in float64 (1/5 is not exact in float32)
    with torch.no_grad():
        y = layer(torch.from_numpy(x)[None], (f * h, f * w))[0].numpy()
    for ch in range(c):
        ref = up.upsample_zero_insert(x[ch], f, edge="replicate")
        np.testing.assert_allclose(y[ch], ref, atol=1e-12)


@pytest.mark.parametrize("f", [2, 4, 8, 32])
def test_bilinear_init_against_interpolate_on_a_ramp_and_a_constant(f):
    h, w = 5, 7
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ramp = torch.from_numpy(2.0 * rows - 3.0 * cols + 1.0)[None, None]
    layer = BilinearUpsample(1, f).double()
    layer.reset_parameters()
    with torch.no_grad():
        y = layer(ramp, (f * h, f * w))
        ones = layer(torch.ones(1, 1, h, w, dtype=torch.float64), (f * h, f * w))
    # On the sample grid bilinear interpolation is align_corners=True interpolation...
    n_h, n_w = (h - 1) * f + 1, (w - 1) * f + 1
    ref = F.interpolate(ramp, size=(n_h, n_w), mode="bilinear", align_corners=True)
    torch.testing.assert_close(y[..., :n_h, :n_w], ref, rtol=0, atol=1e-12)
    # ...of a ramp is the ramp itself at fractional coordinates, and past the last sample
    # the replicated edge holds the border value.
    fine_r = np.minimum(np.arange(f * h) / f, h - 1)[:, None]
    fine_c = np.minimum(np.arange(f * w) / f, w - 1)[None, :]
    np.testing.assert_allclose(y[0, 0].numpy(), 2.0 * fine_r - 3.0 * fine_c + 1.0, atol=1e-12)
    torch.testing.assert_close(ones, torch.ones_like(ones), rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), f=st.sampled_from([2, 3, 4, 5, 8, 32]), c=st.integers(1, 3),
       depthwise=st.booleans(), trim=st.integers(0, 7), seed=st.integers(0, 2**16))
def test_upsampling_with_learned_weights_is_pytorchs_transposed_convolution(h, w, f, c, depthwise, trim, seed):
    # The layer computes its output in polyphase form (f * f 2x2 convolutions and a pixel
    # shuffle); PyTorch's ConvTranspose2d on the same weights is the reference, in values
    # and in the gradients of the input and of the weights, for any target size it allows.
    g = torch.Generator().manual_seed(seed)
    layer = BilinearUpsample(c, f, depthwise=depthwise).double()
    with torch.no_grad():
        layer.up.weight.copy_(torch.randn(layer.up.weight.shape, generator=g, dtype=torch.float64))
    x = torch.randn(2, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    size = (max(1, f * h - trim % f), max(1, f * w - (trim * 3) % f))
    y = layer(x, size)
    ref = layer.up(F.pad(x, (0, 1, 0, 1), mode="replicate"))[..., :size[0], :size[1]]
    assert_same_values_and_gradients(y, ref, (x, layer.up.weight), g)


def test_full_upsampling_starts_on_the_channel_diagonal_and_learns():
    layer = BilinearUpsample(3, 2, depthwise=False)
    w = layer.up.weight
    assert w.shape == (3, 3, 3, 3) and w.requires_grad
    k = torch.as_tensor(up.bilinear_kernel(2), dtype=w.dtype)
    for i in range(3):
        for j in range(3):
            torch.testing.assert_close(w[i, j], k if i == j else torch.zeros_like(k))
    assert not BilinearUpsample(3, 2, learnable=False).up.weight.requires_grad


def test_upsampling_refuses_a_map_too_small_for_the_target():
    with pytest.raises(ValueError, match="too small"):
        BilinearUpsample(1, 2)(torch.zeros(1, 1, 3, 3), (7, 6))


def test_fcn_starts_with_zero_skip_scores_and_bilinear_upsampling():
    model = small("fcn8s")
    for conv in model.score.values():
        assert conv.weight.abs().sum() == 0 and conv.bias.abs().sum() == 0
    assert [m.factor for m in model.upsample.values()] == [2, 2, 8]
    assert [m.factor for m in small("fcn16s").upsample.values()] == [2, 16]
    assert [m.factor for m in small("fcn32s").upsample.values()] == [32]


def test_fcn8s_and_fcn16s_start_out_as_fcn32s():
    # Zero skip scores and nested bilinear grids (2x, 2x, 8x puts samples where 32x does):
    # before training the skips change nothing, exactly as the FCN paper intends.
    x = torch.rand(2, 3, 97, 131)
    outputs = {}
    for name in ("fcn32s", "fcn16s", "fcn8s"):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs[name] = small(name).eval()(x)
    torch.testing.assert_close(outputs["fcn16s"], outputs["fcn32s"], rtol=0, atol=1e-5)
    torch.testing.assert_close(outputs["fcn8s"], outputs["fcn32s"], rtol=0, atol=1e-5)


# -- convolutionalisation ------------------------------------------------------------------------
def test_a_fully_connected_classifier_becomes_a_1x1_convolution():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    conv = convolutionalize(linear)
    assert conv.kernel_size == (1, 1)
    feats = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        per_pixel = linear(feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)   # linear at every pixel
        torch.testing.assert_close(conv(feats), per_pixel, rtol=0, atol=1e-6)
        # A classifier on a pooled vector: the same scores as the conv on a 1x1 map.
        pooled = feats.mean((2, 3))
        torch.testing.assert_close(conv(pooled[..., None, None])[..., 0, 0], linear(pooled), rtol=0, atol=1e-6)


def test_a_fully_connected_layer_on_a_block_becomes_a_kxk_convolution():
    torch.manual_seed(0)
    linear = nn.Linear(3 * 2 * 3, 5)
    conv = convolutionalize(linear, (3, 2, 3))
    block = torch.randn(4, 3, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(conv(block)[..., 0, 0], linear(block.flatten(1)), rtol=0, atol=1e-6)
        big = torch.randn(1, 3, 6, 9)   # a larger input: a score map, one classifier per window
        scores = conv(big)
        assert scores.shape == (1, 5, 5, 7)
        torch.testing.assert_close(scores[0, :, 2, 4], linear(big[:, :, 2:4, 4:7].flatten(1))[0],
                                   rtol=0, atol=1e-6)


def test_convolutionalize_rejects_bad_input():
    with pytest.raises(ValueError, match="linear"):
        convolutionalize(nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match="input_shape"):
        convolutionalize(nn.Linear(12, 2), (3, 2, 3))


# -- output stride and the backbone --------------------------------------------------------------
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_output_stride_sets_the_feature_sizes(output_stride):
    backbone = ResNetBackbone(width=8, output_stride=output_stride).eval()
    h, w = 97, 131
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, h, w))
    nominal = {"c1": 2, "c2": 4, "c3": 8, "c4": 16, "c5": 32}
    for level, x in feats.items():
        stride = min(nominal[level], output_stride)
        assert backbone.strides[level] == stride
        assert x.shape[-2:] == (math.ceil(h / stride), math.ceil(w / stride)), level
        assert x.shape[1] == backbone.channels[level]
    assert backbone.feature_shapes(h, w) == {k: tuple(v.shape[-2:]) for k, v in feats.items()}
    # Dilation instead of stride: more pixels, the same weights.
    assert n_params(backbone) == n_params(ResNetBackbone(width=8))


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_fcn_still_maps_input_size_to_input_size(output_stride):
    model = small("fcn8s", output_stride=output_stride).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 45, 70)).shape == (1, 5, 45, 70)
    factors = [m.factor for m in model.upsample.values()]
    # Upsampling undoes exactly the stride left: steps within a dilated level are identities.
    assert math.prod(factors) == output_stride and factors[-1] == 8


def test_freeze_encoder_keeps_the_encoder_fixed():
    model = small("fcn8s")
    model.freeze_encoder()
    assert not any(p.requires_grad for p in model.encoder_parameters())
    assert all(p.requires_grad for p in model.decoder_parameters())
    model.train()
    assert not model.backbone.training and model.head.training   # BatchNorm statistics frozen too
    model.freeze_encoder(False)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.parameters())


# -- bad input -----------------------------------------------------------------------------------
def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="fcn8s"):
        build_model("fcn4s", 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 3, "norm": "layer"}, "norm"),
    ({"num_classes": 3, "output_stride": 4}, "output_stride"),
    ({"num_classes": 3, "width": 0}, "width"),
    ({"num_classes": 3, "depths": (1, 1)}, "depths"),
    ({"num_classes": 3, "colour": "red"}, "colour"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("fcn8s", **kwargs)


@pytest.mark.parametrize("x, match", [
    (torch.rand(3, 32, 32), "shape"),
    (torch.rand(1, 1, 32, 32), "shape"),
    (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), "floating point"),
    (np.zeros((1, 3, 32, 32), np.float32), "torch.Tensor"),
    (torch.rand(0, 3, 32, 32), "empty"),
])
def test_bad_images_are_refused(x, match):
    with pytest.raises(ValueError, match=match):
        small("fcn8s")(x)


def test_build_config_is_recorded():
    model = build_model("fcn16s", 4, width=8, norm="group")
    assert model.build_config == {"name": "fcn16s", "num_classes": 4, "options": {"width": 8, "norm": "group"}}


@pytest.mark.parametrize("name", NAMES)
def test_every_model_follows_the_output_contract(name):
    # Training mode: a dict with the logits under "out" (plus auxiliary outputs); eval mode:
    # the logits alone, the same values as "out" in eval mode's computation.
    torch.manual_seed(0)
    model = small(name)
    x = torch.rand(2, 3, 40, 52)
    out = model.train()(x)
    assert isinstance(out, dict) and out["out"].shape == (2, 5, 40, 52)
    assert set(out) == ({"out", "edge"} if name == "gscnn" else {"out"})
    with torch.no_grad():
        logits = model.eval()(x)
        assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5, 40, 52)
        assert torch.equal(logits, model.outputs(x)["out"])
