"""The shared base of the course's segmentation models: a small ResNet-style encoder.

Every model in ``course_utils.models`` is an encoder (this backbone) plus a head that
turns its multi-level features into per-pixel class scores. The pieces a new head needs
live here, so PSPNet, DeepLab or Gated-SCNN is one short file:

* :func:`make_norm` and :class:`ConvNormAct`: the conv-norm-ReLU unit, BatchNorm or
  GroupNorm (GroupNorm's statistics do not depend on the batch, so batch size 1 is fine).
* :class:`ResNetBackbone`: returns a dict of features ``c1..c5`` at nominal strides
  2, 4, 8, 16, 32; ``output_stride=16`` or ``8`` replaces the last strides by dilation
  (DeepLab's atrous trick), and ``backbone.strides`` reports the real strides.
* :class:`SegmentationModel`: input checks, encoder/decoder parameter groups, and
  freezing the encoder (the pre-2018 recipe).

Alignment convention: every strided layer is a 3x3 (or 1x1) convolution with "same"
padding, so feature pixel ``i`` at stride ``s`` is centred on input pixel ``s * i`` and a
feature map of an ``H``-pixel input has ``ceil(H / s)`` rows. Decoders rely on this, through
:func:`upsample_aligned`, which resizes a feature map to the input under this convention.

Two ops are written here instead of called from ``torch.nn.functional``, with the same
results (tested against the originals): :func:`replicate_pad`, because
``F.pad(mode="replicate")`` breaks ``torch.compile``'s backward pass in torch 2.x (its
``replication_pad2d_backward`` gets a gradient whose strides the compiled graph did not
expect), and :func:`adaptive_avg_pool2d`, because MPS refuses adaptive pooling when the
input size is not a multiple of the output size (PSPNet's 3x3 and 6x6 bins on a 16x16 map).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_int
from ..labels import IGNORE_INDEX
from ..losses import SegmentationCrossEntropy

NORMS = ("batch", "group")
OUTPUT_STRIDES = (8, 16, 32)
LEVELS = ("c1", "c2", "c3", "c4", "c5")


def replicate_pad(x: torch.Tensor, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0) -> torch.Tensor:
    """``F.pad(x, (left, right, top, bottom), mode="replicate")`` built from slices and ``cat``.

    The same values (copies of the border rows and columns); the backward pass is slicing
    and summation, which ``torch.compile`` handles, where the replicate-pad backward kernel
    fails its stride check inside a compiled graph.
    """
    if top or bottom:
        parts = [x[..., :1, :].expand(*x.shape[:-2], top, x.shape[-1])] if top else []
        parts.append(x)
        if bottom:
            parts.append(x[..., -1:, :].expand(*x.shape[:-2], bottom, x.shape[-1]))
        x = torch.cat(parts, dim=-2)
    if left or right:
        parts = [x[..., :, :1].expand(*x.shape[:-1], left)] if left else []
        parts.append(x)
        if right:
            parts.append(x[..., :, -1:].expand(*x.shape[:-1], right))
        x = torch.cat(parts, dim=-1)
    return x


def upsample_aligned(x: torch.Tensor, size, stride: int) -> torch.Tensor:
    """Bilinear resize of a stride-``stride`` map ``x`` to ``size``, sample ``i`` landing on ``stride * i``.

    ``F.interpolate(align_corners=False)`` would put sample ``i`` at ``stride * i + (stride - 1) / 2``,
    half a stride off the backbone's grid. With ``align_corners=True`` onto ``(n - 1) * s + 1``
    rows the samples land exactly on ``s * i``; one replicated row and column beyond the last
    sample cover the up to ``s - 1`` input rows past it (holding the border value).
    """
    h, w = int(size[0]), int(size[1])
    stride = check_int("stride", stride, 1)
    if x.shape[-2] * stride < h or x.shape[-1] * stride < w:
        raise ValueError(f"cannot upsample {tuple(x.shape[-2:])} at stride {stride} to size {(h, w)}: "
                         "the map is too small (features must have ceil(H / stride) rows)")
    if stride > 1:
        x = replicate_pad(x, right=1, bottom=1)
        rows, cols = (x.shape[-2] - 1) * stride + 1, (x.shape[-1] - 1) * stride + 1
        x = F.interpolate(x, size=(rows, cols), mode="bilinear", align_corners=True)
    return x[..., :h, :w]


def tent_matrix(size: int, stride: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(ceil(size / stride), size)`` averaging matrix of :func:`downsample_aligned` along one axis.

    Row ``i`` weights input pixel ``j`` by the tent ``max(stride - |j - stride * i|, 0)``,
    centred on ``stride * i``, normalised to sum to 1 over the pixels inside the input.
    """
    n = -(-size // stride)
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(size, device=device)[None, :]
    w = (stride - (j - stride * i).abs()).clamp_min(0).to(dtype)
    return w / w.sum(1, keepdim=True)


def downsample_aligned(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Average a full-resolution map ``(N, C, H, W)`` onto the stride-``stride`` grid, cell ``i`` on ``stride * i``.

    The counterpart of :func:`upsample_aligned`: the result has ``ceil(H / stride)`` rows
    like the backbone's features, and cell ``i`` averages the input pixels around
    ``stride * i`` with the bilinear (tent) weights ``stride - |d|`` for ``|d| < stride``
    (normalised; at the border over the pixels that exist), so a pixel between two cell
    centres is shared by both in proportion to its nearness. Every pixel counts (a thin
    line between the centres is not lost, as it would be by sampling every ``stride``-th
    pixel). ``adaptive_avg_pool2d`` to the same size instead averages rows
    ``stride * i .. stride * i + stride - 1``, centred half a stride lower.
    """
    stride = check_int("stride", stride, 1)
    if stride == 1:
        return x
    ph = tent_matrix(x.shape[-2], stride, x.dtype, x.device)
    pw = tent_matrix(x.shape[-1], stride, x.dtype, x.device)
    return torch.matmul(torch.matmul(ph, x), pw.T)


def pooling_matrix(size: int, bins: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(bins, size)`` averaging matrix of adaptive average pooling along one axis.

    Row ``i`` averages cells ``floor(i * size / bins)`` to ``ceil((i + 1) * size / bins) - 1``,
    PyTorch's bins (``aten/src/ATen/native/AdaptiveAveragePooling.cpp``: start_index,
    end_index). Built on ``device`` from ``arange``, so it works on any device, meta included.
    """
    i = torch.arange(bins, device=device)[:, None]
    j = torch.arange(size, device=device)[None, :]
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = -torch.div(-(i + 1) * size, bins, rounding_mode="floor")   # ceil
    inside = (j >= start) & (j < end)
    return inside.to(dtype) / (end - start).to(dtype)


def adaptive_avg_pool2d(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` on any device.

    Where the input size is a multiple of the output size the bins are equal and
    non-overlapping and PyTorch's op runs everywhere, so it is called. Otherwise (MPS
    refuses that case) the pooling is two small matmuls with :func:`pooling_matrix`:
    ``P_h @ x @ P_w^T``, the same averages up to float rounding.
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    oh, ow = (check_int("output_size[i]", int(v), 1) for v in output_size)
    h, w = x.shape[-2], x.shape[-1]
    if h % oh == 0 and w % ow == 0:
        return F.adaptive_avg_pool2d(x, (oh, ow))
    ph = pooling_matrix(h, oh, x.dtype, x.device)
    pw = pooling_matrix(w, ow, x.dtype, x.device)
    return torch.matmul(torch.matmul(ph, x), pw.T)


def group_count(channels: int, max_groups: int = 8) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups``."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def make_norm(kind: str, channels: int, max_groups: int = 8) -> nn.Module:
    """``BatchNorm2d`` or ``GroupNorm`` (at most ``max_groups`` groups) for ``channels``."""
    check_choice("norm", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(group_count(channels, max_groups), channels)


class ConvNormAct(nn.Sequential):
    """Conv (no bias: the norm has one) -> norm -> ReLU, "same" padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, norm: str = "batch", act: bool = True):
        padding = dilation * (kernel_size - 1) // 2
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False),
                  make_norm(norm, out_channels)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or 1x1 projection) shortcut, as in ResNet-18."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 norm: str = "batch"):
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride, dilation, norm)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, 1, dilation, norm, act=False)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else ConvNormAct(in_channels, out_channels, 1, stride, norm=norm, act=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetBackbone(nn.Module):
    """A small ResNet: stem (stride 2) and four stages of basic blocks (strides 4..32).

    ``width`` is the channel count of the first stage; stages double it (16 -> 16, 32, 64,
    128). ``depths`` gives the blocks per stage. ``output_stride`` 16 or 8 keeps the
    resolution of the last one or two stages and dilates their convolutions instead, so
    the receptive field grows as before while the feature maps stay larger.

    ``forward(x)`` returns an ``OrderedDict`` ``{"c1": stride-2 stem, "c2": .., "c5": ..}``;
    ``channels`` and ``strides`` give each level's channel count and true stride.
    """

    def __init__(self, width: int = 16, depths=(1, 1, 1, 1), norm: str = "batch",
                 output_stride: int = 32, in_channels: int = 3):
        super().__init__()
        width = check_int("width", width, 1, 1024)
        in_channels = check_int("in_channels", in_channels, 1)
        check_choice("norm", norm, NORMS)
        check_choice("output_stride", output_stride, OUTPUT_STRIDES)
        depths = tuple(depths)
        if len(depths) != 4:
            raise ValueError(f"depths must list 4 block counts (one per stage), got {depths!r}")
        depths = tuple(check_int("depths[i]", d, 1, 64) for d in depths)

        self.norm, self.output_stride, self.in_channels = norm, output_stride, in_channels
        stage_channels = [width, 2 * width, 4 * width, 8 * width]
        self.stem = ConvNormAct(in_channels, width, 3, stride=2, norm=norm)
        self.channels = {"c1": width}
        self.strides = {"c1": 2}
        stride, dilation, prev = 2, 1, width
        stages = []
        for i, (ch, depth) in enumerate(zip(stage_channels, depths)):
            step = 2
            if stride * 2 > output_stride:   # past the output stride: dilate instead
                step, dilation = 1, dilation * 2
            stride *= step
            blocks = [BasicBlock(prev, ch, step, dilation, norm)]
            blocks += [BasicBlock(ch, ch, 1, dilation, norm) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            self.channels[LEVELS[i + 1]] = ch
            self.strides[LEVELS[i + 1]] = stride
            prev = ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = OrderedDict()
        x = feats["c1"] = self.stem(x)
        x = feats["c2"] = self.layer1(x)
        x = feats["c3"] = self.layer2(x)
        x = feats["c4"] = self.layer3(x)
        feats["c5"] = self.layer4(x)
        return feats

    def feature_shapes(self, height: int, width: int) -> dict:
        """``{level: (rows, cols)}`` of the features of an ``height x width`` input."""
        return {k: (math.ceil(height / s), math.ceil(width / s)) for k, s in self.strides.items()}


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    # Zero-init the last norm of each residual branch: every block starts as the identity,
    # which makes a fresh network train faster (Goyal et al. 2017, "zero gamma").
    for m in module.modules():
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.conv2[1].weight)


class SegmentationModel(nn.Module):
    """Base class of the course's models, and the home of their output contract.

    ``forward(images)`` checks the input and calls ``outputs(images)``, a dict
    ``{"out": logits (N, num_classes, H, W), ...}`` whose other entries are auxiliary
    outputs (Gated-SCNN's ``"edge"``). In training mode the model returns that dict, for
    the loss; in eval mode the logits alone, for metrics and predictions. The loss a model
    trains with is :meth:`criterion`, so every caller that trains gets the right one
    without knowing the model.

    Subclasses set ``self.backbone`` and implement ``predict(images)``, returning the
    logits at the input size, or override ``outputs`` when they have auxiliary outputs.
    """

    num_classes: int
    backbone: ResNetBackbone

    def forward(self, images: torch.Tensor):
        check_images(images, self.backbone.in_channels)
        outputs = self.outputs(images)
        return outputs if self.training else outputs["out"]

    def outputs(self, images: torch.Tensor) -> dict:
        return {"out": self.predict(images)}

    def predict(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def criterion(self, ignore_index: int = IGNORE_INDEX):
        """The training loss for this model's outputs: cross-entropy on ``"out"``."""
        return SegmentationCrossEntropy(ignore_index)

    def encoder_parameters(self):
        return self.backbone.parameters()

    def decoder_parameters(self):
        encoder = {id(p) for p in self.backbone.parameters()}
        return (p for p in self.parameters() if id(p) not in encoder)

    def freeze_encoder(self, frozen: bool = True) -> "SegmentationModel":
        """Stop (or restart) training the encoder: no gradients, and its BatchNorm keeps its
        running statistics (it stays in eval mode even when the model trains)."""
        self._encoder_frozen = bool(frozen)
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "_encoder_frozen", False):
            self.backbone.eval()
        return self


def check_images(images, in_channels: int = 3) -> None:
    """Raise ``ValueError`` unless ``images`` is a float tensor ``(N, in_channels, H, W)``."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor (N, {in_channels}, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != in_channels:
        raise ValueError(f"images must have shape (N, {in_channels}, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (e.g. float32 in [0, 1]), got dtype {images.dtype}")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
