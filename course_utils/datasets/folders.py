"""Real segmentation data from folders laid out as the official downloads.

Nothing here downloads anything: point the classes at a folder you have (see
``data/README.md``). Both return the same samples as :class:`~.synthcity.SynthCity`,
``(image float32 tensor (3, H, W) in [0, 1], label int64 tensor (H, W))`` with
``IGNORE_INDEX`` (255) for void pixels, so the training code does not care where the data came from.

Pascal VOC 2012 (``VOCSegmentation(root)``), ``root`` = ``VOC2012/`` (or the ``VOCdevkit/``
above it)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png          palette PNG: the palette index is the class id, 255 = void
    ImageSets/Segmentation/<split>.txt  one <id> per line

Cityscapes (``CityscapesSegmentation(root)``), ``root`` holding the two unpacked archives
``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``::

    leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    gtFine/<split>/<city>/<name>_gtFine_labelIds.png   label ids 0..33, mapped to the 19 train ids
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..labels import IGNORE_INDEX, as_label_array

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


def _voc_palette(n: int) -> np.ndarray:
    """VOC's colour map: the bits of the class index, dealt out to R, G, B from the top bit down."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        code, rgb = c, [0, 0, 0]
        for shift in range(7, -1, -1):
            for ch in range(3):
                rgb[ch] |= ((code >> ch) & 1) << shift
            code >>= 3
        out[c] = rgb
    return out


VOC_PALETTE = _voc_palette(len(VOC_CLASSES))

# The 19 Cityscapes evaluation classes in train-id order, with their official colours.
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32)], dtype=np.uint8)

# labelId -> trainId for the ids that are evaluated, from the Cityscapes label definition
# (github.com/mcordts/cityscapesScripts, cityscapesscripts/helpers/labels.py). Every
# other id (0 unlabeled .. 6 ground, 9 parking, 10 rail track, 14 guard rail, 15 bridge,
# 16 tunnel, 18 polegroup, 29 caravan, 30 trailer, -1 license plate) is void (255).
LABEL_ID_TO_TRAIN_ID = {
    7: 0,    # road
    8: 1,    # sidewalk
    11: 2,   # building
    12: 3,   # wall
    13: 4,   # fence
    17: 5,   # pole
    19: 6,   # traffic light
    20: 7,   # traffic sign
    21: 8,   # vegetation
    22: 9,   # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
_TRAIN_ID_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label_id, _train_id in LABEL_ID_TO_TRAIN_ID.items():
    _TRAIN_ID_LUT[_label_id] = _train_id


def label_ids_to_train_ids(label_ids) -> np.ndarray:
    """Map a Cityscapes ``*_labelIds`` array to train ids 0..18, everything else to ``IGNORE_INDEX``."""
    ids = as_label_array("label_ids", label_ids, ndims=None)
    inside = (ids >= 0) & (ids <= 255)
    return np.where(inside, _TRAIN_ID_LUT[np.clip(ids, 0, 255)], IGNORE_INDEX).astype(np.int64)


# -- reading files ----------------------------------------------------------------------------
def read_image(path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8, or a ValueError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {path}: {err}") from err


def read_index_png(path) -> np.ndarray:
    """A label PNG as its ``(H, W)`` uint8 indices (palette ``P`` or grey ``L``), naming the file on error."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im) if mode in ("P", "L") else None
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read label image {path}: {err}") from err
    if arr is None:
        raise ValueError(f"label image {path} has mode {mode!r}; expected a palette ('P') or grey "
                         "('L') PNG whose pixel values are class indices, not colours")
    return arr


def _missing_error(kind: str, root: Path, missing, layout: str) -> FileNotFoundError:
    listed = "\n".join(f"  - {m}" for m in missing)
    return FileNotFoundError(f"{root} is not a {kind} folder; missing:\n{listed}\nExpected layout:\n{layout}")


def _list_missing_files(kind: str, paths) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = "\n".join(f"  - {m}" for m in missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(f"{len(missing)} {kind} file(s) listed but missing:\n{shown}{more}")


class _PairDataset(Dataset):
    """Image/label file pairs; subclasses decode the label and say what the classes are."""

    classes: tuple = ()
    palette: np.ndarray = np.zeros((0, 3), np.uint8)

    def __init__(self, pairs, transform=None):
        self.pairs = list(pairs)
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.pairs)

    def read_label(self, path) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index):
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        label = self.read_label(label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                             f"{label_path} is {label.shape[1]}x{label.shape[0]}")
        image = torch.from_numpy(image.transpose(2, 0, 1).copy()).float().div_(255.0)
        label = torch.from_numpy(label.astype(np.int64))
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label


class VOCSegmentation(_PairDataset):
    """Pascal VOC segmentation: 21 classes (0 = background), 255 = void (object borders)."""

    classes = VOC_CLASSES
    palette = VOC_PALETTE
    LAYOUT = ("  JPEGImages/<id>.jpg\n  SegmentationClass/<id>.png\n"
              "  ImageSets/Segmentation/<split>.txt")

    def __init__(self, root, split: str = "train", transform=None):
        root = Path(root)
        if not (root / "JPEGImages").is_dir() and (root / "VOC2012").is_dir():
            root = root / "VOC2012"          # the VOCdevkit/ folder above it also works
        self.root, self.split = root, split
        needed = [root / "JPEGImages", root / "SegmentationClass",
                  root / "ImageSets" / "Segmentation" / f"{split}.txt"]
        missing = [str(p.relative_to(root)) + ("/" if p.suffix == "" else "")
                   for p in needed if not p.exists()]
        if not root.is_dir():
            missing = [f"the folder {root} itself"]
        if missing:
            raise _missing_error("Pascal VOC", root, missing, self.LAYOUT)
        ids = [line.strip() for line in needed[2].read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"{needed[2]} lists no image ids")
        pairs = [(root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png") for i in ids]
        _list_missing_files("image", [p for p, _ in pairs])
        _list_missing_files("label", [q for _, q in pairs])
        super().__init__(pairs, transform)

    def read_label(self, path) -> np.ndarray:
        label = read_index_png(path)
        bad = (label >= len(self.classes)) & (label != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"label image {path} holds value {int(label[bad][0])}; VOC labels must be "
                             f"0..{len(self.classes) - 1} or {IGNORE_INDEX} (void)")
        return label

    def __repr__(self):
        return f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


class CityscapesSegmentation(_PairDataset):
    """Cityscapes fine annotations mapped to the 19 evaluation classes (train ids), 255 = void."""

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    LAYOUT = ("  leftImg8bit/<split>/<city>/<name>_leftImg8bit.png\n"
              "  gtFine/<split>/<city>/<name>_gtFine_labelIds.png")
    IMAGE_SUFFIX = "_leftImg8bit.png"
    LABEL_SUFFIX = "_gtFine_labelIds.png"

    def __init__(self, root, split: str = "train", transform=None):
        root = Path(root)
        self.root, self.split = root, split
        images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        missing = [f"{p.relative_to(root)}/" for p in (images_dir, labels_dir) if not p.is_dir()]
        if not root.is_dir():
            missing = [f"the folder {root} itself"]
        if missing:
            raise _missing_error("Cityscapes", root, missing, self.LAYOUT)
        images = sorted(images_dir.glob(f"*/*{self.IMAGE_SUFFIX}"))
        if not images:
            raise FileNotFoundError(f"no */*{self.IMAGE_SUFFIX} files under {images_dir}\n"
                                    f"Expected layout:\n{self.LAYOUT}")
        pairs = []
        for image in images:
            stem = image.name[: -len(self.IMAGE_SUFFIX)]
            pairs.append((image, labels_dir / image.parent.name / f"{stem}{self.LABEL_SUFFIX}"))
        _list_missing_files("label", [q for _, q in pairs])
        super().__init__(pairs, transform)

    def read_label(self, path) -> np.ndarray:
        return label_ids_to_train_ids(read_index_png(path))

    def __repr__(self):
        return f"CityscapesSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
