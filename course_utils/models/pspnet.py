"""PSPNet (Zhao et al., CVPR 2017): a pyramid pooling module on a dilated backbone.

The backbone keeps its last stages at stride 8 by dilation (``output_stride=8``, as in the
paper). The pyramid pooling module then averages the stride-8 features over a 1x1, 2x2,
3x3 and 6x6 grid of bins, reduces each pooled map with a 1x1 convolution, stretches it
back to the feature size and concatenates everything with the features: every pixel sees
a summary of the whole image (bin 1) and of its quadrant, third, sixth (bins 2, 3, 6).

A pooled 1x1 map at batch size 1 has one value per channel, which BatchNorm cannot
normalise in training; the pooled branches therefore use ``GroupNorm(1, C)`` (a
LayerNorm over the channels of each pixel), which works for any batch and bin size.

The pooling is :func:`~course_utils.models.backbone.adaptive_avg_pool2d`, PyTorch's
adaptive average pooling that also runs on MPS for map sizes that are not a multiple of
the bin count (a 16x16 map into 3x3 or 6x6 bins, at 128 px input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int
from . import register_model
from .backbone import ConvNormAct, ResNetBackbone, SegmentationModel, adaptive_avg_pool2d, upsample_aligned

__all__ = ["PSPNet", "PyramidPooling", "AdaptiveAvgPool2d"]

BINS = (1, 2, 3, 6)


class AdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` through :func:`~course_utils.models.backbone.adaptive_avg_pool2d` (runs on MPS)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class PooledBranch(nn.Sequential):
    """Average over ``bins x bins`` cells, then 1x1 conv, ``GroupNorm(1, C)``, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, bins: int):
        super().__init__(AdaptiveAvgPool2d(bins), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.GroupNorm(1, out_channels), nn.ReLU(inplace=True))


class PyramidPooling(nn.Module):
    """Concatenate ``x`` with its pooled summaries at each of ``bins`` (``C + len(bins) * C/4`` channels)."""

    def __init__(self, in_channels: int, bins=BINS, branch_channels: int | None = None):
        super().__init__()
        self.bins = tuple(check_int("bins[i]", b, 1, 64) for b in bins)
        branch_channels = branch_channels or max(in_channels // len(self.bins), 1)
        self.branches = nn.ModuleList(PooledBranch(in_channels, branch_channels, b) for b in self.bins)
        self.out_channels = in_channels + len(self.bins) * branch_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        # Each cell's summary belongs to the whole cell: align_corners=False interpolation
        # treats the pooled samples as cell centres, which is what adaptive pooling computes.
        pooled = [F.interpolate(b(x), size=size, mode="bilinear", align_corners=False) for b in self.branches]
        return torch.cat([x, *pooled], dim=1)


class PSPHead(nn.Sequential):
    """Pyramid pooling, 3x3 conv-norm-ReLU, dropout, 1x1 class scores."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, norm: str = "batch",
                 bins=BINS, dropout: float = 0.1):
        ppm = PyramidPooling(in_channels, bins=bins)
        super().__init__(ppm, ConvNormAct(ppm.out_channels, channels, 3, norm=norm), nn.Dropout2d(dropout),
                         nn.Conv2d(channels, num_classes, 1))


class PSPNet(SegmentationModel):
    """PSPNet on a :class:`ResNetBackbone`: options ``width``, ``depths``, ``norm``,
    ``output_stride`` (8 as in the paper; 16 or 32 are cheaper), ``bins``, ``head_channels``
    (default ``4 * width``) and ``dropout``."""

    def __init__(self, num_classes: int, width: int = 16, depths=(1, 1, 1, 1), norm: str = "batch",
                 output_stride: int = 8, bins=BINS, head_channels: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.backbone = ResNetBackbone(width=width, depths=depths, norm=norm, output_stride=output_stride)
        head_channels = check_int("head_channels", head_channels or 4 * width, 1)
        self.head = PSPHead(self.backbone.channels["c5"], num_classes, head_channels, norm=norm, bins=bins,
                            dropout=dropout)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.backbone(images)["c5"])
        return upsample_aligned(scores, images.shape[-2:], self.backbone.strides["c5"])


@register_model("pspnet")
def pspnet(num_classes, width=16, depths=(1, 1, 1, 1), norm="batch", output_stride=8, bins=BINS,
           head_channels=None, dropout=0.1):
    """PSPNet; options as :class:`PSPNet`."""
    return PSPNet(num_classes, width=width, depths=depths, norm=norm, output_stride=output_stride, bins=bins,
                  head_channels=head_channels, dropout=dropout)
