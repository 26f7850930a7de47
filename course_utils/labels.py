"""Label conventions shared by data, losses, metrics, plotting and widgets.

``IGNORE_INDEX`` marks void pixels (Cityscapes' and Pascal VOC's convention, and the
default of ``nn.CrossEntropyLoss(ignore_index=...)`` in the course): no loss, no metric.
Everything in the package that means "void" uses this name, never the literal.
"""
from __future__ import annotations

__all__ = ["IGNORE_INDEX"]

IGNORE_INDEX = 255
