"""Segmentation models by name: ``build_model("fcn8s", num_classes=10, width=16)``.

Every model maps images ``(N, 3, H, W)`` to logits ``(N, num_classes, H, W)`` for any
``H, W`` and trains with batch size 1 (with ``norm="batch"`` as long as the coarsest
feature map has more than one pixel; ``norm="group"`` always).

Adding a model: write ``models/NAME.py`` with a :class:`SegmentationModel` subclass and a
builder decorated with ``@register_model("NAME")``, then import the module at the bottom
of this file.
"""
from __future__ import annotations

import inspect

from torch import nn

from .._checks import check_int

_REGISTRY: dict = {}


def register_model(name: str):
    """Decorator: make ``builder(num_classes, **options)`` available as ``build_model(name, ...)``."""
    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder
    return decorate


def available_models() -> list:
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """A fresh model ``name`` (see :func:`available_models`) with ``num_classes`` outputs.

    ``options`` go to the model (e.g. ``width``, ``norm``, ``output_stride``); the call is
    remembered in ``model.build_config`` so a checkpoint can rebuild the same model.
    """
    if name not in _REGISTRY:
        raise ValueError(f"name must be one of {', '.join(map(repr, available_models()))}; got {name!r}")
    num_classes = check_int("num_classes", num_classes, 1)
    builder = _REGISTRY[name]
    params = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [k for k in params if k != "num_classes"]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
                             f"options: {', '.join(allowed)}")
    model = builder(num_classes, **options)
    model.build_config = {"name": name, "num_classes": num_classes, "options": dict(options)}
    return model


# The model modules register themselves on import; they import register_model from here,
# which is defined above, so these imports must stay at the bottom.
from .backbone import (ResNetBackbone, SegmentationModel, adaptive_avg_pool2d, downsample_aligned,  # noqa: E402
                       make_norm, replicate_pad, upsample_aligned)
from .fcn import FCN, BilinearUpsample, convolutionalize  # noqa: E402
from .pspnet import PSPNet  # noqa: E402
from .deeplab import ASPP, DeepLab, aspp_rates  # noqa: E402
from .gscnn import GSCNN, sobel_magnitude  # noqa: E402

__all__ = ["build_model", "register_model", "available_models", "convolutionalize", "FCN",
           "BilinearUpsample", "ResNetBackbone", "SegmentationModel", "make_norm", "PSPNet", "DeepLab",
           "GSCNN", "ASPP", "aspp_rates", "upsample_aligned", "sobel_magnitude", "adaptive_avg_pool2d",
           "downsample_aligned", "replicate_pad"]
