"""Gated-SCNN's and PSPNet's wiring options: where ASPP's edge inputs are sampled, which edge
map is supervised, PSPNet's auxiliary loss. Every default is the zoo's model, unchanged."""
import math

import pytest
import torch
import torch.nn.functional as F

from course_utils.models import adaptive_avg_pool2d, build_model, downsample_aligned, sobel_magnitude

from helpers import small

pytestmark = pytest.mark.usefixtures("one_thread")

R2 = 2 ** -0.5          # Sobel magnitude (scaled) on either side of a one-pixel white line


def tent_reference(x, s):
    """Tent-weighted averages centred on s*i: a strided convolution with the (s - |d|) outer
    product, zero padding, divided by the same convolution of ones (the weights inside the image)."""
    t = torch.tensor([s - abs(d) for d in range(-(s - 1), s)], dtype=x.dtype)
    k = torch.outer(t, t)[None, None].repeat(x.shape[1], 1, 1, 1)
    conv = lambda v: F.conv2d(v, k, stride=s, padding=s - 1, groups=x.shape[1])  # noqa: E731
    return conv(x) / conv(torch.ones_like(x))


@pytest.mark.parametrize("s", [1, 2, 4, 16])
@pytest.mark.parametrize("h, w", [(64, 64), (33, 70), (1, 5), (17, 16)])
def test_downsample_aligned_is_a_tent_average_centred_on_the_grid(s, h, w):
    torch.manual_seed(0)
    x = torch.rand(2, 3, h, w, dtype=torch.float64)
    got = downsample_aligned(x, s)
    assert got.shape == (2, 3, math.ceil(h / s), math.ceil(w / s))
    torch.testing.assert_close(got, tent_reference(x, s) if s > 1 else x)
    # A constant stays constant, also in the border cells.
    torch.testing.assert_close(downsample_aligned(torch.full((1, 1, h, w), 0.3, dtype=torch.float64), s),
                               torch.full((1, 1) + got.shape[2:], 0.3, dtype=torch.float64))


def test_a_line_lands_on_its_cell_aligned_and_half_a_stride_late_adaptive():
    # A one-pixel line at row r, for every r in the interior: the centroid of the pooled
    # column, in input pixels (cell i at s*i), is r itself with "aligned"; adaptive pooling
    # puts every r in s*i .. s*i + s-1 into cell i, so on average it reports the line
    # (s - 1) / 2 = 7.5 px above where it is.
    s, h = 16, 128
    rows = torch.arange(h // s, dtype=torch.float64) * s
    aligned_err, adaptive_err = [], []
    for r in range(s, h - s):
        x = torch.zeros(1, 1, h, 8, dtype=torch.float64)
        x[..., r, :] = 1.0
        for pool, errs in ((lambda v: downsample_aligned(v, s), aligned_err),
                           (lambda v: adaptive_avg_pool2d(v, (h // s, 1)), adaptive_err)):
            col = pool(x)[0, 0, :, 0]
            errs.append(float((col * rows).sum() / col.sum()) - r)
    assert max(abs(e) for e in aligned_err) < 1e-9
    assert sum(adaptive_err) / len(adaptive_err) == pytest.approx(-(s - 1) / 2)
    # A line at r = s*i reaches cell i alone with "aligned" (the tent is 0 at the neighbours' centres).
    x = torch.zeros(1, 1, h, 8, dtype=torch.float64)
    x[..., 3 * s, :] = 1.0
    torch.testing.assert_close(downsample_aligned(x, s)[0, 0, :, 0], torch.eye(h // s, dtype=torch.float64)[3] / s)


def captured(model, module, images, pick):
    """What ``pick(args, output)`` takes from ``module``'s call during ``model.predict_all(images)``
    (a forward hook), and the result of ``predict_all``."""
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(pick(args, out).detach().clone()))
    try:
        with torch.no_grad():
            result = model.predict_all(images)
    finally:
        handle.remove()
    return seen[0], result


def aspp_extra_input(model, images):
    """The edge input ``extra`` the model's ASPP receives (N, 2, h5, w5), and ``predict_all``."""
    return captured(model, model.aspp, images, lambda args, out: args[1])


@pytest.mark.parametrize("edge_pool, expected", [
    # Sobel puts the line's gradient R2 on rows r - 1 and r + 1 (r = 32, cell 2 at stride 16).
    # aligned: tent weights (16 - |d|) / 256: rows 31 and 33 give 15/256 each to cell 2 and
    # 1/256 to cells 1 and 3 -> the peak on cell 2, symmetric.
    ("aligned", [0.0, 1 / 256, 30 / 256, 1 / 256]),
    # adaptive: cell i averages rows 16i .. 16i + 15: row 31 goes to cell 1, row 33 to cell 2,
    # so the line shows up between cells 1 and 2, half a stride above row 32.
    ("adaptive", [0.0, 1 / 16, 1 / 16, 0.0]),
])
def test_gscnn_aspp_sees_a_horizontal_line_at_its_row(edge_pool, expected):
    torch.manual_seed(0)
    model = small("gscnn", output_stride=16, edge_pool=edge_pool).eval()
    assert model.backbone.strides["c5"] == 16
    images = torch.zeros(1, 3, 64, 64)
    images[..., 32, :] = 1.0
    extra, _ = aspp_extra_input(model, images)
    assert extra.shape == (1, 2, 4, 4)
    grad = extra[0, 1]                                        # channel 1: the image gradient
    want = torch.tensor(expected)[:, None].expand(4, 4) * R2
    torch.testing.assert_close(grad, want, atol=1e-6, rtol=1e-5)


def test_gscnn_defaults_are_the_papers_wiring():
    model = small("gscnn")
    assert (model.edge_pool, model.edge_output, model.dual_boundary) == ("aligned", "shape", "paper")
    assert model.fuse is None
    loss = model.criterion()
    assert loss.dual_boundary == "paper" and small("gscnn", dual_boundary="course").criterion().dual_boundary == "course"


def test_bad_dual_boundary_is_refused():
    with pytest.raises(ValueError, match="dual_boundary.*'course', 'paper'"):
        small("gscnn", dual_boundary="Paper")


def test_gscnn_adaptive_edge_pool_is_adaptive_average_pooling():
    torch.manual_seed(0)
    model = small("gscnn", edge_pool="adaptive").eval()
    images = torch.rand(1, 3, 45, 63)
    extra, result = aspp_extra_input(model, images)
    want = F.adaptive_avg_pool2d(torch.cat([torch.sigmoid(result["edge"]), sobel_magnitude(images)], 1), (3, 4))
    torch.testing.assert_close(extra, want)


def test_bad_edge_pool_is_refused():
    with pytest.raises(ValueError, match="edge_pool.*'adaptive', 'aligned'"):
        small("gscnn", edge_pool="bilinear")


def shape_logits_and_result(model, images):
    """The shape stream's own logits (at its stride), and ``predict_all``."""
    return captured(model, model.shape_stream, images, lambda args, out: out[0])


def test_gscnn_shape_edge_output_is_the_shape_streams_map_and_ignores_the_image_gradient(monkeypatch):
    import course_utils.models.gscnn as gscnn_module
    torch.manual_seed(0)
    model = small("gscnn", edge_output="shape", edge_pool="adaptive").eval()
    assert model.fuse is None
    images = torch.rand(1, 3, 45, 63)
    shape, result = shape_logits_and_result(model, images)
    # "edge" is the shape stream's stride-2 map, bilinear with sample i on input pixel 2i.
    assert shape.shape == (1, 1, 23, 32)
    torch.testing.assert_close(result["edge"][..., ::2, ::2], shape)
    torch.testing.assert_close(result["edge"][..., 1:-1:2, 1:-1:2],
                               F.avg_pool2d(shape, 2, stride=1), rtol=1e-5, atol=1e-6)
    # ASPP gets sigmoid(edge) and the Sobel gradient, pooled (here the "adaptive" pooling).
    extra, _ = aspp_extra_input(model, images)
    want = F.adaptive_avg_pool2d(torch.cat([torch.sigmoid(result["edge"]), sobel_magnitude(images)], 1), (3, 4))
    torch.testing.assert_close(extra, want)
    # Change the image gradient the model sees: the edge output stays, the segmentation moves.
    monkeypatch.setattr(gscnn_module, "sobel_magnitude", lambda x: torch.rand_like(x[:, :1]))
    with torch.no_grad():
        other = model.predict_all(images)
    assert torch.equal(other["edge"], result["edge"])
    assert not torch.allclose(other["out"], result["out"])


def test_gscnn_fused_edge_output_is_unchanged_and_reads_the_image_gradient(monkeypatch):
    import course_utils.models.gscnn as gscnn_module
    torch.manual_seed(0)
    model = small("gscnn", edge_output="fused").eval()
    assert model.edge_output == "fused"
    with torch.no_grad():
        model.fuse.weight.copy_(torch.tensor([0.7, -2.0]).view(1, 2, 1, 1))
        model.fuse.bias.fill_(0.25)
    images = torch.rand(1, 3, 45, 63)
    shape, result = shape_logits_and_result(model, images)
    # The fused map on the shape stream's samples (input pixels 2i), by hand.
    want = 0.7 * shape - 2.0 * sobel_magnitude(images)[..., ::2, ::2] + 0.25
    torch.testing.assert_close(result["edge"][..., ::2, ::2], want, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(gscnn_module, "sobel_magnitude", lambda x: torch.rand_like(x[:, :1]))
    with torch.no_grad():
        assert not torch.allclose(model.predict_all(images)["edge"], result["edge"])


def test_gscnn_options_keep_the_default_state_dict_and_fused_adds_only_fuse():
    torch.manual_seed(0)
    default = small("gscnn").state_dict()
    torch.manual_seed(0)
    explicit = small("gscnn", edge_pool="aligned", edge_output="shape", dual_boundary="course").state_dict()
    assert list(explicit) == list(default)
    assert all(torch.equal(explicit[k], default[k]) for k in default)
    fused = small("gscnn", edge_output="fused", edge_pool="adaptive").state_dict()
    assert set(fused) - set(default) == {"fuse.weight", "fuse.bias"} and set(default) <= set(fused)


def test_gscnn_shape_edge_output_trains_every_parameter():
    # No parameter is left without a gradient (DDP refuses unused parameters by default).
    torch.manual_seed(0)
    model = small("gscnn", num_classes=3, edge_output="shape", edge_pool="aligned").train()
    images = torch.rand(2, 3, 40, 48)
    labels = (images[:, 0] * 3).long().clamp(max=2)
    model.criterion()(model(images), labels).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_bad_edge_output_is_refused():
    with pytest.raises(ValueError, match="edge_output.*'fused', 'shape'"):
        small("gscnn", edge_output="canny")


# -- PSPNet's auxiliary loss --------------------------------------------------------------

def test_pspnet_aux_output_only_in_training_with_aux():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 45, 63)
    plain, with_aux = small("pspnet").train(), small("pspnet", aux=True).train()
    assert plain.aux is None and set(plain(x)) == {"out"}
    seen = []
    with_aux.aux.register_forward_hook(lambda m, args, out: seen.append(out.detach().clone()))
    out = with_aux(x)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (2, 5, 45, 63)
    # "aux" is the auxiliary head's stride-8 map on c4, upsampled with sample i on pixel 8i.
    s4 = with_aux.backbone.strides["c4"]
    assert s4 == 8 and seen[0].shape == (2, 5, 6, 8)
    torch.testing.assert_close(out["aux"][..., ::s4, ::s4], seen[0])
    with_aux.eval()
    with torch.no_grad():
        logits = with_aux(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5, 45, 63)
    assert len(seen) == 1                     # the auxiliary head does not run in eval mode


def test_pspnet_aux_loss_is_ce_plus_0_4_ce_aux_by_hand():
    from course_utils.losses import AuxiliaryCrossEntropy, SegmentationCrossEntropy
    torch.manual_seed(0)
    model = small("pspnet", aux=True).train()
    assert isinstance(small("pspnet").criterion(), SegmentationCrossEntropy)
    loss_fn = model.criterion(ignore_index=255)
    assert isinstance(loss_fn, AuxiliaryCrossEntropy) and loss_fn.aux_weight == 0.4
    images = torch.rand(2, 3, 32, 40)
    labels = torch.randint(0, 5, (2, 32, 40))
    labels[0, :5] = 255                       # void pixels count in neither term
    out = model(images)
    loss = loss_fn(out, labels)
    want = (F.cross_entropy(out["out"], labels, ignore_index=255)
            + 0.4 * F.cross_entropy(out["aux"], labels, ignore_index=255))
    torch.testing.assert_close(loss, want)
    assert set(loss_fn.last) == {"seg", "aux"}
    loss.backward()
    assert all(p.grad is not None for p in model.aux.parameters())


def test_auxiliary_cross_entropy_by_hand():
    from course_utils.losses import AuxiliaryCrossEntropy
    # Two pixels, two classes. out: logits (0, ln 3) -> p(class 1) = 3/4; aux: (0, 0) -> 1/2.
    out = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).expand(1, 2, 1, 2)
    aux = torch.zeros(1, 2, 1, 2)
    labels = torch.tensor([[[1, 255]]])
    got = AuxiliaryCrossEntropy(aux_weight=0.5)({"out": out, "aux": aux}, labels)
    assert float(got) == pytest.approx(-math.log(0.75) + 0.5 * math.log(2.0))
    with pytest.raises(ValueError, match="aux"):
        AuxiliaryCrossEntropy()({"out": out}, labels)
    with pytest.raises(ValueError, match="aux_weight"):
        AuxiliaryCrossEntropy(aux_weight=-1.0)


def test_fit_trains_pspnet_with_the_auxiliary_loss_when_none_is_given(monkeypatch):
    from course_utils.losses import AuxiliaryCrossEntropy
    from torch.utils.data import DataLoader, TensorDataset

    from course_utils.training import fit
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32)
    labels = (images[:, 0] > 0.5).long()
    loader = DataLoader(TensorDataset(images, labels), batch_size=2)
    model = small("pspnet", num_classes=2, aux=True)
    calls = []
    real_call = AuxiliaryCrossEntropy.__call__

    def spy(self, output, labels):
        total = real_call(self, output, labels)
        calls.append((sorted(output), self.aux_weight))
        return total

    monkeypatch.setattr(AuxiliaryCrossEntropy, "__call__", spy)
    history = fit(model, loader, epochs=1, device="cpu", progress=False)
    assert history.steps == 2 and calls == [(["aux", "out"], 0.4)] * 2


def test_pspnet_aux_false_keeps_the_state_dict_and_aux_true_only_adds_the_head():
    torch.manual_seed(0)
    default = small("pspnet").state_dict()
    torch.manual_seed(0)
    explicit = small("pspnet", aux=False).state_dict()
    assert list(explicit) == list(default) and all(torch.equal(explicit[k], default[k]) for k in default)
    torch.manual_seed(0)
    model = build_model("pspnet", 5, width=8, aux=True)
    assert model.build_config == {"name": "pspnet", "num_classes": 5, "options": {"width": 8, "aux": True}}
    sd = model.state_dict()
    assert [k for k in sd if k not in default] == [k for k in sd if k.startswith("aux.")] != []
    assert all(torch.equal(sd[k], default[k]) for k in default)   # the aux head is built last


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_aux_is_refused(value):
    with pytest.raises(ValueError, match="aux must be True or False"):
        build_model("pspnet", 5, aux=value)
