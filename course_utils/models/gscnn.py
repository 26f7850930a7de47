"""Gated-SCNN (Takikawa, Acuna, Jampani and Fidler, ICCV 2019), written from the paper.

Two streams. The *regular stream* is an ordinary segmentation network (here the course
backbone with DeepLabV3+'s ASPP and decoder). The *shape stream* is a thin, high-resolution
network that only has to find boundaries: it starts from the backbone's stride-2 features
and alternates residual blocks with *gated convolution layers*. A gated layer looks at
the shape features ``s`` and a deeper regular-stream feature map ``r`` (reduced to one
channel and upsampled) and computes an attention map

    alpha = sigmoid(conv1x1(concat(s, r)))   in [0, 1] per pixel,

then ``s <- conv1x1(s * alpha + s)``: where the semantic features say "no boundary of
interest here" the gate closes and texture edges fade out of the shape stream.

The shape stream's boundary map, upsampled to the input, is the edge output, supervised
by a boundary loss and the dual-task regulariser (see ``course_utils.losses``), as in the
paper (Fig. 2) and its code. The image's gradient magnitude (Sobel here, computed inside
the model; Canny in the paper's code) joins only afterwards: the edge probability and the
gradient, averaged down to the ASPP's grid centred on its features, enter the ASPP as one
more branch, so the segmentation can use them. The course's earlier wiring (edge output
fused with the gradient, edge inputs pooled half a stride off, the course's dual-task
term) remains as options ``edge_output="fused"``, ``edge_pool="adaptive"`` and
``dual_boundary="course"`` of :class:`GSCNN`, for the comparison in notebook 08.

In training mode the model returns ``{"out": seg_logits, "edge": edge_logits}``; in eval
mode the segmentation logits alone (``predict_all`` gives both, and the gates, in any
mode). It trains with its own loss, :class:`~course_utils.losses.GSCNNLoss`
(``model.criterion()``). The gates of the last forward pass are kept in ``model.gates``
(detached) for visualisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_int
from ..labels import IGNORE_INDEX
from ..losses import BOUNDARY_TERMS, GSCNNLoss
from . import register_model
from .backbone import (BasicBlock, _init_weights, adaptive_avg_pool2d, check_images, downsample_aligned, replicate_pad,
                       upsample_aligned)
from .deeplab import DeepLab

GATE_LEVELS = ("c3", "c4", "c5")
EDGE_POOLS = ("adaptive", "aligned")
EDGE_OUTPUTS = ("fused", "shape")


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude ``(N, 1, H, W)`` of the grey image, scaled to [0, 1] for inputs in [0, 1].

    Replicate padding, so a constant image has zero gradient at its border too. The largest
    possible Sobel response of a [0, 1] image is 4 per direction, hence the ``4 * sqrt(2)``.
    """
    grey = images.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=images.dtype,
                      device=images.device)
    kernels = torch.stack([kx, kx.T])[:, None]
    g = F.conv2d(replicate_pad(grey, 1, 1, 1, 1), kernels)
    return g.pow(2).sum(1, keepdim=True).sqrt() / (4.0 * 2.0 ** 0.5)


class GatedConv(nn.Module):
    """``s * alpha + s`` followed by a 1x1 conv, with ``alpha = sigmoid(conv1x1(concat(s, r)))``."""

    def __init__(self, channels: int, regular_channels: int = 1):
        super().__init__()
        self.gate = nn.Conv2d(channels + regular_channels, 1, 1)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, s: torch.Tensor, r: torch.Tensor):
        alpha = torch.sigmoid(self.gate(torch.cat([s, r], dim=1)))
        return self.conv(s * alpha + s), alpha


class ShapeStream(nn.Module):
    """Residual blocks and gated convolutions at the stride of backbone level ``level``; returns
    boundary logits there."""

    def __init__(self, in_channels: int, level_channels: dict, channels: int, norm: str = "batch",
                 level: str = "c1"):
        super().__init__()
        self.level = level
        self.stem = nn.Conv2d(in_channels, channels, 1)
        self.blocks = nn.ModuleList(BasicBlock(channels, channels, norm=norm) for _ in GATE_LEVELS)
        # The regular stream's features reduced to one map each, as in the paper.
        self.reduce = nn.ModuleList(nn.Conv2d(level_channels[lvl], 1, 1) for lvl in GATE_LEVELS)
        self.gated = nn.ModuleList(GatedConv(channels, 1) for _ in GATE_LEVELS)
        self.score = nn.Conv2d(channels, 1, 1)
        _init_weights(self)

    def forward(self, feats, strides):
        s = self.stem(feats[self.level])
        gates = []
        for lvl, block, reduce, gated in zip(GATE_LEVELS, self.blocks, self.reduce, self.gated):
            s = block(s)
            r = upsample_aligned(reduce(feats[lvl]), s.shape[-2:], strides[lvl] // strides[self.level])
            s, alpha = gated(s, r)
            gates.append(alpha)
        return self.score(s), gates


class GSCNN(DeepLab):
    """Gated-SCNN: DeepLabV3+ (the regular stream) plus a gated shape stream.

    Options as :class:`~course_utils.models.deeplab.DeepLab` plus ``shape_channels``
    (default ``width``), the width of the shape stream, and ``shape_level``, the backbone
    features it starts from: ``"c1"`` (stride 2, the default and the zoo's model) or
    ``"c2"`` (stride 4: a quarter of the pixels, so its 3x3 convolutions cost a quarter;
    the step times and the accuracy reached in a fixed time are in the benchmark results,
    ``benchmarks/bench_models.py`` and ``bench_time_to_accuracy.py``).

    ``edge_pool`` is how the edge probability and the image gradient are reduced to the
    ASPP's grid (the c5 features). ``"adaptive"``: adaptive average pooling, whose cell ``i`` averages input rows ``s i .. s i + s - 1``
    and so is centred on ``s i + (s - 1) / 2``, half a stride (7.5 px at output stride 16)
    past the c5 feature it is concatenated with (centred on ``s i``, the alignment convention
    of :mod:`~course_utils.models.backbone`). ``"aligned"``: :func:`~course_utils.models.backbone.downsample_aligned`,
    a tent average centred on ``s i`` (the default), the position the paper's code samples
    (``F.interpolate(edge, align_corners=True)`` in nv-tlabs/GSCNN ``network/gscnn.py``),
    averaging instead of sampling so that thin edges between the samples still count.

    ``edge_output`` is which boundary map is the ``"edge"`` output, the one the boundary loss
    and the dual-task term supervise. ``"fused"``: the shape stream's logits fused with the image gradient by the 1x1 conv
    ``self.fuse``, so the supervised map can lean on the Sobel gradient. ``"shape"`` (the
    default), the paper's wiring (Fig. 2; ``edge_out`` in nv-tlabs/GSCNN ``network/gscnn.py``): ``"edge"`` is
    the shape stream's own logits, upsampled, so the supervision acts on the shape stream;
    the image gradient only joins afterwards, beside ``sigmoid(edge)`` in the ASPP input.
    With ``"shape"`` the model has no ``fuse`` layer (and no ``fuse.*`` state-dict keys): an
    unused layer would only sit in the optimizer and trip DDP's unused-parameter check.

    ``dual_boundary`` is the first term of the dual-task regulariser in the model's own loss
    (:meth:`criterion`; :class:`~course_utils.losses.GSCNNLoss`'s ``dual_boundary``): ``"paper"``
    (the default) or the course's simplification ``"course"``. It is a model option so that a
    checkpoint records the loss it was trained with and ``fit`` rebuilds it.
    """

    def __init__(self, num_classes: int, width: int = 16, depths=(1, 1, 1, 1), norm: str = "batch",
                 output_stride: int = 16, rates=None, aspp_channels: int | None = None,
                 low_level_channels: int = 48, dropout: float = 0.1, shape_channels: int | None = None,
                 shape_level: str = "c1", edge_pool: str = "aligned", edge_output: str = "shape",
                 dual_boundary: str = "paper"):
        # Two extra ASPP inputs: the edge probability and the image gradient magnitude.
        super().__init__(num_classes, decoder=True, width=width, depths=depths, norm=norm,
                         output_stride=output_stride, rates=rates, aspp_channels=aspp_channels,
                         low_level_channels=low_level_channels, dropout=dropout, extra_channels=2)
        shape_channels = check_int("shape_channels", shape_channels or width, 1)
        self.shape_level = check_choice("shape_level", shape_level, ("c1", "c2"))
        self.edge_pool = check_choice("edge_pool", edge_pool, EDGE_POOLS)
        self.edge_output = check_choice("edge_output", edge_output, EDGE_OUTPUTS)
        self.dual_boundary = check_choice("dual_boundary", dual_boundary, BOUNDARY_TERMS)
        self.shape_stream = ShapeStream(self.backbone.channels[shape_level], self.backbone.channels, shape_channels,
                                        norm=norm, level=shape_level)
        if edge_output == "fused":
            self.fuse = nn.Conv2d(2, 1, 1)     # shape-stream logits + image gradient -> edge logits
            with torch.no_grad():             # start as the shape stream's own boundary map
                self.fuse.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
                self.fuse.bias.zero_()
        else:
            self.fuse = None
        self.gates: list = []

    def predict_all(self, images: torch.Tensor) -> dict:
        """``{"out": seg_logits, "edge": edge_logits, "gates": [alpha per gated layer]}``, any mode."""
        check_images(images, self.backbone.in_channels)
        feats = self.backbone(images)
        strides = self.backbone.strides
        shape_logits, gates = self.shape_stream(feats, strides)
        grad = sobel_magnitude(images)
        size = images.shape[-2:]
        edge = upsample_aligned(shape_logits, size, strides[self.shape_level])
        if self.fuse is not None:
            edge = self.fuse(torch.cat([edge, grad], dim=1))
        extra = self.pool_edges(torch.cat([torch.sigmoid(edge), grad], dim=1), feats["c5"])
        out = self.head(images, feats, extra)
        self.gates = [g.detach() for g in gates]
        return {"out": out, "edge": edge, "gates": gates}

    def pool_edges(self, x: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        """The full-resolution ASPP input ``x`` reduced to the grid of ``c5`` (see ``edge_pool``)."""
        if self.edge_pool == "aligned":
            return downsample_aligned(x, self.backbone.strides["c5"])
        return adaptive_avg_pool2d(x, c5.shape[-2:])

    def outputs(self, images: torch.Tensor) -> dict:
        result = self.predict_all(images)
        return {"out": result["out"], "edge": result["edge"]}

    def criterion(self, ignore_index: int = IGNORE_INDEX):
        """Gated-SCNN's own loss: cross-entropy + balanced edge BCE + the dual-task term."""
        return GSCNNLoss(ignore_index=ignore_index, dual_boundary=self.dual_boundary)


@register_model("gscnn")
def gscnn(num_classes, width=16, depths=(1, 1, 1, 1), norm="batch", output_stride=16, rates=None,
          aspp_channels=None, low_level_channels=48, dropout=0.1, shape_channels=None, shape_level="c1",
          edge_pool="aligned", edge_output="shape", dual_boundary="paper"):
    """Gated-SCNN; options as :class:`GSCNN`."""
    return GSCNN(num_classes, width=width, depths=depths, norm=norm, output_stride=output_stride, rates=rates,
                 aspp_channels=aspp_channels, low_level_channels=low_level_channels, dropout=dropout,
                 shape_channels=shape_channels, shape_level=shape_level, edge_pool=edge_pool,
                 edge_output=edge_output, dual_boundary=dual_boundary)
