"""Instructor demos: one function per demo, each returning a ready widget.

Every module in this package registers its demos with ``@register(name)``; importing
the package imports them all, so ``DEMOS`` lists every demo of the course.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from .base import DEMOS, Demo, register

for _module in _pkgutil.iter_modules(__path__):
    if _module.name != "base":
        _importlib.import_module(f"{__name__}.{_module.name}")

globals().update({builder.__name__: builder for builder in DEMOS.values()})
__all__ = ["DEMOS", "Demo", "register", *(b.__name__ for b in DEMOS.values())]
