"""Helpers for the Fully Convolutional Learning course.

Each module holds one topic of the course; the notebooks import what they need:
``upsampling`` (notebook 01), ``plotting`` and ``widgets`` (all of them),
``notebook.setup`` (first cell of every notebook), ``device`` (where training runs).
"""
__version__ = "0.1.0"
