"""Losses for segmentation and for Gated-SCNN's boundary supervision.

* :func:`cross_entropy`: per-pixel cross-entropy that skips void pixels (``ignore_index``);
  :class:`SegmentationCrossEntropy` applies it to a model's training output ``{"out": ...}``
  (the loss of every model without one of its own).
* :class:`AuxiliaryCrossEntropy`: cross-entropy plus a weighted cross-entropy of an
  auxiliary (deeply supervised) output, PSPNet's training loss when built with ``aux=True``.
* :func:`label_edges`: ground-truth boundary maps derived from label maps.
* :func:`balanced_bce`: binary cross-entropy on edge logits, weighted by the inverse class
  frequency per image as in HED (Xie and Tu, 2015), which Gated-SCNN uses for its shape
  stream: boundary pixels are a few percent of an image, and unweighted BCE would be
  minimised by predicting "no edge" everywhere.
* :func:`soft_boundaries`, :func:`gradient_boundaries` and :func:`dual_task_loss`: Gated-SCNN's
  dual-task regulariser, which asks the boundaries *of the predicted segmentation* to agree
  with the boundaries of the ground truth, and the segmentation to be right where the shape
  stream sees an edge. Written from the paper's description, not from its code.
* :class:`GSCNNLoss`: the three combined; Gated-SCNN's own loss (``GSCNN.criterion``), so
  ``fit`` uses it without being told.

The dual task's first term comes in two versions (``dual_task_loss(boundary=...)``,
``GSCNNLoss(dual_boundary=...)``):

* ``"paper"`` (the default): Takikawa, Acuna, Jampani, Fidler, "Gated-SCNN: Gated Shape CNNs for
  Semantic Segmentation", ICCV 2019, section 3.3; described below.
* ``"course"``, a simplification kept for comparison (notebook 08 measures both): the range
  (max - min) of ``softmax(logits / temperature)`` in a ``(2 radius + 1)``-square window
  (:func:`soft_boundaries`) against :func:`label_edges`, summed over valid pixels and divided
  by the number of pixels on a true or predicted edge. Once the predicted and true edges
  no longer touch (a shift of 2 pixels for radius 1) it stops growing: for a confident
  prediction every edge pixel then costs 1, however far the boundary is.

The paper's term (section 3.3, the dual-task regulariser's first term) is
``lambda_3 sum_{p+} |zeta(p+) - zeta_hat(p+)|`` with ``zeta = |grad(G * argmax_k p(y^k | r, s))| / sqrt 2``,
the argmax relaxed by a Gumbel softmax at temperature ``tau``, and ``p+`` the union of the
predicted and true boundary pixels. Here ``zeta`` is :func:`gradient_boundaries` (Gaussian
of ``sigma`` pixels, then central differences) of each class map of
``softmax((logits + g) / tau)``; ``g`` is Gumbel noise drawn from an explicit
``torch.Generator`` (``gumbel=``), or none at all (the default, deterministic: the
noise-free relaxation ``softmax(logits / tau)``, so a step's loss does not depend on a
global random state). The sum over ``p+`` is divided by the number of true boundary
elements, a number of the labels alone, so the term and its gradient are the paper's up
to a constant per batch, and the term keeps growing while the smoothed boundaries still
overlap (about ``2 (3 sigma + 1)`` pixels of shift), then saturates too.

The official code (github.com/nv-tlabs/GSCNN, ``my_functionals/DualTaskLoss.py`` and
``my_functionals/custom_functional.py``, ``loss.py``, ``train.py``) computes something else.
``DualTaskLoss.forward`` sets the logits of void pixels to 0 and their labels to class 0,
draws Gumbel noise from the global random state (``_sample_gumbel``), takes
``_gumbel_softmax_sample(..., tau=0.5)`` and ``compute_grad_mag`` of it and of the one-hot
labels (``_one_hot_embedding``, 19 classes written in), and returns
``0.5 mean_{g >= 1e-8} |g - g_hat| + 0.5 mean_{g_hat >= 1e-8} |g - g_hat|`` over (pixel, class)
elements. But ``compute_grad_mag`` smooths with ``convTri``, which returns its input before
filtering, and differentiates with ``gradient_central_diff``, which returns ``(input, input)``
on its first line (reported in nv-tlabs/GSCNN issue #16, where an author calls it "a bug,
probably an old debugging artifact", and in #79). So ``g = sqrt(2 p^2 + 1e-6) / max``, element
by element (about ``p / max p``): no smoothing, no derivative; as every value clears the 1e-8 threshold both
means run over every element, and the term is an L1 distance between the noisy class
probabilities and the one-hot labels, each divided by its largest value. Issue #64 asks why
the loss takes the segmentation and the labels but not the shape stream's edges
(``loss.py``: ``self.dual_task(segin, segmask)``).

Weights. In the paper ``lambda_3`` weights this term, within a total loss whose other terms
carry ``lambda_1``, ``lambda_2`` and ``lambda_4``; their values are not restated here, as no copy
of the paper's text was at hand to check them against. The official code's defaults, read
in ``train.py`` and ``loss.py``: ``--seg_weight``, ``--edge_weight``, ``--att_weight`` and
``--dual_weight`` all 1.0, and ``JointEdgeSegLoss.forward`` multiplies the edge BCE by a
further 20 (``self.edge_weight * 20 * self.bce2d(...)``); the attention term (cross-entropy where
the edge output exceeds 0.8) is a separate loss there, the second term of
:func:`dual_task_loss` here. :class:`GSCNNLoss` weights all its parts 1.0 by default.

Boundary convention (shared by :func:`label_edges` and :func:`soft_boundaries`): a pixel is
on a boundary when its ``(2 radius + 1)``-square window holds more than one class. So a
boundary is ``2 radius`` pixels thick, straddling the class change, and the soft version
of a one-hot (confident) prediction is exactly the hard version of its labels.

Cost: window maxima are separable (a row pass, then a column pass of element-wise
``torch.maximum`` over shifted slices), the same values as ``F.max_pool2d`` with
``-inf`` padding at a fraction of its CPU time. :func:`soft_boundaries` finds its winning
pixels without autograd and looks them up differentiably, so its backward pass touches
two pixels per output pixel instead of every class map; its gradient is the max-pool
formulation's (where classes tie for the largest range, the lowest takes the whole
gradient instead of an equal share). Nothing here reads a value back to Python, so a
step on a GPU never waits for the loss: :class:`GSCNNLoss` keeps its parts as tensors.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_int, check_positive
from .labels import IGNORE_INDEX
from .metrics import predicted_labels

__all__ = ["cross_entropy", "SegmentationCrossEntropy", "AuxiliaryCrossEntropy", "label_edges", "balanced_bce",
           "balanced_bce_weights", "soft_boundaries", "gradient_boundaries", "dual_task_loss", "GSCNNLoss"]


def _check_labels(labels) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3 or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor (N, H, W), got {shape}")
    return labels


def _check_logits(logits, labels) -> torch.Tensor:
    if (not isinstance(logits, torch.Tensor) or logits.ndim != 4 or not logits.is_floating_point()
            or logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be float (N, C, H, W) matching labels {tuple(labels.shape)}, got {shape}")
    return logits


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the pixels whose label is not ``ignore_index``."""
    labels = _check_labels(labels)
    _check_logits(logits, labels)
    return F.cross_entropy(logits, labels.long(), weight=weight, ignore_index=ignore_index)


class SegmentationCrossEntropy:
    """``loss(output, labels)``: :func:`cross_entropy` of a training output's ``output["out"]``."""

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        self.ignore_index = ignore_index

    def __call__(self, output, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict) or "out" not in output:
            raise ValueError("output must be a model's training output, a dict {'out': logits, ...}; got "
                             f"{type(output).__name__}")
        return cross_entropy(output["out"].float(), labels, self.ignore_index)

    def __repr__(self) -> str:
        return f"SegmentationCrossEntropy(ignore_index={self.ignore_index})"


class _RecordsParts:
    """A loss of several terms that keeps each term of its last call: ``last_tensors`` (detached,
    on the device, for logging without waiting) and ``last`` (Python floats, read when asked;
    on a GPU each read waits for the step)."""

    last_tensors: dict

    @property
    def last(self) -> dict:
        return {k: float(v) for k, v in self.last_tensors.items()}


class AuxiliaryCrossEntropy(_RecordsParts):
    """``loss(output, labels) = CE(output["out"]) + aux_weight * CE(output["aux"])``.

    Deep supervision as PSPNet trains (Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing
    Network", CVPR 2017, section 3.4): a second classifier on the stage-4 features gets its
    own cross-entropy, weighted 0.4, which helps the early layers learn; the auxiliary
    branch is dropped at test time. Both terms are :func:`cross_entropy` (void pixels
    skipped). ``last`` / ``last_tensors`` hold the two parts (``"seg"``, ``"aux"``) of the
    last call, as :class:`GSCNNLoss` does.
    """

    def __init__(self, aux_weight: float = 0.4, ignore_index: int = IGNORE_INDEX):
        check_positive("aux_weight", aux_weight, allow_zero=True)
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index
        self.last_tensors: dict = {}

    def __call__(self, output, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict) or "out" not in output or "aux" not in output:
            got = f"keys {sorted(output)}" if isinstance(output, dict) else type(output).__name__
            raise ValueError("output must be a training output with an auxiliary head, a dict {'out': logits, "
                             f"'aux': logits}} (a model built with aux=True, in training mode); got {got}")
        seg = cross_entropy(output["out"].float(), labels, self.ignore_index)
        aux = cross_entropy(output["aux"].float(), labels, self.ignore_index)
        self.last_tensors = {"seg": seg.detach(), "aux": aux.detach()}
        return seg + self.aux_weight * aux

    def __repr__(self) -> str:
        return f"AuxiliaryCrossEntropy(aux_weight={self.aux_weight}, ignore_index={self.ignore_index})"


def _window_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over each pixel's ``(2 radius + 1)``-square window of pixels inside the image.

    Equal to ``F.max_pool2d(x, 2 radius + 1, stride=1, padding=radius)`` (which pads with
    ``-inf``), computed as a row pass and a column pass of ``torch.maximum`` over shifted
    slices: ``4 radius`` element-wise maxima instead of ``(2 radius + 1)^2`` comparisons
    per pixel (CPU max pooling with stride 1 is slow). Used without gradients.
    """
    h, w, k = x.shape[-2], x.shape[-1], 2 * radius + 1
    p = F.pad(x, (radius, radius), value=float("-inf"))
    m = p[..., :, 0:w]
    for d in range(1, k):
        m = torch.maximum(m, p[..., :, d:d + w])
    p = F.pad(m, (0, 0, radius, radius), value=float("-inf"))
    m = p[..., 0:h, :]
    for d in range(1, k):
        m = torch.maximum(m, p[..., d:d + h, :])
    return m


def label_edges(labels: torch.Tensor, radius: int = 1, ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Boundary map ``(N, H, W)`` (float 0/1) of integer ``labels`` ``(N, H, W)``.

    A pixel is an edge when its ``(2 radius + 1)``-square window holds more than one class.
    Void pixels (``ignore_index``) are never edges and do not make their neighbours edges:
    the border of an unlabelled region is not a boundary anyone annotated.
    """
    labels = _check_labels(labels)
    radius = check_int("radius", radius, 1, 64)
    lab = labels[:, None].float()
    valid = torch.ones_like(lab, dtype=torch.bool) if ignore_index is None else lab != ignore_index
    hi = _window_max(torch.where(valid, lab, float("-inf")), radius)
    lo = -_window_max(torch.where(valid, -lab, float("-inf")), radius)
    return ((hi > lo) & valid)[:, 0].float()


def balanced_bce_weights(targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """HED's per-pixel weights for binary ``targets`` ``(N, H, W)``.

    In each image, edge pixels get ``beta = |negatives| / |pixels|`` and non-edge pixels
    ``1 - beta = |positives| / |pixels|`` (counting ``valid`` pixels only; invalid ones get 0),
    so both classes contribute the same total weight. An image without edges gives all
    its pixels weight 0 (``1 - beta = 0``): it has nothing to balance.
    """
    t = targets.float()
    v = torch.ones_like(t) if valid is None else valid.float()
    n = v.sum((1, 2), keepdim=True).clamp_min(1.0)
    pos = (t * v).sum((1, 2), keepdim=True)
    beta = (n - pos) / n
    return v * torch.where(t > 0.5, beta, 1.0 - beta)


def balanced_bce(edge_logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Class-balanced BCE: ``sum(w * bce) / |valid pixels|`` per image, then the mean over images.

    ``edge_logits`` is ``(N, 1, H, W)`` or ``(N, H, W)``; ``targets`` 0/1 ``(N, H, W)``, e.g.
    :func:`label_edges` of the labels; weights from :func:`balanced_bce_weights`.
    """
    if edge_logits.ndim == 4:
        if edge_logits.shape[1] != 1:
            raise ValueError(f"edge_logits must have one channel (N, 1, H, W), got {tuple(edge_logits.shape)}")
        edge_logits = edge_logits[:, 0]
    if edge_logits.shape != targets.shape:
        raise ValueError(f"edge_logits {tuple(edge_logits.shape)} and targets {tuple(targets.shape)} must "
                         "have the same (N, H, W)")
    w = balanced_bce_weights(targets, valid)
    bce = F.binary_cross_entropy_with_logits(edge_logits, targets.float(), reduction="none")
    n = (torch.ones_like(w) if valid is None else valid.float()).sum((1, 2)).clamp_min(1.0)
    return ((w * bce).sum((1, 2)) / n).mean()


def soft_boundaries(probs: torch.Tensor, radius: int = 1, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable boundary map ``(N, H, W)`` in [0, 1] of class probabilities ``(N, C, H, W)``.

    Per class, the range (max - min) of its probability over each pixel's window; then the
    largest range over the classes. For one-hot probabilities this is exactly
    :func:`label_edges` of the argmax (without void); for soft ones, boundaries are faint
    where the prediction hesitates. Gradients flow through the max and min pixels.
    With ``valid`` ``(N, H, W)``, the predictions at invalid (void) pixels are left out of
    every window, as :func:`label_edges` leaves void labels out (and invalid pixels get 0).
    """
    radius = check_int("radius", radius, 1, 64)
    if probs.ndim != 4:
        raise ValueError(f"probs must be (N, C, H, W), got {tuple(probs.shape)}")
    n, c, h, w = probs.shape
    r, k = radius, 2 * radius + 1
    # Which pixel wins each max and min is found without autograd; the result is then one
    # differentiable look-up of those pixels, so the backward pass scatters 2 N H W values
    # instead of running max-pool backward passes over all N C H W class maps. The winners
    # are those of the max-pool formulation (first in row-major window order).
    with torch.no_grad():
        hi = probs if valid is None else torch.where(valid[:, None], probs, float("-inf"))
        lo = -probs if valid is None else torch.where(valid[:, None], -probs, float("-inf"))
        spread = _window_max(hi, r) + _window_max(lo, r)
        # max(dim).indices: the first of tied maxima, as max pooling and amax pick them.
        cls = spread.max(1, keepdim=True).indices                            # (N, 1, H, W)
        hi = F.pad(hi, (r, r, r, r), value=float("-inf"))
        lo = F.pad(lo, (r, r, r, r), value=float("-inf"))
        offsets = [(di, dj) for di in range(k) for dj in range(k)]
        best = torch.stack([torch.cat([t[..., di:di + h, dj:dj + w].gather(1, cls) for di, dj in offsets], 1)
                            .max(1).indices for t in (hi, lo)])                  # (2, N, H, W)
        # A window with no valid pixel points anywhere; clamping keeps the index in range
        # (the pixel is masked below).
        rows = (torch.arange(h, device=probs.device)[:, None] + torch.div(best, k, rounding_mode="floor") - r)
        cols = (torch.arange(w, device=probs.device)[None, :] + best % k - r)
        base = (torch.arange(n, device=probs.device)[:, None, None] * c + cls[:, 0]) * (h * w)
        index = base + rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
    # gather, not take: take's backward (put_) is missing on some backends (MPS in older
    # releases), gather's (scatter_add) is everywhere; the look-up is the same.
    picked = probs.reshape(-1).gather(0, index.reshape(-1)).view(index.shape)
    out = picked[0] - picked[1]
    if valid is None:
        return out
    return torch.where(valid, out, torch.zeros((), dtype=probs.dtype, device=probs.device))


# -- the paper's first term: Gaussian-smoothed gradient magnitude of the class maps ----------
BOUNDARY_TERMS = ("course", "paper")


def _gaussian_kernel1d(sigma: float, dtype, device) -> torch.Tensor:
    """Normalised 1-D Gaussian, truncated at ``ceil(3 sigma)`` pixels each side."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _separable_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` filtered by ``kernel`` along rows then columns, each channel alone.

    Replicate padding: the image border is not a class change, so it makes no boundary.
    """
    n, c, h, w = x.shape
    r = (kernel.numel() - 1) // 2
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), kernel.view(1, 1, -1, 1))
    return y.view(n, c, h, w)


def gradient_boundaries(maps: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Gated-SCNN's boundary map ``zeta = |grad(G * maps)| / sqrt(2)`` per channel, ``(N, C, H, W)``.

    ``G`` is a Gaussian of standard deviation ``sigma`` pixels; the gradient is the central
    difference ``(x[i+1] - x[i-1]) / 2`` along each axis (the kernel of the official code's
    ``gradient_central_diff``), with replicate padding. For a one-hot map of a straight
    boundary the values lie in [0, 1/sqrt(2)] and fall to 0 about ``3 sigma + 1`` pixels away.

    ``sigma`` is 2 by default: the width of the smoothing the official code meant to apply
    (``convTri(E, 4)``, a triangle filter of radius 4, i.e. two boxes of 5 pixels, variance
    ``2 (5^2 - 1) / 12 = 4``), which it skips (see the module docstring).
    """
    if maps.ndim != 4 or not maps.is_floating_point():
        raise ValueError(f"maps must be float (N, C, H, W), got {tuple(maps.shape)}")
    check_positive("sigma", sigma)
    s = _separable_conv(maps, _gaussian_kernel1d(sigma, maps.dtype, maps.device))
    p = F.pad(s.reshape(-1, 1, *s.shape[2:]), (1, 1, 1, 1), mode="replicate").view(
        *s.shape[:2], s.shape[2] + 2, s.shape[3] + 2)
    gx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    gy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    # The tiny constant keeps the square root's backward finite where the map is flat
    # (there both gx and gy are 0, so the gradient it passes on is 0, not NaN).
    return torch.sqrt((gx * gx + gy * gy + 1e-12) / 2)


def _boundary_bands(hard: torch.Tensor, num_classes: int, sigma: float) -> torch.Tensor:
    """``(N, C, H, W)`` bool: class ``k``'s membership changes within reach of pixel ``(i, j)``.

    Reach is the support of ``grad G``: ``ceil(3 sigma)`` for the Gaussian plus 1 for the
    central difference. Outside these bands :func:`gradient_boundaries` of the one-hot map of
    ``hard`` is exactly 0; computing them from integer labels avoids a float threshold.
    """
    reach = max(1, math.ceil(3 * sigma)) + 1
    onehot = F.one_hot(hard, num_classes).permute(0, 3, 1, 2).float()
    return (_window_max(onehot, reach) + _window_max(-onehot, reach)) > 0


def _gumbel_noise(shape, generator: torch.Generator, dtype, device) -> torch.Tensor:
    """Gumbel(0, 1) samples ``-log(-log U)``, drawn from ``generator`` (eps as the official code)."""
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
    eps = 1e-10
    return -torch.log(eps - torch.log(u + eps))


def _relaxed_argmax(seg_logits: torch.Tensor, tau: float, gumbel: torch.Generator | None) -> torch.Tensor:
    """``softmax((logits + g) / tau)`` over classes: ``g`` Gumbel noise, or 0 without a generator."""
    if gumbel is not None:
        seg_logits = seg_logits + _gumbel_noise(seg_logits.shape, gumbel, seg_logits.dtype, seg_logits.device)
    return torch.softmax(seg_logits / tau, 1)


def _paper_term(seg_logits, labels, valid, tau, sigma, gumbel):
    """The paper's ``sum_{p+} |zeta - zeta_hat|`` divided by the number of true boundary elements."""
    c = seg_logits.shape[1]
    probs = _relaxed_argmax(seg_logits, tau, gumbel)
    with torch.no_grad():
        pred = predicted_labels(seg_logits)
        # At void pixels the labels are taken to be the prediction, so the border of an
        # unlabelled region is no boundary (as in label_edges) and costs nothing.
        truth = torch.where(valid, labels, pred)
        target = torch.where(valid[:, None], F.one_hot(truth.long(), c).permute(0, 3, 1, 2).to(probs.dtype),
                             probs.detach())
        on_truth = _boundary_bands(truth, c, sigma) & valid[:, None]
        union = (_boundary_bands(pred, c, sigma) & valid[:, None]) | on_truth
    diff = (gradient_boundaries(probs, sigma) - gradient_boundaries(target, sigma)).abs()
    # The divisor depends on the labels only: the term is the paper's sum scaled by a
    # constant per batch, so its gradient is the paper's, and it does not shrink as the
    # predicted boundaries move away (a divisor that grows with |p+| would make it fall).
    return (diff * union).sum() / on_truth.sum().clamp_min(1)


def dual_task_loss(seg_logits: torch.Tensor, labels: torch.Tensor, edge_logits: torch.Tensor | None = None,
                   ignore_index: int = IGNORE_INDEX, radius: int = 1, temperature: float = 1.0,
                   edge_threshold: float = 0.8, boundary: str = "paper", tau: float = 0.5, sigma: float = 2.0,
                   gumbel: torch.Generator | None = None) -> torch.Tensor:
    """Gated-SCNN's dual-task regulariser (two terms, summed).

    1. Segmentation -> boundaries, one of two terms chosen by ``boundary``:

       * ``"course"``: ``sum |soft_boundaries(softmax(seg / temperature)) - label_edges(labels)|``
         over valid pixels, divided by the number of pixels that are a boundary in the ground
         truth or in the hard prediction. Uses ``radius`` and ``temperature``.
       * ``"paper"`` (default): ``sum_{p+} |zeta - zeta_hat|`` with ``zeta = gradient_boundaries(softmax((seg + g)
         / tau), sigma)`` per class and ``zeta_hat`` the same of the one-hot labels; ``g`` is Gumbel
         noise drawn from the generator ``gumbel``, or 0 when ``gumbel`` is None (deterministic).
         ``p+`` is the union of the predicted boundary elements ``P`` and the true ones ``T``:
         the (pixel, class) elements where class membership changes within reach of the
         operator in the hard prediction (``P``) or in the labels (``T``), void pixels left out.
         The sum is divided by ``|T|`` (a number of the labels alone, so the gradient is the
         paper's up to that constant). Uses ``tau`` and ``sigma``.

       Void pixels are skipped by both.
    2. Edges -> segmentation (only with ``edge_logits``): cross-entropy of the segmentation at
       the pixels where the predicted edge probability exceeds ``edge_threshold``.

    Both are zero for a confident prediction equal to the labels, and positive when the
    predicted segmentation's boundaries and the true ones disagree.
    """
    labels = _check_labels(labels)
    _check_logits(seg_logits, labels)
    boundary, radius = _check_dual_options(boundary, temperature, tau, sigma, gumbel, radius)
    if not 0.0 <= edge_threshold < 1.0:
        raise ValueError(f"edge_threshold must be in [0, 1), got {edge_threshold}")
    valid = labels != ignore_index
    gt = label_edges(labels, radius, ignore_index) if boundary == "course" else None
    ce = None
    if edge_logits is not None:
        ce = F.cross_entropy(seg_logits, labels.long(), ignore_index=ignore_index, reduction="none")
    return _dual_task(seg_logits, labels, valid, gt, edge_logits, ce, ignore_index, radius, temperature,
                      edge_threshold, boundary, tau, sigma, gumbel)


def _check_dual_options(boundary, temperature, tau, sigma, gumbel, radius):
    """The first term's options, checked once for :func:`dual_task_loss` and :class:`GSCNNLoss`."""
    check_choice("boundary", boundary, BOUNDARY_TERMS)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    check_positive("tau", tau)
    check_positive("sigma", sigma)
    if gumbel is not None and not isinstance(gumbel, torch.Generator):
        raise ValueError(f"gumbel must be None (no noise) or a torch.Generator, got {type(gumbel).__name__}")
    if boundary == "paper" and temperature != 1.0:
        # Refused rather than ignored: the paper's term has its own temperature, tau.
        raise ValueError(f"temperature applies to boundary='course' only; for boundary='paper' set tau "
                         f"(got temperature={temperature})")
    return boundary, check_int("radius", radius, 1, 64)


def _dual_task(seg_logits, labels, valid, gt, edge_logits, ce, ignore_index, radius, temperature, edge_threshold,
               boundary="course", tau=0.5, sigma=2.0, gumbel=None):
    """:func:`dual_task_loss` from precomputed parts: ``valid`` pixels, ground-truth edges ``gt`` (used
    by the course term only) and the per-pixel cross-entropy ``ce`` (0 at void pixels; needed only
    with ``edge_logits``), which :class:`GSCNNLoss` shares with its other terms instead of
    computing them twice."""
    if boundary == "paper":
        loss = _paper_term(seg_logits, labels, valid, tau, sigma, gumbel)
    else:
        loss = _course_term(seg_logits, valid, gt, ignore_index, radius, temperature)
    if edge_logits is not None:
        e = edge_logits[:, 0] if edge_logits.ndim == 4 else edge_logits
        if e.shape != labels.shape:
            raise ValueError(f"edge_logits must be (N, 1, H, W) matching labels {tuple(labels.shape)}, "
                             f"got {tuple(edge_logits.shape)}")
        mask = (torch.sigmoid(e.detach()) > edge_threshold) & valid
        loss = loss + (ce * mask).sum() / mask.sum().clamp_min(1)
    return loss


def _course_term(seg_logits, valid, gt, ignore_index, radius, temperature):
    """The course's first term: window range of the softmax against :func:`label_edges`."""
    soft = soft_boundaries(torch.softmax(seg_logits / temperature, 1), radius, valid)
    with torch.no_grad():
        hard = label_edges(torch.where(valid, predicted_labels(seg_logits), ignore_index), radius, ignore_index)
        union = ((gt > 0) | (hard > 0)) & valid
    diff = (soft - gt).abs() * valid
    return diff.sum() / union.sum().clamp_min(1)


class GSCNNLoss(_RecordsParts):
    """``seg_weight * CE + edge_weight * balanced BCE(edges, label_edges) + dual_weight * dual-task``.

    Call as ``loss(output, labels)`` with a model output ``{"out": logits, "edge": edge_logits}``
    (Gated-SCNN in training mode) or plain logits (then only the cross-entropy and the
    first dual-task term apply). ``last`` holds the parts of the last call as floats, read
    when asked (on a GPU each read waits for the step); ``last_tensors`` holds them as
    detached tensors, for callers that log without waiting.

    The terms share their work: the ground-truth edges are computed once for the edge BCE
    and the dual-task term, and the per-pixel cross-entropy once for the segmentation loss
    and the dual-task edge term (the same values as :func:`cross_entropy` and
    :func:`dual_task_loss` called separately, up to float rounding).

    ``dual_boundary``, ``dual_tau``, ``dual_sigma`` and ``dual_gumbel`` are :func:`dual_task_loss`'s
    ``boundary``, ``tau``, ``sigma`` and ``gumbel``: ``dual_boundary="paper"`` (the default) trains
    with the paper's first term, ``"course"`` with the course's simplification.
    """

    def __init__(self, seg_weight: float = 1.0, edge_weight: float = 1.0, dual_weight: float = 1.0,
                 ignore_index: int = IGNORE_INDEX, radius: int = 1, edge_threshold: float = 0.8,
                 dual_boundary: str = "paper", dual_tau: float = 0.5, dual_sigma: float = 2.0,
                 dual_gumbel: torch.Generator | None = None):
        for name, v in (("seg_weight", seg_weight), ("edge_weight", edge_weight), ("dual_weight", dual_weight)):
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.seg_weight, self.edge_weight, self.dual_weight = seg_weight, edge_weight, dual_weight
        self.ignore_index = ignore_index
        check_choice("dual_boundary", dual_boundary, BOUNDARY_TERMS)
        check_positive("dual_tau", dual_tau)
        check_positive("dual_sigma", dual_sigma)
        if dual_gumbel is not None and not isinstance(dual_gumbel, torch.Generator):
            raise ValueError("dual_gumbel must be None (no noise) or a torch.Generator, got "
                             f"{type(dual_gumbel).__name__}")
        self.radius = check_int("radius", radius, 1, 64)
        self.edge_threshold = edge_threshold
        self.dual_boundary, self.dual_tau, self.dual_sigma = dual_boundary, dual_tau, dual_sigma
        self.dual_gumbel = dual_gumbel
        self.last_tensors: dict = {}

    def __call__(self, output, labels: torch.Tensor) -> torch.Tensor:
        if isinstance(output, dict):
            if "out" not in output:
                raise ValueError(f"output must be logits or a dict with 'out', got keys {sorted(output)}")
            logits, edge = output["out"], output.get("edge")
        else:
            logits, edge = output, None
        labels = _check_labels(labels)
        _check_logits(logits, labels)
        valid = labels != self.ignore_index
        # One per-pixel cross-entropy (0 at void pixels) for the segmentation term and the
        # dual-task edge term; its mean over valid pixels is F.cross_entropy's mean.
        ce = F.cross_entropy(logits, labels.long(), ignore_index=self.ignore_index, reduction="none")
        seg = ce.sum() / valid.sum()
        total, parts = self.seg_weight * seg, {"seg": seg.detach()}
        gt = None
        if (edge is not None and self.edge_weight) or (self.dual_weight and self.dual_boundary == "course"):
            gt = label_edges(labels, self.radius, self.ignore_index)
        if edge is not None and self.edge_weight:
            bce = balanced_bce(edge, gt, valid)
            total = total + self.edge_weight * bce
            parts["edge"] = bce.detach()
        if self.dual_weight:
            dual = _dual_task(logits, labels, valid, gt, edge, ce, self.ignore_index, self.radius, 1.0,
                              self.edge_threshold, self.dual_boundary, self.dual_tau, self.dual_sigma,
                              self.dual_gumbel)
            total = total + self.dual_weight * dual
            parts["dual"] = dual.detach()
        self.last_tensors = parts
        return total

    def __repr__(self) -> str:
        # The first term is always named, so a stored config says which one trained the model.
        paper = (f", dual_boundary='paper', dual_tau={self.dual_tau}, dual_sigma={self.dual_sigma}, "
                 f"dual_gumbel={'None' if self.dual_gumbel is None else 'Generator'}"
                 if self.dual_boundary == "paper" else ", dual_boundary='course'")
        return (f"GSCNNLoss(seg_weight={self.seg_weight}, edge_weight={self.edge_weight}, "
                f"dual_weight={self.dual_weight}, ignore_index={self.ignore_index}, radius={self.radius}{paper})")
