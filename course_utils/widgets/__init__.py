"""Instructor demos: one function per demo, each returning a ready widget.

Every module in this package registers its demos with ``@register(name)``, so ``DEMOS``
lists every demo of the course: the widget sweep test and ``make bench`` walk it, and a
new demo is tested and timed as soon as its module is imported here.
"""
from .base import DEMOS, Demo, register
from .bootstrap import bootstrap_demo
from .conv_matrix import checkerboard_demo, conv_matrix_demo
from .pooling import unpooling_demo
from .predictions import prediction_browser
from .receptive_field import receptive_field_demo
from .upsampling import signal_demo, upsampling_demo

__all__ = ["DEMOS", "Demo", "register", "bootstrap_demo", "checkerboard_demo", "conv_matrix_demo",
           "unpooling_demo", "prediction_browser", "receptive_field_demo", "signal_demo", "upsampling_demo"]
