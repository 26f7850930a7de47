"""Segmentation metrics, one module per subject.

* :mod:`.confusion`: the dataset-level confusion matrix (:class:`ConfusionMatrix`), mIoU,
  and the IoU formula, written once (:func:`iou_of_matrix`).
* :mod:`.boundaries`: the boundary F-score at a pixel tolerance.
* :mod:`.crops`: distance-based evaluation by crop factor around the vanishing point.
* :mod:`.significance`: paired-bootstrap confidence intervals and an earned bold font.
* :mod:`.instances`: connected components of a class, their boxes, and box matching.
"""
from .boundaries import boundary_counts, boundary_f1, davis_tolerance_px, f1_from_counts, label_boundary
from .confusion import ConfusionMatrix, class_iou_of_matrix, iou_of_matrix, miou_of_matrix, predicted_labels
from .crops import crop_box, crop_factor_miou, vanishing_point_from_labels, zoomed_crop_miou
from .instances import box_iou, class_components, component_match_counts, match_boxes
from .significance import BootstrapResult, Winner, paired_bootstrap, per_image_confusion, significant_best

__all__ = [
    "ConfusionMatrix", "predicted_labels", "iou_of_matrix", "miou_of_matrix", "class_iou_of_matrix",
    "label_boundary", "boundary_counts", "f1_from_counts", "boundary_f1", "davis_tolerance_px",
    "crop_box", "crop_factor_miou", "zoomed_crop_miou", "vanishing_point_from_labels",
    "per_image_confusion", "BootstrapResult", "paired_bootstrap", "Winner", "significant_best",
    "class_components", "box_iou", "match_boxes", "component_match_counts",
]
