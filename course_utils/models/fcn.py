"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, CVPR 2015) on the course backbone.

The encoder's coarsest features (stride 32) are scored per pixel by a small head. FCN-32s
upsamples those scores 32x to the input. FCN-16s first upsamples them 2x and adds scores
computed from the stride-16 features (a "skip"); FCN-8s adds one more skip at stride 8,
then upsamples 8x. Every upsampling is a transposed convolution initialised to bilinear
interpolation (the lecture's "insert zeros, then convolve with the bilinear kernel") and
then learned. The skip scores start at zero, as in the paper, so at initialisation FCN-8s
predicts exactly what FCN-32s would and the skips learn only the refinement.

Any input size works: the encoder rounds sizes up (``ceil(H / s)`` rows at stride ``s``),
so each upsampled map is at least as large as the next one and is cropped to it. No
offset is needed because sample ``i`` at stride ``s`` is centred on input pixel ``s * i``
(see backbone.py) and the transposed convolution puts its input sample ``i`` at output
index ``f * i``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_int
from ..upsampling import bilinear_kernel
from . import register_model
from .backbone import ConvNormAct, ResNetBackbone, SegmentationModel, replicate_pad

VARIANTS = {"32s": (), "16s": ("c4",), "8s": ("c4", "c3")}
UPSAMPLING_METHODS = ("auto", "polyphase", "transposed")
# Device types where BilinearUpsample's "auto" computes in polyphase form (see upsampling_method).
POLYPHASE_DEVICES = frozenset({"cpu"})


class FCNHead(nn.Sequential):
    """Per-pixel classifier on the coarsest features: 3x3 conv-norm-ReLU, dropout, 1x1 scores."""

    def __init__(self, in_channels: int, num_classes: int, channels: int | None = None,
                 norm: str = "batch", dropout: float = 0.1):
        channels = channels or max(in_channels // 2, num_classes)
        super().__init__(
            ConvNormAct(in_channels, channels, 3, norm=norm),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )


class BilinearUpsample(nn.Module):
    """Upsample ``channels`` maps by an integer ``factor`` with a transposed convolution.

    The kernel is ``bilinear_kernel(factor)`` (size ``2f - 1``), so at initialisation the
    layer interpolates each map on its own; training may then change it, unless
    ``learnable=False``. ``depthwise=True`` gives each channel its own kernel (``C`` kernels);
    ``False`` is a full ``C -> C`` transposed convolution (``C * C`` kernels, bilinear on the
    diagonal, zero across channels) as in the FCN paper, which lets upsampling mix
    classes but costs ``C`` times the parameters (at factor 32 more than the rest of
    the model). ``forward(x, size)`` returns a map of ``size``.

    With ``stride=f, padding=f-1, output_padding=f-1`` input sample ``i`` lands on output
    ``f * i`` and the output has ``f * n`` rows. Past the last sample only one neighbour
    exists, so the bilinear output would fade to zero there (the lecture's edge effect);
    repeating the last row and column once before upsampling makes it hold the border
    value instead, as ``course_utils.upsampling.upsample_zero_insert(..., edge="replicate")``.

    The weights live in ``self.up`` (an ``nn.ConvTranspose2d``); ``method`` says how the
    sums are computed, with the same values, gradients and state dict either way:

    * ``"transposed"``: ``self.up`` itself, PyTorch's transposed convolution.
    * ``"polyphase"``: output row ``f m + p`` receives input rows ``m`` and ``m + 1`` only,
      through kernel taps ``p + f - 1`` and ``p - 1``, so the layer is ``f x f`` small
      convolutions (2x2 taps each, one per output phase) whose results ``pixel_shuffle``
      interleaves ("polyphase" or "sub-pixel" form): 4 multiplications per output pixel
      instead of the ``(2f - 1)^2`` of a kernel that multiplies the inserted zeros, which
      is what oneDNN runs for a depthwise transposed convolution on a CPU.
    * ``"auto"`` (the default): :func:`upsampling_method` of the input's device type.

    :func:`set_upsampling_method` sets it for every such layer of a model.
    """

    def __init__(self, channels: int, factor: int, learnable: bool = True, depthwise: bool = True,
                 method: str = "auto"):
        super().__init__()
        self.method = method
        self.channels = check_int("channels", channels, 1)
        self.factor = check_int("factor", factor, 1, 64)
        self.depthwise = bool(depthwise)
        self.up = None
        if self.factor > 1:
            f = self.factor
            self.up = nn.ConvTranspose2d(channels, channels, 2 * f - 1, stride=f, padding=f - 1,
                                         output_padding=f - 1, groups=channels if depthwise else 1,
                                         bias=False)
            self.reset_parameters()
            self.up.weight.requires_grad_(bool(learnable))

    @property
    def method(self) -> str:
        """How ``forward`` computes the sums: "auto", "polyphase" or "transposed" (see the class)."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = check_choice("method", value, UPSAMPLING_METHODS)

    def method_for(self, device_type: str) -> str:
        """The form ``forward`` uses for an input on ``device_type``: "polyphase" or "transposed"."""
        return upsampling_method(device_type) if self.method == "auto" else self.method

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.up is None:
            return
        kernel = torch.as_tensor(bilinear_kernel(self.factor), dtype=self.up.weight.dtype)
        if self.depthwise:           # weight (C, 1, k, k): one kernel per channel
            self.up.weight.copy_(kernel.expand_as(self.up.weight))
        else:                        # weight (C_in, C_out, k, k): the identity times the kernel
            self.up.weight.zero_()
            idx = torch.arange(self.channels)
            self.up.weight[idx, idx] = kernel

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        h, w = int(size[0]), int(size[1])
        f = self.factor
        if x.shape[-2] * f < h or x.shape[-1] * f < w:
            raise ValueError(f"cannot upsample {tuple(x.shape[-2:])} by {f} to size {(h, w)}: "
                             "the coarse map is too small (features must have ceil(H / stride) rows)")
        if self.up is not None:
            x = replicate_pad(x, right=1, bottom=1)
            x = self._polyphase(x) if self.method_for(x.device.type) == "polyphase" else self.up(x)
        return x if x.shape[-2:] == (h, w) else x[..., :h, :w]

    def _polyphase(self, x: torch.Tensor) -> torch.Tensor:
        """``self.up(x)`` without its last ``f`` rows and columns, computed as ``f * f`` 2x2
        convolutions interleaved by ``pixel_shuffle``. (Those rows would read input row
        ``m + 1`` past the end, where the padded input has none; ``forward`` never keeps
        them, since ``x`` carries one replicated row and column more than it needs.)"""
        f, weight = self.factor, _GradLikeWeight.apply(self.up.weight)
        # Tap of input offset a (0: row m, 1: row m + 1) for output phase p: p + f - 1 - a f,
        # which is -1 (no tap) for a = 1, p = 0; a zero row and column in front of the
        # kernel make that index 0.
        phase = torch.arange(f, device=weight.device)
        taps = phase[:, None] + f - 1 - f * torch.arange(2, device=weight.device) + 1      # (f, 2)
        kernel = F.pad(weight, (1, 0, 1, 0))[..., taps[:, None, :, None], taps[None, :, None, :]]
        # kernel: (C_in, C_out / groups, f, f, 2, 2) -> conv weight (C_out * f * f, C_in / groups, 2, 2),
        # output channel c * f * f + p * f + q being phase (p, q) of channel c, as pixel_shuffle reads it.
        kernel = kernel.permute(1, 2, 3, 0, 4, 5) if not self.depthwise else kernel.permute(0, 2, 3, 1, 4, 5)
        kernel = kernel.reshape(-1, kernel.shape[3], 2, 2)
        y = F.conv2d(x, kernel, groups=self.channels if self.depthwise else 1)
        return F.pixel_shuffle(y, f)

    def extra_repr(self) -> str:
        method = "" if self.method == "auto" else f", method={self.method!r}"
        return f"channels={self.channels}, factor={self.factor}, depthwise={self.depthwise}{method}"


def upsampling_method(device_type: str) -> str:
    """The form :class:`BilinearUpsample` computes with on ``device_type`` when its method is "auto".

    "polyphase" where the transposed convolution's kernel multiplies the inserted zeros
    (:data:`POLYPHASE_DEVICES`: oneDNN on CPUs); elsewhere "transposed", the device
    library's own kernel, since the polyphase form's gain is specific to that CPU kernel.
    ``tools/gpu_check.py`` times both forms on a GPU, which is what would move CUDA here.
    """
    return "polyphase" if str(device_type) in POLYPHASE_DEVICES else "transposed"


def set_upsampling_method(model: nn.Module, method: str) -> int:
    """Set ``method`` ("auto", "polyphase" or "transposed") on every :class:`BilinearUpsample`
    in ``model``; returns how many layers it set. Weights and state dict are unchanged."""
    method = check_choice("method", method, UPSAMPLING_METHODS)
    layers = [m for m in model.modules() if isinstance(m, BilinearUpsample)]
    for layer in layers:
        layer.method = method
    return len(layers)


class _GradLikeWeight(torch.autograd.Function):
    """Identity whose backward hands the gradient back in the weight's own memory layout.

    The weight's gradient comes out of indexing, laid out contiguously; after
    ``model.to(memory_format=torch.channels_last)`` the weight is not, and
    DistributedDataParallel warns (and copies) when a gradient's strides differ from its
    parameter's. ``ConvTranspose2d`` itself produces the gradient in the weight's layout.
    """

    @staticmethod
    def forward(ctx, weight):
        ctx.stride = weight.stride()
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad):
        if grad.stride() == ctx.stride:
            return grad
        return grad.new_empty_strided(grad.shape, ctx.stride).copy_(grad)


class FCN(SegmentationModel):
    """FCN-32s / 16s / 8s (``variant``) on a :class:`ResNetBackbone`.

    Options: ``width`` and ``depths`` of the backbone, ``norm`` ("batch" or "group"),
    ``output_stride`` (32, or 16/8 with dilation: the corresponding upsampling steps become
    identities), ``head_channels``, ``dropout``, ``learnable_upsampling`` and
    ``depthwise_upsampling`` (see :class:`BilinearUpsample`).
    """

    def __init__(self, num_classes: int, variant: str = "8s", width: int = 16, depths=(1, 1, 1, 1),
                 norm: str = "batch", output_stride: int = 32, head_channels: int | None = None,
                 dropout: float = 0.1, learnable_upsampling: bool = True,
                 depthwise_upsampling: bool = True):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.variant = check_choice("variant", variant, tuple(VARIANTS))
        self.backbone = ResNetBackbone(width=width, depths=depths, norm=norm, output_stride=output_stride)
        ch, strides = self.backbone.channels, self.backbone.strides
        self.head = FCNHead(ch["c5"], num_classes, head_channels, norm=norm, dropout=dropout)
        self.skip_levels = VARIANTS[variant]
        self.score = nn.ModuleDict({lvl: nn.Conv2d(ch[lvl], num_classes, 1) for lvl in self.skip_levels})
        for conv in self.score.values():
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.upsample = nn.ModuleDict()
        prev = "c5"
        for lvl in self.skip_levels:
            self.upsample[lvl] = BilinearUpsample(num_classes, strides[prev] // strides[lvl],
                                                  learnable=learnable_upsampling, depthwise=depthwise_upsampling)
            prev = lvl
        self.upsample["out"] = BilinearUpsample(num_classes, strides[prev], learnable=learnable_upsampling,
                                                depthwise=depthwise_upsampling)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(images)
        scores = self.head(feats["c5"])
        for lvl in self.skip_levels:
            skip = self.score[lvl](feats[lvl])
            scores = self.upsample[lvl](scores, skip.shape[-2:]) + skip
        return self.upsample["out"](scores, images.shape[-2:])


def _register(variant: str) -> None:
    def build(num_classes, width=16, depths=(1, 1, 1, 1), norm="batch", output_stride=32,
              head_channels=None, dropout=0.1, learnable_upsampling=True, depthwise_upsampling=True):
        return FCN(num_classes, variant, width=width, depths=depths, norm=norm, output_stride=output_stride,
                   head_channels=head_channels, dropout=dropout, learnable_upsampling=learnable_upsampling,
                   depthwise_upsampling=depthwise_upsampling)
    build.__name__ = build.__qualname__ = f"fcn{variant}"
    build.__doc__ = f"FCN-{variant}; options as :class:`FCN`."
    register_model(f"fcn{variant}")(build)


for _variant in VARIANTS:
    _register(_variant)


def convolutionalize(linear: nn.Linear, input_shape=None) -> nn.Conv2d:
    """The convolution that applies ``linear`` at every position of a feature map.

    ``input_shape=None``: ``linear`` acts on a ``C``-vector (e.g. after global pooling),
    giving a 1x1 convolution with ``C`` input channels. ``input_shape=(C, h, w)``: ``linear``
    acts on a flattened ``C x h x w`` block (as VGG's first fully connected layer on its
    7x7 pool5 map), giving an ``h x w`` convolution. Either way the conv reproduces the
    layer's outputs on an input of that size and slides it over anything larger, turning a
    classifier into a per-position score map: the key step of the FCN paper.
    """
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    if input_shape is None:
        input_shape = (linear.in_features, 1, 1)
    c, h, w = (check_int("input_shape[i]", v, 1) for v in input_shape)
    if c * h * w != linear.in_features:
        raise ValueError(f"input_shape {tuple(input_shape)} has {c * h * w} values but linear expects "
                         f"in_features={linear.in_features}")
    conv = nn.Conv2d(c, linear.out_features, (h, w), bias=linear.bias is not None)
    with torch.no_grad():
        # nn.Flatten orders a (C, h, w) block channel-major, the same order as the conv weight.
        conv.weight.copy_(linear.weight.reshape(linear.out_features, c, h, w))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv.to(linear.weight.device)
