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

With ``aux=True`` a second, small classifier on the stage-4 features (``c4``) is trained
alongside, with weight 0.4 in the loss, and ignored at test time: the paper's deep
supervision (section 3.4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int
from ..labels import IGNORE_INDEX
from ..losses import AuxiliaryCrossEntropy
from . import register_model
from .backbone import ConvNormAct, ResNetBackbone, SegmentationModel, adaptive_avg_pool2d, upsample_aligned

__all__ = ["PSPNet", "PyramidPooling", "AdaptiveAvgPool2d", "AuxHead"]

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


class AuxHead(nn.Sequential):
    """PSPNet's auxiliary classifier: 3x3 conv-norm-ReLU, dropout, 1x1 class scores (``aux`` in
    hszhao/semseg ``model/pspnet.py``, which has 256 channels on ResNet's 1024: a quarter)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, norm: str = "batch",
                 dropout: float = 0.1):
        super().__init__(ConvNormAct(in_channels, channels, 3, norm=norm), nn.Dropout2d(dropout),
                         nn.Conv2d(channels, num_classes, 1))


class PSPNet(SegmentationModel):
    """PSPNet on a :class:`ResNetBackbone`: options ``width``, ``depths``, ``norm``,
    ``output_stride`` (8 as in the paper; 16 or 32 are cheaper), ``bins``, ``head_channels``
    (default ``4 * width``), ``dropout`` and ``aux``.

    ``aux=True`` adds the paper's auxiliary loss (Zhao et al. 2017, section 3.4): an
    :class:`AuxHead` (``self.aux``, a quarter of ``c4``'s channels) classifies the stage-4
    features ``c4``; its logits, upsampled to the input, are the training output's ``"aux"``
    (computed in training mode only), and :meth:`criterion` is then
    :class:`~course_utils.losses.AuxiliaryCrossEntropy`, ``CE(out) + 0.4 CE(aux)``. In eval
    mode the model is the same PSPNet as without it. ``aux=False`` (the default; the zoo's
    model was trained with it) has no auxiliary head and trains with plain cross-entropy.
    """

    def __init__(self, num_classes: int, width: int = 16, depths=(1, 1, 1, 1), norm: str = "batch",
                 output_stride: int = 8, bins=BINS, head_channels: int | None = None, dropout: float = 0.1,
                 aux: bool = False):
        super().__init__()
        if not isinstance(aux, bool):
            raise ValueError(f"aux must be True or False; got {aux!r}")
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.backbone = ResNetBackbone(width=width, depths=depths, norm=norm, output_stride=output_stride)
        head_channels = check_int("head_channels", head_channels or 4 * width, 1)
        self.head = PSPHead(self.backbone.channels["c5"], num_classes, head_channels, norm=norm, bins=bins,
                            dropout=dropout)
        c4 = self.backbone.channels["c4"]
        self.aux = AuxHead(c4, num_classes, max(c4 // 4, 1), norm=norm, dropout=dropout) if aux else None

    def _scores(self, images: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        return upsample_aligned(self.head(c5), images.shape[-2:], self.backbone.strides["c5"])

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self._scores(images, self.backbone(images)["c5"])

    def outputs(self, images: torch.Tensor) -> dict:
        """``{"out": logits}``, plus ``"aux"`` (the auxiliary head's logits) in training with ``aux=True``."""
        if self.aux is None or not self.training:
            return {"out": self.predict(images)}
        feats = self.backbone(images)
        aux = upsample_aligned(self.aux(feats["c4"]), images.shape[-2:], self.backbone.strides["c4"])
        return {"out": self._scores(images, feats["c5"]), "aux": aux}

    def criterion(self, ignore_index: int = IGNORE_INDEX):
        """Cross-entropy; with ``aux=True`` :class:`~course_utils.losses.AuxiliaryCrossEntropy` (weight 0.4)."""
        if self.aux is None:
            return super().criterion(ignore_index)
        return AuxiliaryCrossEntropy(aux_weight=0.4, ignore_index=ignore_index)


@register_model("pspnet")
def pspnet(num_classes, width=16, depths=(1, 1, 1, 1), norm="batch", output_stride=8, bins=BINS,
           head_channels=None, dropout=0.1, aux=False):
    """PSPNet; options as :class:`PSPNet`."""
    return PSPNet(num_classes, width=width, depths=depths, norm=norm, output_stride=output_stride, bins=bins,
                  head_channels=head_channels, dropout=dropout, aux=aux)
