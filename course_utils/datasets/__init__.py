"""Data for the segmentation notebooks: SynthCity (built in) and real-data folders.

``SynthCity`` draws street scenes procedurally, so every notebook trains without a
download; ``VOCSegmentation`` and ``CityscapesSegmentation`` read the real data sets from
folders laid out as their official downloads. All three return ``(image float32 tensor
(3, H, W) in [0, 1], label int64 tensor (H, W))`` with ``IGNORE_INDEX`` (255) for pixels
to ignore (SynthCity built with ``augment_on="device"`` returns its 8-bit storage instead,
for whole batches to be converted and augmented on the GPU). The scene renderer is in
``render``, the joint augmentation in ``transforms``, its whole-batch form in ``device_augment``.
"""
from .synthcity import (CLASSES, IGNORE_INDEX, NUM_CLASSES, PALETTE, FlipScaleCrop, SynthCity,
                        augmentation_generator, class_frequencies, flip_scale_crop, generate,
                        render_scene)
from .folders import (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, LABEL_ID_TO_TRAIN_ID, VOC_CLASSES,
                      VOC_PALETTE, CityscapesSegmentation, VOCSegmentation, label_ids_to_train_ids)
from .device_augment import flip_scale_crop_batch, to_unit_float

__all__ = ["CLASSES", "PALETTE", "NUM_CLASSES", "IGNORE_INDEX", "generate", "render_scene",
           "SynthCity", "class_frequencies", "flip_scale_crop", "FlipScaleCrop",
           "augmentation_generator", "flip_scale_crop_batch", "to_unit_float", "VOCSegmentation",
           "VOC_CLASSES", "VOC_PALETTE", "CityscapesSegmentation", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE",
           "LABEL_ID_TO_TRAIN_ID", "label_ids_to_train_ids"]
