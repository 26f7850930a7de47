"""course_utils.datasets: SynthCity, augmentation, real-data folders; label plotting."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

import hashlib

from course_utils import datasets as ds
from course_utils.datasets import render, synthcity as sc
from course_utils.plotting import colorize, overlay, show_segmentation


@pytest.fixture(scope="module")
def many():
    """A few hundred small scenes, shared by the statistics tests."""
    return ds.generate(300, 64, seed=11)


# -- the contract -------------------------------------------------------------------------
def test_classes_palette_and_constants():
    assert ds.CLASSES == ("road", "sidewalk", "building", "vegetation", "sky", "pole", "traffic sign",
                          "car", "person")
    assert ds.NUM_CLASSES == 9 and ds.IGNORE_INDEX == 255
    # Official Cityscapes colours, checked entry by entry against the Cityscapes table.
    cityscapes = dict(zip(ds.CITYSCAPES_CLASSES, map(tuple, ds.CITYSCAPES_PALETTE.tolist())))
    for name, colour in zip(ds.CLASSES, ds.PALETTE.tolist()):
        assert tuple(colour) == cityscapes[name]
    assert tuple(ds.PALETTE[0]) == (128, 64, 128) and tuple(ds.PALETTE[5]) == (153, 153, 153)


@pytest.mark.parametrize("size, shape", [(32, (32, 32)), ((24, 40), (24, 40)), ((48, 16), (48, 16))])
def test_generate_shapes_dtypes_ranges(size, shape):
    images, labels = ds.generate(5, size, seed=0)
    assert images.shape == (5, 3, *shape) and images.dtype == np.float32
    assert labels.shape == (5, *shape) and labels.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.min() >= 0 and labels.max() < ds.NUM_CLASSES


def test_deterministic_in_seed_and_independent_of_n():
    a = ds.generate(10, 48, seed=7)
    b = ds.generate(10, 48, seed=7)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = ds.generate(3, 48, seed=7)
    np.testing.assert_array_equal(a[0][:3], c[0])
    np.testing.assert_array_equal(a[1][:3], c[1])
    d = ds.generate(3, 48, seed=8)
    assert not np.array_equal(c[1], d[1])
    assert not np.array_equal(a[1][0], a[1][1])            # scenes differ from each other


def test_scenes_are_bit_identical_to_the_reference():
    # Hashes recorded from the pre-split renderer (one module, synthcity.py) at commit
    # 1173931, before it moved into datasets/render.py. The committed encoder, the model
    # zoo and every notebook number were made from these pixels: a renderer change that
    # alters one bit must be deliberate (and remake all of them).
    reference = {
        (8, 128, 3): ("d864359408986af4ef963cfe3c0f1f7f878a50198db1c596c8cc6c0010431d5c",
                      "75c9be1d75597bf350e509638a1b21709e60ad8b55fcf0789a1f9cf0bb0ff2f2"),
        (2, (96, 160), 11): ("839828b2f79475934a14a8d879553454f05862b1b6c93a826fe1e069ec8641a7",
                             "9fed4b482064e00a44a27cf056b6e16d5a7d83658c90f4bc31d9711a07157bb6"),
    }
    for (n, size, seed), (image_hash, label_hash) in reference.items():
        images, labels = ds.generate(n, size, seed=seed)
        assert hashlib.sha256(images.tobytes()).hexdigest() == image_hash
        assert hashlib.sha256(labels.tobytes()).hexdigest() == label_hash


def test_renderer_class_ids_name_the_classes():
    ids = dict(road=render.ROAD, sidewalk=render.SIDEWALK, building=render.BUILDING,
               vegetation=render.VEGETATION, sky=render.SKY, pole=render.POLE,
               sign=render.SIGN, car=render.CAR, person=render.PERSON)
    names = {name: ds.CLASSES[i] for name, i in ids.items()}
    assert names == dict(road="road", sidewalk="sidewalk", building="building", vegetation="vegetation",
                         sky="sky", pole="pole", sign="traffic sign", car="car", person="person")
    assert render.NUM_CLASSES == len(ds.CLASSES)


def test_render_scene_is_the_same_scene():
    rng = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(2,)))
    img, lab = sc.render_scene((40, 56), rng)
    images, labels = ds.generate(3, (40, 56), seed=5)
    np.testing.assert_array_equal(img, images[2])
    np.testing.assert_array_equal(lab, labels[2])


@pytest.mark.parametrize("kwargs, name", [
    (dict(n=0), "n"), (dict(n=2.0), "n"), (dict(n=-3), "n"), (dict(n=True), "n"),
    (dict(size=8), "size"), (dict(size=(64, 4000)), "size"), (dict(size=(32,)), "size"),
    (dict(size="64"), "size"), (dict(size=64.0), "size"), (dict(seed=-1), "seed"), (dict(seed=0.5), "seed"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    args = dict(n=2, size=32, seed=0) | kwargs
    with pytest.raises(ValueError, match=rf"^{name}"):
        ds.generate(**args)


# -- what the scenes contain ---------------------------------------------------------------
def test_every_class_appears_and_poles_are_rare(many):
    _, labels = many
    freq = ds.class_frequencies(labels)
    assert freq.shape == (9,) and abs(freq.sum() - 1.0) < 1e-12
    present = np.array([(labels == c).any(axis=(1, 2)).mean() for c in range(9)])
    assert (present > 0.5).all(), dict(zip(ds.CLASSES, present))
    for c in ("road", "sidewalk", "building", "vegetation", "sky"):
        assert present[ds.CLASSES.index(c)] > 0.95
    pole = freq[ds.CLASSES.index("pole")]
    assert 0.001 < pole < 0.02
    assert freq[ds.CLASSES.index("road")] > 10 * pole


def test_poles_are_one_to_three_pixels_wide_at_128():
    _, labels = ds.generate(40, 128, seed=3)
    widths = []
    for lab in labels:
        mask = (lab == ds.CLASSES.index("pole")).astype(np.int8)
        edges = np.diff(np.pad(mask, ((0, 0), (1, 1))), axis=1)
        widths += list(np.nonzero(edges == -1)[1] - np.nonzero(edges == 1)[1])
    widths = np.array(widths)
    assert widths.size > 500
    # Runs wider than 3 px are rare: the nearest poles and the horizontal arms of lamps.
    assert widths.min() >= 1 and np.median(widths) <= 2 and np.mean(widths <= 3) > 0.93


def test_perspective_nearer_cars_are_lower_and_larger(many):
    # A car's bottom edge is its contact with the road: the further below the horizon
    # it is, the nearer the car, so the larger its image.
    _, labels = many
    bottoms, areas = [], []
    for lab in labels:
        comp, _ = ndi.label(lab == ds.CLASSES.index("car"))
        for k, box in enumerate(ndi.find_objects(comp), start=1):
            bottoms.append(box[0].stop)
            areas.append(int((comp[box] == k).sum()))
    assert len(areas) > 100
    assert scipy.stats.spearmanr(bottoms, areas).statistic > 0.6
    low = np.array(bottoms) > np.median(bottoms)
    assert np.mean(np.array(areas)[low]) > 3 * np.mean(np.array(areas)[~low])


def test_sky_is_above_the_road(many):
    _, labels = many
    for lab in labels[:50]:
        rows = np.arange(lab.shape[0])[:, None]
        sky, road = lab == ds.CLASSES.index("sky"), lab == ds.CLASSES.index("road")
        if sky.any() and road.any():
            assert np.max(np.where(sky, rows, -1)) < np.min(np.where(road, rows, 10**6))


def test_colour_alone_does_not_give_the_class(many):
    # The best a per-pixel colour classifier can do: the majority class of each colour
    # cell of a 16x16x16 RGB grid, fitted on half of the scenes, scored on the other half.
    images, labels = many
    rgb = np.clip(images.transpose(0, 2, 3, 1).reshape(-1, 3), 0, 0.999)
    code = (rgb * 16).astype(int) @ np.array([256, 16, 1])
    y = labels.ravel()
    half = y.size // 2
    counts = np.zeros((4096, 9))
    np.add.at(counts, (code[:half], y[:half]), 1)
    pred = counts.argmax(1)[code[half:]]
    cm = np.bincount(y[half:] * 9 + pred, minlength=81).reshape(9, 9)
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    assert np.nanmean(iou) < 0.4


# -- class frequencies ----------------------------------------------------------------------
def test_class_frequencies_by_hand():
    labels = np.array([[0, 0, 1], [255, 2, 2]])
    np.testing.assert_allclose(ds.class_frequencies(labels, num_classes=4), [0.4, 0.2, 0.4, 0.0])
    np.testing.assert_allclose(ds.class_frequencies(torch.tensor(labels), num_classes=3), [0.4, 0.2, 0.4])
    assert ds.class_frequencies(np.full((2, 2), 255)).sum() == 0


@pytest.mark.parametrize("labels, match", [
    (np.array([[0, 9]]), "labels must be in"), (np.array([[-1, 0]]), "labels must be in"),
    (np.zeros((2, 2), dtype=np.float32), "labels must hold integer class ids"),
])
def test_class_frequencies_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        ds.class_frequencies(labels)


# -- the Dataset and its augmentation --------------------------------------------------------
def test_dataset_samples_match_generate():
    data = ds.SynthCity(4, (32, 48), seed=2)
    images, labels = ds.generate(4, (32, 48), seed=2)
    assert len(data) == 4
    x, y = data[1]
    assert x.shape == (3, 32, 48) and x.dtype == torch.float32
    assert y.shape == (32, 48) and y.dtype == torch.int64
    assert (x - torch.from_numpy(images[1])).abs().max() <= 0.5 / 255 + 1e-6   # 8-bit storage
    assert torch.equal(y, torch.from_numpy(labels[1]))
    assert torch.equal(data[-1][1], data[3][1])
    with pytest.raises(IndexError):
        data[4]
    np.testing.assert_allclose(data.class_frequencies(), ds.class_frequencies(labels))


@pytest.mark.parametrize("kwargs, name", [
    (dict(n=0), "n"), (dict(size=10), "size"), (dict(seed=-2), "seed"),
    (dict(crop=0), "crop"), (dict(scale_range=(2, 1)), "scale_range"),
])
def test_dataset_bad_input_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        ds.SynthCity(**(dict(n=1, size=16) | kwargs))
    data = ds.SynthCity(1, 16)
    with pytest.raises(ValueError, match="^epoch"):
        data.set_epoch(-1)


def test_augmentation_is_reproducible_per_seed_epoch_index():
    a = ds.SynthCity(6, 32, seed=1, augment=True)
    b = ds.SynthCity(6, 32, seed=1, augment=True)
    for i in (0, 3, 5):
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Access order does not matter (shuffling, workers): the index fixes the randomness.
    first = [a[i][1] for i in range(6)]
    assert all(torch.equal(a[i][1], first[i]) for i in reversed(range(6)))
    before = [a[i][0] for i in range(6)]
    a.set_epoch(1)
    after = [a[i][0] for i in range(6)]
    assert any(not torch.equal(p, q) for p, q in zip(before, after))
    a.set_epoch(0)
    assert all(torch.equal(a[i][0], before[i]) for i in range(6))
    # A DataLoader with two workers gives exactly the same batches.
    loader = torch.utils.data.DataLoader(a, batch_size=3, num_workers=2)
    x, y = next(iter(loader))
    assert torch.equal(x[1], before[1]) and torch.equal(y[2], first[2])


def palette_image(labels):
    """An image that is a known function of the labels: each pixel the colour of its class."""
    pal = torch.tensor(ds.PALETTE, dtype=torch.float32) / 255
    return pal[labels].permute(2, 0, 1).contiguous()


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), lo=st.floats(0.5, 1.5), span=st.floats(0.0, 0.6),
       crop=st.sampled_from([None, 40, (24, 56), (80, 96)]))
def test_augmentation_keeps_image_and_labels_aligned(seed, lo, span, crop):
    # Blocks of 4x4 pixels: nothing thinner than the widest resampling kernel used here
    # (radius 1/scale <= 2 pixels), so a uniform label neighbourhood means uniform input.
    labels = torch.from_numpy(np.kron(ds.generate(1, 16, seed=seed % 7)[1][0], np.ones((4, 4), np.int64)))
    image = palette_image(labels)
    g = torch.Generator().manual_seed(seed)
    x, y = ds.flip_scale_crop(image, labels, g, scale_range=(lo, lo + span), crop=crop)
    h, w = (64, 64) if crop is None else ((crop, crop) if isinstance(crop, int) else crop)
    assert x.shape == (3, h, w) and y.shape == (h, w) and y.dtype == torch.int64
    # Where a label's 3x3 neighbourhood is one class, bilinear resampling cannot have
    # blended colours: the pixel must still be exactly its class's colour.
    yy = y.numpy()
    uniform = (ndi.maximum_filter(yy, 3, mode="nearest") == ndi.minimum_filter(yy, 3, mode="nearest"))
    inside = uniform & (yy != 255)
    inside[[0, -1], :] = inside[:, [0, -1]] = False      # the crop's frame has unseen neighbours
    assert inside.sum() > 0.3 * (yy != 255).sum()
    expected = palette_image(torch.from_numpy(np.where(inside, yy, 0)))
    np.testing.assert_allclose(x.numpy()[:, inside], expected.numpy()[:, inside], atol=1e-5)
    # Padding: label 255 and a black image, both in the same place.
    pad = yy == 255
    assert np.all(x.numpy()[:, pad] == 0)


def test_augmentation_by_hand_flip_only():
    labels = torch.arange(12).reshape(3, 4) % 9
    image = torch.rand(3, 3, 4)
    outs = set()
    for s in range(20):
        x, y = ds.flip_scale_crop(image, labels, torch.Generator().manual_seed(s), scale_range=(1, 1))
        flipped = torch.equal(y, labels.flip(-1))
        assert flipped or torch.equal(y, labels)
        assert torch.equal(x, image.flip(-1) if flipped else image)
        outs.add(flipped)
    assert outs == {True, False}


def test_augmentation_downscale_pads_with_ignore():
    labels = torch.zeros(40, 40, dtype=torch.int64)
    x, y = ds.flip_scale_crop(torch.ones(3, 40, 40), labels, torch.Generator().manual_seed(0),
                              scale_range=(0.5, 0.5))
    assert (y == 0).sum() == 400 and (y == 255).sum() == 1200
    assert torch.equal(x[0] == 1, y == 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale_range=(1.5, 1.0)), "scale_range"), (dict(scale_range=5), "scale_range"),
    (dict(crop=0), "crop"), (dict(crop=(3, 2, 1)), "crop"),
])
def test_augmentation_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ds.flip_scale_crop(torch.zeros(3, 8, 8), torch.zeros(8, 8, dtype=torch.int64), **kwargs)
    with pytest.raises(ValueError, match="image must be"):
        ds.flip_scale_crop(torch.zeros(3, 8, 8), torch.zeros(8, 9, dtype=torch.int64))


# -- Pascal VOC folders ----------------------------------------------------------------------
def save_palette_png(path, indices, palette):
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    flat = np.zeros((256, 3), np.uint8)
    flat[: len(palette)] = palette
    flat[255] = (224, 224, 192)                           # VOC draws void in cream
    im.putpalette(flat.ravel().tolist())
    im.save(path)


def make_voc(root, ids=("2007_000032", "2007_000039"), size=(20, 30)):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, i in enumerate(ids):
        Image.fromarray(np.full((*size, 3), 40 + 60 * k, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg", quality=95)
        lab = np.zeros(size, np.uint8)
        lab[5:15, 5:20] = 15                              # a person
        lab[5:15, 4] = 255                                # its void border
        lab[0, :] = rng.integers(0, 21)
        save_palette_png(root / "SegmentationClass" / f"{i}.png", lab, ds.VOC_PALETTE)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def test_voc_palette_known_entries():
    assert ds.VOC_CLASSES[0] == "background" and ds.VOC_CLASSES[15] == "person" and len(ds.VOC_CLASSES) == 21
    known = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
             15: (192, 128, 128), 20: (0, 64, 128)}
    for c, rgb in known.items():
        assert tuple(ds.VOC_PALETTE[c]) == rgb


def test_voc_reads_images_and_palette_indices(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    data = ds.VOCSegmentation(root, "train")
    assert len(data) == 2 and data.num_classes == 21
    x, y = data[1]
    assert x.shape == (3, 20, 30) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean()) - 100 / 255) < 0.02       # JPEG is lossy, nearly flat grey
    assert int(y[10, 10]) == 15 and int(y[10, 4]) == 255 and int(y[19, 0]) == 0
    # The VOCdevkit folder above VOC2012 works too.
    assert len(ds.VOCSegmentation(tmp_path, "train")) == 2


def test_voc_transform_is_applied(tmp_path):
    data = ds.VOCSegmentation(make_voc(tmp_path / "v"), transform=ds.FlipScaleCrop((0.5, 0.5), crop=16))
    x, y = data[0]
    assert x.shape == (3, 16, 16) and y.shape == (16, 16)


def test_voc_missing_folders_are_listed(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        ds.VOCSegmentation(tmp_path, "val")
    msg = str(err.value)
    assert "SegmentationClass/" in msg and "ImageSets/Segmentation/val.txt" in msg
    assert "- JPEGImages/" not in msg
    with pytest.raises(FileNotFoundError, match="itself"):
        ds.VOCSegmentation(tmp_path / "nowhere")


def test_voc_missing_files_are_listed(tmp_path):
    root = make_voc(tmp_path / "v")
    (root / "SegmentationClass" / "2007_000039.png").unlink()
    with pytest.raises(FileNotFoundError, match="2007_000039.png"):
        ds.VOCSegmentation(root)


def test_voc_unreadable_image_names_the_file(tmp_path):
    root = make_voc(tmp_path / "v")
    (root / "JPEGImages" / "2007_000039.jpg").write_bytes(b"not a jpeg at all")
    data = ds.VOCSegmentation(root)
    data[0]
    with pytest.raises(ValueError, match="2007_000039.jpg"):
        data[1]


def test_voc_bad_labels_name_the_file(tmp_path):
    root = make_voc(tmp_path / "v")
    save_palette_png(root / "SegmentationClass" / "2007_000032.png", np.full((20, 30), 30), ds.VOC_PALETTE)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "SegmentationClass" / "2007_000039.png")
    data = ds.VOCSegmentation(root)
    with pytest.raises(ValueError, match=r"2007_000032.png holds value 30"):
        data[0]
    with pytest.raises(ValueError, match=r"2007_000039.png has mode 'RGB'"):
        data[1]


def test_voc_size_mismatch(tmp_path):
    root = make_voc(tmp_path / "v")
    save_palette_png(root / "SegmentationClass" / "2007_000032.png", np.zeros((10, 10)), ds.VOC_PALETTE)
    with pytest.raises(ValueError, match="is 30x20 but its label"):
        ds.VOCSegmentation(root)[0]


# -- Cityscapes folders -------------------------------------------------------------------------
def test_label_id_to_train_id_hand_checked():
    table = ds.LABEL_ID_TO_TRAIN_ID
    assert table[7] == 0 and table[8] == 1 and table[11] == 2 and table[17] == 5
    assert table[20] == 7 and table[23] == 10 and table[24] == 11 and table[26] == 13 and table[33] == 18
    assert sorted(table.values()) == list(range(19))
    for void in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30):
        assert void not in table
    mapped = ds.label_ids_to_train_ids(np.array([7, 8, 26, 0, 24, 33, 1, 34, 255, -1]))
    np.testing.assert_array_equal(mapped, [0, 1, 13, 255, 11, 18, 255, 255, 255, 255])
    names = [ds.CITYSCAPES_CLASSES[table[i]] for i in (7, 8, 17, 20, 21, 23, 24, 26)]
    assert names == ["road", "sidewalk", "pole", "traffic sign", "vegetation", "sky", "person", "car"]


def make_cityscapes(root, split="train", cities=("aachen", "bochum")):
    ids = np.array([[7, 8, 26, 0], [24, 33, 1, 23]], np.uint8).repeat(4, 0).repeat(4, 1)   # 8x16
    for c in cities:
        (root / "leftImg8bit" / split / c).mkdir(parents=True)
        (root / "gtFine" / split / c).mkdir(parents=True)
        name = f"{c}_000000_000019"
        Image.fromarray(np.full((8, 16, 3), 128, np.uint8)).save(
            root / "leftImg8bit" / split / c / f"{name}_leftImg8bit.png")
        Image.fromarray(ids, mode="L").save(root / "gtFine" / split / c / f"{name}_gtFine_labelIds.png")
        # Files the loader must ignore: colour and instance maps.
        Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(root / "gtFine" / split / c / f"{name}_gtFine_color.png")
    return root


def test_cityscapes_reads_and_maps_train_ids(tmp_path):
    data = ds.CityscapesSegmentation(make_cityscapes(tmp_path), "train")
    assert len(data) == 2 and data.num_classes == 19
    x, y = data[0]
    assert x.shape == (3, 8, 16) and torch.allclose(x, torch.full_like(x, 128 / 255))
    expected = np.array([[0, 1, 13, 255], [11, 18, 255, 10]]).repeat(4, 0).repeat(4, 1)
    np.testing.assert_array_equal(y.numpy(), expected)
    assert "aachen" in str(data.pairs[0][0]) and "bochum" in str(data.pairs[1][0])


def test_cityscapes_missing_folders_are_listed(tmp_path):
    make_cityscapes(tmp_path, split="train")
    with pytest.raises(FileNotFoundError) as err:
        ds.CityscapesSegmentation(tmp_path, "val")
    assert "leftImg8bit/val/" in str(err.value) and "gtFine/val/" in str(err.value)
    (tmp_path / "empty" / "leftImg8bit" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="_leftImg8bit.png"):
        ds.CityscapesSegmentation(tmp_path / "empty")


def test_cityscapes_missing_label_and_unreadable_image(tmp_path):
    root = make_cityscapes(tmp_path)
    label = root / "gtFine" / "train" / "bochum" / "bochum_000000_000019_gtFine_labelIds.png"
    label.rename(label.with_suffix(".bak"))
    with pytest.raises(FileNotFoundError, match="bochum_000000_000019_gtFine_labelIds.png"):
        ds.CityscapesSegmentation(root)
    label.with_suffix(".bak").rename(label)
    image = root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="aachen_000000_000019_leftImg8bit.png"):
        ds.CityscapesSegmentation(root)[0]


# -- label plotting --------------------------------------------------------------------------
def test_colorize_uses_the_palette_and_blacks_out_ignore():
    labels = np.array([[0, 4], [255, 8]])
    rgb = colorize(labels)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[0, 0] * 255, (128, 64, 128), atol=1e-4)
    np.testing.assert_allclose(rgb[0, 1] * 255, (70, 130, 180), atol=1e-4)
    np.testing.assert_array_equal(rgb[1, 0], 0)
    assert colorize(torch.zeros(2, 3, 4, dtype=torch.int64)).shape == (2, 3, 4, 3)
    np.testing.assert_allclose(colorize(np.array([[1, 0]]), palette=[(0, 0, 0), (0, 0.5, 1)])[0, 0], (0, 0.5, 1))
    with pytest.raises(ValueError, match="labels must be in"):
        colorize(np.array([[9, 0]]))
    with pytest.raises(ValueError, match="integer"):
        colorize(np.zeros((2, 2)))


def test_overlay_blends_only_labelled_pixels():
    image = torch.rand(3, 4, 5)
    labels = torch.zeros(4, 5, dtype=torch.int64)
    labels[0, 0] = 255
    hwc = image.permute(1, 2, 0).numpy()
    np.testing.assert_allclose(overlay(image, labels, alpha=0.0), hwc, atol=1e-6)
    full = overlay(image, labels, alpha=1.0)
    np.testing.assert_allclose(full[1, 1], ds.PALETTE[0] / 255, atol=1e-6)
    np.testing.assert_allclose(full[0, 0], hwc[0, 0], atol=1e-6)
    half = overlay(hwc, labels.numpy(), alpha=0.5)
    np.testing.assert_allclose(half[2, 3], 0.5 * hwc[2, 3] + 0.5 * ds.PALETTE[0] / 255, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, labels, alpha=2)
    with pytest.raises(ValueError, match="labels must be"):
        overlay(image, labels[:2], alpha=0.5)


def test_show_segmentation_grid():
    import matplotlib.pyplot as plt

    images, labels = ds.generate(2, 32, seed=0)
    fig = show_segmentation(images, labels, preds=labels, alpha=0.5)
    assert len(fig.axes) == 6
    plt.close(fig)
    fig = show_segmentation(torch.from_numpy(images), torch.from_numpy(labels), legend=False)
    assert len(fig.axes) == 4
    plt.close(fig)
    with pytest.raises(ValueError, match="same length"):
        show_segmentation(images, labels[:1])


def test_class_legend_one_strip_under_the_panels_that_keep_their_size():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils.plotting import class_legend

    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax in axes:
        ax.imshow(colorize(np.arange(9).reshape(3, 3)))
        ax.set_title("labels")
    fig.tight_layout()
    fig.canvas.draw()
    before = [ax.get_window_extent().size.copy() for ax in axes]
    legend = class_legend(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert [t.get_text() for t in legend.get_texts()] == list(ds.CLASSES)
    assert fig.get_figheight() > 3 and len(fig.legends) == 1
    for ax, size in zip(axes, before):
        np.testing.assert_allclose(ax.get_window_extent().size, size, atol=1.0)
        assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent().y0 + 1
    box = legend.get_window_extent(renderer)
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width
    # Patches carry the palette's colours, in class order.
    colours = [tuple(np.round(np.array(h.get_facecolor()[:3]) * 255).astype(int)) for h in legend.legend_handles]
    assert colours == [tuple(c) for c in ds.PALETTE.tolist()]
    single = class_legend(axes[0], ["a", "b"], [(0, 0, 0), (255, 255, 255)])
    assert [t.get_text() for t in single.get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="classes must be given"):
        class_legend(fig, palette=[(0, 0, 0)])
    with pytest.raises(ValueError, match="3 names but the palette only 2"):
        class_legend(fig, ["a", "b", "c"], [(0, 0, 0), (1, 1, 1)])
    plt.close(fig)
