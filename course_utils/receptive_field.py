"""Receptive fields: which input pixels an output unit can see, and which it actually uses.

Coordinates (shared with notebook 04 and its tests): input pixel ``i`` is centred at
coordinate ``i`` (0-based). The *theoretical* receptive field of output unit ``u`` is the
block of ``size`` input pixels centred at ``start + u * stride``; ``stride`` (the "jump")
is the distance, in input pixels, between neighbouring outputs. Padding shifts ``start``:
with zero padding the first output's field reaches past the input's left edge.

Two independent computations give the same three numbers:

* the layer-by-layer recurrence (walk the stack from the input up, keeping size, jump
  and start of the current layer);
* the closed form of A. Araujo, W. Norris and J. Sim, "Computing Receptive Fields of
  Convolutional Neural Networks", Distill, 2019 (doi:10.23915/distill.00021): sums over
  layers of products of the strides below them, with a dilated kernel replaced by its
  effective size ``d (k - 1) + 1``.

The *effective* receptive field (W. Luo, Y. Li, R. Urtasun and R. Zemel, "Understanding
the Effective Receptive Field in Deep Convolutional Neural Networks", NeurIPS 2016) is
the gradient magnitude of one output unit with respect to the input: usually a Gaussian
bump much smaller than the theoretical field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np

from ._checks import as_array, check_hw, check_int

METHODS = ("recurrence", "closed_form")


class Layer(NamedTuple):
    """One sliding window along one axis; ``padding`` is the padding on the left (top)."""

    kernel_size: int
    stride: int
    dilation: int
    padding: int
    name: str

    @property
    def effective_kernel(self) -> int:
        return self.dilation * (self.kernel_size - 1) + 1


class LayerField(NamedTuple):
    """The field after one more layer: the row of the history table."""

    name: str
    kernel_size: int
    stride: int
    dilation: int
    padding: int
    size: int
    jump: int
    start: float


@dataclass(frozen=True)
class ReceptiveField:
    """Field ``size`` and ``stride`` (jump) in input pixels; ``start`` is the centre of
    output 0's field in input coordinates; ``history`` has one row per layer."""

    size: int
    stride: int
    start: float
    history: tuple[LayerField, ...] = ()

    @property
    def jump(self) -> int:
        return self.stride

    @property
    def effective_padding(self) -> int:
        """How far output 0's field reaches left of pixel 0 (the sum of paddings times jumps)."""
        return int(round((self.size - 1) / 2 - self.start))

    def bounds(self, index: int = 0) -> tuple[int, int]:
        """First and last input pixel (inclusive) of output ``index``'s field; may lie
        outside the input where the field covers padding."""
        index = check_int("index", index, 0)
        lo = self.start + index * self.stride - (self.size - 1) / 2
        return int(round(lo)), int(round(lo)) + self.size - 1

    def table(self) -> str:
        """The history as aligned text, one layer a line (for notebooks)."""
        head = f"{'layer':<14}{'k':>3}{'s':>3}{'d':>3}{'p':>3}{'size':>7}{'jump':>6}{'start':>8}"
        rows = [head] + [
            f"{h.name[:13]:<14}{h.kernel_size:>3}{h.stride:>3}{h.dilation:>3}{h.padding:>3}"
            f"{h.size:>7}{h.jump:>6}{h.start:>8g}" for h in self.history]
        return "\n".join(rows)


# -- the two computations -------------------------------------------------------------
def receptive_field(layers, axis: int | None = None, method: str = "recurrence") -> ReceptiveField:
    """Receptive field of a stack of sliding windows.

    ``layers``: an ``nn.Sequential`` (Conv2d, MaxPool2d, AvgPool2d and zero/reflect pads
    walked in order; shape-preserving layers such as ReLU, BatchNorm, Dropout, Identity
    skipped; nested Sequentials walked) or a list of ``(kernel_size, stride, dilation)``
    or ``(kernel_size, stride, dilation, padding)`` tuples (padding defaults to 0).
    ``axis``: 0 (rows) or 1 (columns) for layers whose height and width differ; ``None``
    requires square layers. ``method``: ``"recurrence"`` or ``"closed_form"`` (the same
    numbers, computed independently).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    stack = layer_list(layers, axis)
    return _recurrence(stack) if method == "recurrence" else _closed_form(stack)


def _recurrence(stack: list[Layer]) -> ReceptiveField:
    size, jump, start = 1, 1, 0.0
    history = []
    for layer in stack:
        k = layer.effective_kernel
        # Each new unit spans k units of the layer below, which sit `jump` pixels apart;
        # its centre moves by the kernel's half-width minus the padding, in those units.
        size += (k - 1) * jump
        start += ((k - 1) / 2 - layer.padding) * jump
        jump *= layer.stride
        history.append(LayerField(layer.name, layer.kernel_size, layer.stride, layer.dilation,
                                  layer.padding, size, jump, start))
    return ReceptiveField(size, jump, start, tuple(history))


def _closed_form_prefix(stack: list[Layer]) -> tuple[int, int, float]:
    """Araujo et al.'s closed form for output 0 of ``stack``: returns (size, jump, start).

    With ``S_l`` the product of the strides of layers ``1..l-1``:
    size ``r = 1 + sum (k_l - 1) S_l``; left edge ``u = -sum p_l S_l``; right edge
    ``v = -sum (1 + p_l - k_l) S_l``; jump ``S_{L+1}``. The centre is ``(u + v) / 2``.
    """
    size, left, right, below = 1, 0, 0, 1
    for layer in stack:
        k = layer.effective_kernel
        size += (k - 1) * below
        left -= layer.padding * below
        right -= (1 + layer.padding - k) * below
        below *= layer.stride
    if right - left + 1 != size:  # two formulas of the article must agree
        raise AssertionError(f"closed form inconsistent: [{left}, {right}] vs size {size}")
    return size, below, (left + right) / 2


def _closed_form(stack: list[Layer]) -> ReceptiveField:
    history = []
    for n, layer in enumerate(stack, start=1):
        size, jump, start = _closed_form_prefix(stack[:n])
        history.append(LayerField(layer.name, layer.kernel_size, layer.stride, layer.dilation,
                                  layer.padding, size, jump, start))
    size, jump, start = _closed_form_prefix(stack)
    return ReceptiveField(size, jump, start, tuple(history))


# -- reading layers -----------------------------------------------------------------
def layer_list(layers, axis: int | None = None) -> list[Layer]:
    """Normalise ``layers`` (``nn.Module`` or list of tuples / modules) to a list of :class:`Layer`."""
    if axis is not None:
        axis = check_int("axis", axis, 0, 1)
    import torch.nn as nn

    if isinstance(layers, nn.Module):
        out: list[Layer] = []
        _walk(layers, "", axis, out, nn)
        return out
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise ValueError("layers must be an nn.Sequential or a list of (kernel_size, stride, dilation) "
                         f"tuples, got {type(layers).__name__}")
    out = []
    for i, item in enumerate(layers):
        if isinstance(item, nn.Module):
            _walk(item, str(i), axis, out, nn)
        else:
            out.append(_from_tuple(item, i))
    return out


def _from_tuple(item, i: int) -> Layer:
    if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
        raise ValueError(f"layer {i} must be a (kernel_size, stride, dilation) or "
                         f"(kernel_size, stride, dilation, padding) tuple, got {item!r}")
    padding = item[3] if len(item) == 4 else 0
    return _checked(item[0], item[1], item[2], padding, f"layer {i}")


def _checked(kernel_size, stride, dilation, padding, name: str) -> Layer:
    try:
        return Layer(check_int("kernel_size", kernel_size, 1), check_int("stride", stride, 1),
                     check_int("dilation", dilation, 1), check_int("padding", padding, 0), name)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


_WHY_NOT = {
    "Linear": "a fully connected layer sees its whole input, so its field is the input size",
    "Flatten": "it moves spatial positions into channels",
    "AdaptiveAvgPool2d": "its window depends on the input size",
    "AdaptiveMaxPool2d": "its window depends on the input size",
    "ConvTranspose2d": "it raises the resolution (a fractional stride); only windows with stride >= 1 are covered",
    "Upsample": "it raises the resolution (a fractional stride); only windows with stride >= 1 are covered",
    "UpsamplingBilinear2d": "it raises the resolution (a fractional stride)",
    "UpsamplingNearest2d": "it raises the resolution (a fractional stride)",
    "MaxUnpool2d": "it raises the resolution (a fractional stride)",
    "PixelShuffle": "it moves channels into space (a fractional stride)",
    "Conv1d": "it is not a 2-D layer", "Conv3d": "it is not a 2-D layer",
    "MaxPool1d": "it is not a 2-D layer", "MaxPool3d": "it is not a 2-D layer",
    "AvgPool1d": "it is not a 2-D layer", "AvgPool3d": "it is not a 2-D layer",
    "ModuleList": "a ModuleList has no order of application; use nn.Sequential",
    "ModuleDict": "a ModuleDict has no order of application; use nn.Sequential",
}

# Layers that act on each position (or mix channels only): the field passes through.
_SHAPE_PRESERVING = (
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Sigmoid", "Tanh", "Hardtanh", "Hardswish", "Hardsigmoid", "Softplus", "Softsign", "Tanhshrink",
    "LogSigmoid", "Threshold", "Softmax2d",
    "BatchNorm2d", "SyncBatchNorm", "GroupNorm", "InstanceNorm2d", "LocalResponseNorm",
    "Dropout", "Dropout2d", "AlphaDropout", "FeatureAlphaDropout", "Identity", "ChannelShuffle",
)


def _walk(module, name: str, axis, out: list, nn) -> None:
    if isinstance(module, nn.Sequential):
        for child_name, child in module.named_children():
            _walk(child, f"{name}.{child_name}" if name else child_name, axis, out, nn)
        return
    kind = type(module).__name__
    label = f"{name} ({kind})" if name else kind
    if isinstance(module, nn.Conv2d):
        k, s, d = module.kernel_size, module.stride, module.dilation
        if module.padding == "valid":
            p = (0, 0)
        elif module.padding == "same":
            # PyTorch puts the odd extra pixel of 'same' padding on the right/bottom.
            p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
        else:
            p = module.padding
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = module.kernel_size, module.stride, module.padding
        d = getattr(module, "dilation", 1)  # AvgPool2d has no dilation
        s = k if s is None or s == () else s
    elif isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)):
        left, _right, top, _bottom = _four(module.padding)
        # A pad is a 1x1 window whose left padding moves every later centre.
        k, s, d, p = 1, 1, 1, (top, left)
    elif isinstance(module, tuple(getattr(nn, n) for n in _SHAPE_PRESERVING)):
        return
    else:
        why = _WHY_NOT.get(kind)
        if why is None and any(True for _ in module.children()):
            why = ("it is a module with its own children, which may have several paths (e.g. a residual "
                   "block); write its main path as an nn.Sequential or a list of (kernel_size, stride, "
                   "dilation) tuples")
        if why is None:
            why = ("its effect on spatial positions is unknown; if it is a sliding window, list it as a "
                   "(kernel_size, stride, dilation, padding) tuple")
        raise ValueError(f"layer {label} is not supported: {why}")
    values = {what: check_hw(f"layer {label}: {what}", v, minimum)
              for what, v, minimum in (("kernel_size", k, 1), ("stride", s, 1), ("dilation", d, 1),
                                       ("padding", p, 0))}
    if axis is None:
        for what, (a, b) in values.items():
            if a != b:
                raise ValueError(f"layer {label} has {what} {(a, b)} that differs between height and width; "
                                 "pass axis=0 (rows) or axis=1 (columns)")
        picked = {what: v[0] for what, v in values.items()}
    else:
        picked = {what: v[axis] for what, v in values.items()}
    out.append(_checked(picked["kernel_size"], picked["stride"], picked["dilation"], picked["padding"],
                        f"layer {label}"))


def _four(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v, v)


# -- which pixels inside the field are actually used ----------------------------------
def effective_kernel_size(kernel_size: int, dilation: int) -> int:
    """``d (k - 1) + 1``: the span of a dilated kernel (its taps sit ``d`` pixels apart)."""
    return check_int("dilation", dilation, 1) * (check_int("kernel_size", kernel_size, 1) - 1) + 1


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """The padding ``d (k - 1) / 2`` that keeps a stride-1 convolution's output the input's size."""
    span = effective_kernel_size(kernel_size, dilation) - 1
    if span % 2:
        raise ValueError(f"kernel_size {kernel_size} with dilation {dilation} spans an even number of "
                         "pixels: no symmetric padding keeps the size (use an odd kernel_size)")
    return span // 2


def dilate_kernel(kernel, dilation: int):
    """Insert ``dilation - 1`` zeros between the taps of ``kernel`` along its last two axes.

    A 2-D NumPy array gives a NumPy array; a torch tensor (any number of leading axes,
    e.g. a ``(out, in, kh, kw)`` weight) gives a tensor. A convolution with the result
    equals the dilated convolution with ``kernel``.
    """
    dilation = check_int("dilation", dilation, 1)
    if hasattr(kernel, "new_zeros"):  # torch tensor: keep dtype, device and autograd
        if kernel.ndim < 2:
            raise ValueError(f"kernel must have at least 2 dimensions, got shape {tuple(kernel.shape)}")
        kh, kw = kernel.shape[-2:]
        out = kernel.new_zeros(*kernel.shape[:-2], (kh - 1) * dilation + 1, (kw - 1) * dilation + 1)
        out[..., ::dilation, ::dilation] = kernel
        return out
    kernel = as_array("kernel", kernel, ndims=(2,))
    out = np.zeros(((kernel.shape[0] - 1) * dilation + 1, (kernel.shape[1] - 1) * dilation + 1), kernel.dtype)
    out[::dilation, ::dilation] = kernel
    return out


def path_counts(layers, axis: int | None = None) -> np.ndarray:
    """For each pixel of output 0's field (left to right), the number of paths through the
    stack that connect it to that output, on an unbounded input (padding ignored).

    Zero means the pixel lies inside the field but no kernel tap ever lands on it: the
    holes of gridding. With all weights 1 and no nonlinearity this *is* the gradient.
    """
    counts = np.ones(1)
    for layer in reversed(layer_list(layers, axis)):
        # One unit above spreads to its kernel taps below; neighbours above are `stride`
        # apart below: zero-insert by the stride, then convolve with the dilated taps.
        spread = np.zeros((len(counts) - 1) * layer.stride + 1)
        spread[::layer.stride] = counts
        taps = np.zeros(layer.effective_kernel)
        taps[::layer.dilation] = 1.0
        counts = np.convolve(spread, taps)
    return counts


def sampled_positions(layers, axis: int | None = None) -> np.ndarray:
    """The 2-D map (``size x size``) of path counts of output 0's field for square layers:
    the outer product of the 1-D counts. Non-zero cells are the pixels the unit can use."""
    c = path_counts(layers, axis)
    return np.outer(c, c)


# -- the effective receptive field ----------------------------------------------------
def effective_receptive_field(model, input_shape, inputs=None, seed: int = 0,
                              center: tuple[int, int] | None = None) -> np.ndarray:
    """Mean |d y_centre / d x| over the inputs: Luo et al.'s effective receptive field, ``(H, W)``.

    ``input_shape``: ``(C, H, W)`` or ``(N, C, H, W)``; ``N`` random inputs (standard
    normal, from a generator seeded with ``seed``, leaving the global generator alone)
    are averaged, unless ``inputs`` gives them. The output unit is ``center`` (row, col)
    of the output map, by default its middle ``(Ho // 2, Wo // 2)``, summed over output
    channels. The model's mode is left as it is: call ``model.eval()`` first when
    BatchNorm or Dropout should behave as at test time.
    """
    import torch

    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")
    for what, v in zip(("N", "C", "H", "W"), shape):
        check_int(f"input_shape {what}", v, 1)
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if inputs is None:
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn(shape, generator=gen, dtype=dtype).to(device)
    else:
        x = torch.as_tensor(inputs, dtype=dtype, device=device)
        if tuple(x.shape) != shape:
            raise ValueError(f"inputs must have shape {shape}, got {tuple(x.shape)}")
        x = x.clone()
    x.requires_grad_(True)
    y = model(x)
    if y.ndim != 4:
        raise ValueError(f"the model must map (N, C, H, W) to (N, C', H', W'), got output shape {tuple(y.shape)}")
    ho, wo = y.shape[-2:]
    r, c = (ho // 2, wo // 2) if center is None else center
    r, c = check_int("center row", r, 0, ho - 1), check_int("center column", c, 0, wo - 1)
    # Only the input gradient: parameters' .grad stay untouched.
    (grad,) = torch.autograd.grad(y[:, :, r, c].sum(), x)
    return grad.abs().sum(dim=1).mean(dim=0).detach().cpu().double().numpy()


def erf_extent(erf, mass: float = 0.95, center: tuple[int, int] | None = None) -> int:
    """Side of the smallest square centred on ``center`` (default: the middle pixel) that
    holds ``mass`` of the map's total: a size to compare with the theoretical field."""
    erf = np.abs(as_array("erf", erf, ndims=(2,)))
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    h, w = erf.shape
    r, c = (h // 2, w // 2) if center is None else center
    total = erf.sum()
    if total == 0:
        raise ValueError("erf is all zeros: the output does not depend on the input")
    for radius in range(max(h, w)):
        inside = erf[max(r - radius, 0): r + radius + 1, max(c - radius, 0): c + radius + 1].sum()
        if inside >= mass * total * (1 - 1e-12):
            return 2 * radius + 1
    return 2 * max(h, w) - 1
