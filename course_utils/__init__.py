"""Helpers for the Fully Convolutional Learning course.

One module or subpackage per subject: the lesson's ops (upsampling, pooling, conv_matrix,
receptive_field), data (labels, datasets, images), models and losses, training and
evaluation (precision, device, threads, training, metrics, pretrain, zoo), teaching
(notebook, plotting, selfcheck, widgets) and plumbing (_checks, atomic, paths), with the
command line apart (cli; the library never imports it). The module map, one line per
module, is in docs/contributors.md.
"""
__version__ = "0.1.0"
