"""PSPNet, DeepLabV3/V3+ and Gated-SCNN (the models with context modules): sizes, batch size 1, output stride, ASPP rates, gates."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.utils.data import DataLoader, TensorDataset

from course_utils.losses import GSCNNLoss
from course_utils.models import BilinearUpsample, aspp_rates, build_model, sobel_magnitude, upsample_aligned
from course_utils.models.pspnet import PyramidPooling
from course_utils.training import fit

NEW = ["pspnet", "deeplabv3", "deeplabv3plus", "gscnn"]
SIZES = [(64, 64), (97, 131), (33, 7), (1, 1)]


from helpers import small

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_new_models_are_registered():
    from course_utils.models import available_models
    assert set(NEW) <= set(available_models())


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_is_input_sized_at_every_output_stride(name, output_stride):
    torch.manual_seed(0)
    model = small(name, output_stride=output_stride).eval()
    assert model.backbone.strides["c5"] == output_stride
    with torch.no_grad():
        for h, w in SIZES:
            out = model(torch.rand(2, 3, h, w))
            assert isinstance(out, torch.Tensor) and out.shape == (2, 5, h, w), (h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["deeplabv3", "deeplabv3plus", "pspnet", "gscnn"])
def test_pooled_branches_train_at_batch_one_on_a_one_pixel_map(name):
    # 16x16 at output stride 32: the ASPP / pyramid sees a 1x1 map. The image-pooling and
    # pyramid branches have no BatchNorm, so with GroupNorm elsewhere batch size 1 trains.
    model = small(name, norm="group", output_stride=32).train()
    out = model(torch.rand(1, 3, 16, 16))["out"]
    out.sum().backward()
    assert out.shape == (1, 5, 16, 16)
    bn = [m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not bn


def test_aspp_rates_scale_with_the_output_stride():
    assert aspp_rates(16) == (6, 12, 18)
    assert aspp_rates(8) == (12, 24, 36)
    assert aspp_rates(32) == (3, 6, 9)
    for os_, rates in ((16, (6, 12, 18)), (8, (12, 24, 36))):
        model = small("deeplabv3", output_stride=os_)
        assert model.aspp.rates == rates
        dil = [b[0].dilation[0] for b in model.aspp.branches[1:]]
        assert tuple(dil) == rates
    assert small("deeplabv3plus", rates=(1, 2, 3)).aspp.rates == (1, 2, 3)


def test_deeplabv3plus_projects_low_level_features_to_48_channels():
    model = small("deeplabv3plus")
    assert model.decoder.project[0].out_channels == 48
    assert model.decoder.project[0].in_channels == model.backbone.channels["c2"]
    assert small("deeplabv3plus", low_level_channels=12).decoder.project[0].out_channels == 12


def test_pyramid_pooling_bins_summarise_cells():
    torch.manual_seed(0)
    ppm = PyramidPooling(8, bins=(1, 2, 3, 6)).eval()
    x = torch.rand(2, 8, 12, 12)
    with torch.no_grad():
        y = ppm(x)
    assert y.shape == (2, 8 + 4 * 2, 12, 12)
    torch.testing.assert_close(y[:, :8], x)
    # Bin 1 is one vector per image, the same at every pixel.
    b1 = y[:, 8:10]
    assert torch.allclose(b1, b1[..., :1, :1].expand_as(b1))
    # Bin 2's pooled map is constant over each quadrant's interior (interpolated in between).
    with torch.no_grad():
        pooled = ppm.branches[1](x)
    assert pooled.shape == (2, 2, 2, 2)
    torch.testing.assert_close(y[:, 10:12, 0, 0], pooled[..., 0, 0])


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
@pytest.mark.parametrize("size", [(16, 24), (13, 7), (1, 1)])
def test_upsample_aligned_matches_the_fcn_bilinear_upsampling(stride, size):
    # Independent reference: the transposed convolution initialised to the bilinear kernel.
    h, w = size
    x = torch.randn(1, 3, math.ceil(h / stride), math.ceil(w / stride), dtype=torch.float64)
    ref_layer = BilinearUpsample(3, stride).double()
    ref_layer.reset_parameters()
    with torch.no_grad():
        ref = ref_layer(x, (h, w))
    y = upsample_aligned(x, (h, w), stride)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(y[..., ::stride, ::stride], x)   # sample i sits on pixel s * i


def test_upsample_aligned_refuses_a_map_too_small():
    with pytest.raises(ValueError, match="too small"):
        upsample_aligned(torch.zeros(1, 1, 2, 2), (9, 4), 4)


def test_sobel_magnitude_matches_scipy():
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 11, 9)).astype(np.float64)
    got = sobel_magnitude(torch.from_numpy(img))
    assert got.shape == (2, 1, 11, 9)
    for i in range(2):
        grey = img[i].mean(0)
        gx = ndimage.sobel(grey, axis=1, mode="nearest")
        gy = ndimage.sobel(grey, axis=0, mode="nearest")
        np.testing.assert_allclose(got[i, 0].numpy(), np.hypot(gx, gy) / (4 * np.sqrt(2)), atol=1e-12)
    # A black/white step reaches the maximum 1/sqrt(2) (one direction at full strength).
    step = torch.zeros(1, 3, 5, 6)
    step[..., 3:] = 1
    assert torch.isclose(sobel_magnitude(step).max(), torch.tensor(2 ** -0.5))
    assert sobel_magnitude(torch.full((1, 3, 4, 4), 0.3)).abs().max() < 1e-6


def test_gscnn_returns_edges_in_training_and_gates_in_unit_interval():
    torch.manual_seed(0)
    model = small("gscnn").train()
    out = model(torch.rand(2, 3, 45, 63))
    assert set(out) == {"out", "edge"}
    assert out["out"].shape == (2, 5, 45, 63) and out["edge"].shape == (2, 1, 45, 63)
    assert len(model.gates) == 3
    for g in model.gates:
        assert g.shape == (2, 1, 23, 32)          # the shape stream runs at stride 2
        assert float(g.min()) >= 0.0 and float(g.max()) <= 1.0
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 45, 63)).shape == (1, 5, 45, 63)
        both = model.predict_all(torch.rand(1, 3, 45, 63))
    assert both["edge"].shape == (1, 1, 45, 63) and len(both["gates"]) == 3


def test_gscnn_shape_stream_at_stride_4():
    torch.manual_seed(0)
    model = small("gscnn", shape_level="c2").train()
    out = model(torch.rand(2, 3, 45, 63))
    assert out["out"].shape == (2, 5, 45, 63) and out["edge"].shape == (2, 1, 45, 63)
    assert [tuple(g.shape) for g in model.gates] == [(2, 1, 12, 16)] * 3    # ceil(45 / 4), ceil(63 / 4)
    # A quarter of the pixels through the same layers, and the same parameters.
    c1 = small("gscnn")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in c1.parameters())


def test_gscnn_gates_depend_on_the_regular_stream():
    # The gate reads the regular stream: changing its 1x1 reduction changes alpha.
    torch.manual_seed(0)
    model = small("gscnn").eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a = model.predict_all(x)["gates"][0].clone()
        model.shape_stream.reduce[0].bias += 5.0
        model.shape_stream.gated[0].gate.weight[:, -1] = 1.0
        b = model.predict_all(x)["gates"][0]
    assert not torch.allclose(a, b)


def test_fit_trains_gscnn_with_its_own_loss_when_none_is_given(monkeypatch):
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32)
    labels = (images[:, 0] > 0.5).long()
    loader = DataLoader(TensorDataset(images, labels), batch_size=2)
    model = small("gscnn", num_classes=2)
    calls = []
    real_call = GSCNNLoss.__call__

    def spy(self, output, labels):
        total = real_call(self, output, labels)
        calls.append(self.last)
        return total

    monkeypatch.setattr(GSCNNLoss, "__call__", spy)
    history = fit(model, loader, epochs=1, device="cpu", progress=False)
    assert history.steps == 2 and len(calls) == 2
    assert all(set(parts) == {"seg", "edge", "dual"} and all(np.isfinite(v) for v in parts.values())
               for parts in calls)


@pytest.mark.parametrize("name, kwargs, match", [
    ("pspnet", {"bins": (0, 2)}, "bins"),
    ("deeplabv3", {"rates": (0, 2)}, "rates"),
    ("deeplabv3plus", {"low_level_channels": 0}, "low_level_channels"),
    ("gscnn", {"shape_channels": -1}, "shape_channels"),
    ("gscnn", {"shape_level": "c3"}, "shape_level"),
    ("deeplabv3", {"output_stride": 4}, "output_stride"),
    ("gscnn", {"colour": 1}, "colour"),
])
def test_bad_options_are_refused(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, 3, **kwargs)
