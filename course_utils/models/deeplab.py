"""DeepLabV3 (Chen et al. 2017) and DeepLabV3+ (Chen et al., ECCV 2018) on the course backbone.

ASPP, atrous spatial pyramid pooling, looks at the backbone's last features through
several 3x3 convolutions with different dilation rates at once (plus a 1x1 convolution
and an image-level average), so each pixel's score mixes context at several scales.
The paper's rates (6, 12, 18) are for output stride 16; at output stride 8 the same
context in input pixels needs twice the rate, so :func:`aspp_rates` scales them.

The image-pooling branch reduces the whole map to one vector per image. At batch size 1
in training that is one value per channel, which BatchNorm cannot normalise, so this
branch has no norm (a biased 1x1 convolution and ReLU): it then trains at any batch size.

DeepLabV3+ adds a decoder: the ASPP output, upsampled to stride 4, is concatenated with
the stride-4 features ``c2`` projected to 48 channels (few, so that the low-level
features do not outweigh the semantic ones), refined by two 3x3 convolutions and
upsampled to the input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int
from . import register_model
from .backbone import ConvNormAct, ResNetBackbone, SegmentationModel, upsample_aligned

BASE_RATES = (6, 12, 18)   # the paper's rates at output stride 16


def aspp_rates(output_stride: int, base=BASE_RATES) -> tuple:
    """ASPP dilation rates for ``output_stride``: ``base`` at 16, doubled at 8, halved at 32."""
    output_stride = check_int("output_stride", output_stride, 1)
    return tuple(max(1, r * 16 // output_stride) for r in base)


class ImagePooling(nn.Module):
    """Global average, biased 1x1 conv, ReLU (no norm: see the module docstring), broadcast back."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = F.relu(self.conv(x.mean((2, 3), keepdim=True)))
        return v.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """1x1 conv, one 3x3 conv per rate, image pooling; concatenated and projected by a 1x1 conv.

    ``extra_channels > 0`` adds one more branch, a 1x1 conv-norm-ReLU over an extra input
    given to ``forward(x, extra)`` at the size of ``x`` (Gated-SCNN's edge features).
    """

    def __init__(self, in_channels: int, channels: int, rates=BASE_RATES, norm: str = "batch",
                 dropout: float = 0.1, extra_channels: int = 0):
        super().__init__()
        self.rates = tuple(check_int("rates[i]", r, 1, 1024) for r in rates)
        self.branches = nn.ModuleList([ConvNormAct(in_channels, channels, 1, norm=norm)])
        self.branches.extend(ConvNormAct(in_channels, channels, 3, dilation=r, norm=norm) for r in self.rates)
        self.pool = ImagePooling(in_channels, channels)
        self.extra = ConvNormAct(extra_channels, channels, 1, norm=norm) if extra_channels else None
        n = len(self.branches) + 1 + (1 if extra_channels else 0)
        self.project = nn.Sequential(ConvNormAct(n * channels, channels, 1, norm=norm), nn.Dropout2d(dropout))
        self.out_channels = channels

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        outs = [b(x) for b in self.branches] + [self.pool(x)]
        if self.extra is not None:
            if extra is None:
                raise ValueError("this ASPP was built with extra_channels > 0, so forward needs extra")
            outs.append(self.extra(extra))
        return self.project(torch.cat(outs, dim=1))


class DeepLabDecoder(nn.Module):
    """DeepLabV3+'s decoder: upsample to stride 4, concatenate the 48-channel projection of
    the low-level features, two 3x3 conv-norm-ReLU, 1x1 class scores (at stride 4)."""

    def __init__(self, in_channels: int, low_channels: int, num_classes: int, channels: int,
                 low_level_channels: int = 48, norm: str = "batch"):
        super().__init__()
        self.project = ConvNormAct(low_channels, low_level_channels, 1, norm=norm)
        self.refine = nn.Sequential(ConvNormAct(in_channels + low_level_channels, channels, 3, norm=norm),
                                    ConvNormAct(channels, channels, 3, norm=norm))
        self.classify = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, low: torch.Tensor, stride_ratio: int) -> torch.Tensor:
        x = upsample_aligned(x, low.shape[-2:], stride_ratio)
        return self.classify(self.refine(torch.cat([x, self.project(low)], dim=1)))


class DeepLab(SegmentationModel):
    """DeepLabV3 (``decoder=False``) or DeepLabV3+ (``decoder=True``) on a :class:`ResNetBackbone`.

    Options: ``width``, ``depths``, ``norm``, ``output_stride`` (16 by default, or 8 / 32),
    ``rates`` (default :func:`aspp_rates` of the output stride), ``aspp_channels`` (default
    ``4 * width``), ``low_level_channels`` (48) and ``dropout``. ``extra_channels`` adds an
    ASPP input branch, for subclasses (Gated-SCNN) that pass ``extra`` to :meth:`head`.
    """

    def __init__(self, num_classes: int, decoder: bool = False, width: int = 16, depths=(1, 1, 1, 1),
                 norm: str = "batch", output_stride: int = 16, rates=None, aspp_channels: int | None = None,
                 low_level_channels: int = 48, dropout: float = 0.1, extra_channels: int = 0):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.backbone = ResNetBackbone(width=width, depths=depths, norm=norm, output_stride=output_stride)
        ch = self.backbone.channels
        channels = check_int("aspp_channels", aspp_channels or 4 * width, 1)
        low_level_channels = check_int("low_level_channels", low_level_channels, 1)
        rates = aspp_rates(output_stride) if rates is None else rates
        self.aspp = ASPP(ch["c5"], channels, rates=rates, norm=norm, dropout=dropout, extra_channels=extra_channels)
        if decoder:
            self.decoder = DeepLabDecoder(channels, ch["c2"], num_classes, channels,
                                          low_level_channels=low_level_channels, norm=norm)
            self.classifier = None
        else:
            self.decoder = None
            self.classifier = nn.Sequential(ConvNormAct(channels, channels, 3, norm=norm),
                                            nn.Conv2d(channels, num_classes, 1))

    def head(self, images: torch.Tensor, feats, extra=None) -> torch.Tensor:
        """Logits at the input size from the backbone's ``feats`` (and the ASPP's ``extra`` input)."""
        x = self.aspp(feats["c5"], extra)
        s = self.backbone.strides
        if self.decoder is None:
            return upsample_aligned(self.classifier(x), images.shape[-2:], s["c5"])
        scores = self.decoder(x, feats["c2"], s["c5"] // s["c2"])
        return upsample_aligned(scores, images.shape[-2:], s["c2"])

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images, self.backbone(images))


@register_model("deeplabv3")
def deeplabv3(num_classes, width=16, depths=(1, 1, 1, 1), norm="batch", output_stride=16, rates=None,
              aspp_channels=None, dropout=0.1):
    """DeepLabV3; options as :class:`DeepLab`."""
    return DeepLab(num_classes, decoder=False, width=width, depths=depths, norm=norm,
                   output_stride=output_stride, rates=rates, aspp_channels=aspp_channels, dropout=dropout)


@register_model("deeplabv3plus")
def deeplabv3plus(num_classes, width=16, depths=(1, 1, 1, 1), norm="batch", output_stride=16, rates=None,
                  aspp_channels=None, low_level_channels=48, dropout=0.1):
    """DeepLabV3+; options as :class:`DeepLab`."""
    return DeepLab(num_classes, decoder=True, width=width, depths=depths, norm=norm,
                   output_stride=output_stride, rates=rates, aspp_channels=aspp_channels,
                   low_level_channels=low_level_channels, dropout=dropout)
