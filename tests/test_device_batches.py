"""Whole-batch augmentation on the device (course_utils.datasets.device_augment) and the loader
that uses it (course_utils.training.DeviceBatches), checked against the per-sample path on the CPU."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from course_utils import datasets as ds
from course_utils.datasets.device_augment import IMAGE_TOLERANCE
from course_utils.models import build_model
from course_utils.training import fit, make_loader
from course_utils.training.batches import set_sampler_epoch
from course_utils.training.device_batches import DeviceBatches
from course_utils.training.rng import loader_generators
from helpers import InterruptAt

pytestmark = pytest.mark.usefixtures("one_thread")


def per_sample(data: ds.SynthCity, index: int, epoch: int):
    """The reference: the per-sample path, as ``SynthCity.__getitem__`` makes a sample."""
    t = data.transform
    return ds.flip_scale_crop(data.images[index].float() / 255, data.labels[index].long(),
                              ds.augmentation_generator(data.seed, epoch, index), t.scale_range, t.crop, t.flip)


def resized(data, index, epoch):
    """Whether the per-sample path resampled this sample (else it only flipped, padded, cropped)."""
    u = torch.rand(4, generator=ds.augmentation_generator(data.seed, epoch, index), dtype=torch.float64)
    lo, hi = data.transform.scale_range
    s = lo + (hi - lo) * float(u[1])
    h, w = data.size
    return (max(1, round(h * s)), max(1, round(w * s))) != (h, w)


# -- the whole-batch augmentation against the per-sample one ------------------------------------
@pytest.mark.parametrize("size, crop, scale_range", [
    (64, None, (0.75, 1.25)),          # the course's default: down (antialiased) and up
    ((48, 80), (40, 56), (0.5, 2.0)),  # the folders' range, a non-square crop
    (32, 48, (0.3, 1.0)),              # crops larger than the scaled scene: padding
    ((40, 24), 16, (1.0, 1.0)),        # no resampling: flips and crops only
])
def test_batch_augmentation_equals_the_per_sample_path(size, crop, scale_range):
    data = ds.SynthCity(12, size, seed=3, augment=True, crop=crop, scale_range=scale_range)
    for epoch in (0, 1):
        indices = list(range(len(data)))
        gens = [ds.augmentation_generator(data.seed, epoch, i) for i in indices]
        images, labels = ds.flip_scale_crop_batch(data.images, data.labels, gens, scale_range, crop)
        assert images.dtype == torch.float32 and labels.dtype == torch.uint8
        for i in indices:
            want_image, want_label = per_sample(data, i, epoch)
            assert torch.equal(labels[i].long(), want_label)
            if resized(data, i, epoch):
                assert (images[i] - want_image).abs().max() <= IMAGE_TOLERANCE
            else:
                assert torch.equal(images[i], want_image)


@settings(max_examples=20)
@given(h=st.integers(16, 40), w=st.integers(16, 40), ch=st.integers(1, 48), cw=st.integers(1, 48),
       lo=st.floats(0.3, 2.0), span=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_batch_augmentation_equals_the_per_sample_path_for_any_sizes(h, w, ch, cw, lo, span, seed):
    data = ds.SynthCity(3, (h, w), seed=seed % 5, augment=True, crop=(ch, cw), scale_range=(lo, lo + span))
    gens = [ds.augmentation_generator(seed, 0, i) for i in range(3)]
    images, labels = ds.flip_scale_crop_batch(data.images, data.labels, gens, (lo, lo + span), (ch, cw))
    for i in range(3):
        t = data.transform
        want_image, want_label = ds.flip_scale_crop(data.images[i].float() / 255, data.labels[i].long(),
                                                    ds.augmentation_generator(seed, 0, i), t.scale_range, t.crop)
        assert torch.equal(labels[i].long(), want_label)
        assert (images[i] - want_image).abs().max() <= IMAGE_TOLERANCE


def test_antialiased_halving_by_hand():
    # 4 -> 2 pixels with antialiasing: a triangle filter twice as wide, centred on input
    # positions 1 and 3 (in pixel units), weights 3/4, 3/4, 1/4 at the pixel centres,
    # normalised: output 0 = (3a + 3b + c) / 7, output 1 = (b + 3c + 3d) / 7. Each row of
    # the image is [a, b, c, d], so the vertical filter leaves it alone. nearest-exact
    # picks input pixels floor((i + 0.5) * 2) = 1 and 3 for the labels.
    a, b, c, d = 0.0, 0.7, 0.1, 1.0
    image = torch.tensor([a, b, c, d]).repeat(3, 4, 1)[None]
    labels = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    x, y = ds.flip_scale_crop_batch(image, labels, [gen], scale_range=(0.5, 0.5), crop=2, flip=False)
    want = torch.tensor([(3 * a + 3 * b + c) / 7, (b + 3 * c + 3 * d) / 7])
    assert torch.allclose(x[0], want.repeat(3, 2, 1), atol=1e-6)
    assert y[0].tolist() == [[5, 7], [13, 15]]


def test_padding_is_black_and_ignored():
    labels = torch.zeros(1, 40, 40, dtype=torch.uint8)
    x, y = ds.flip_scale_crop_batch(torch.full((1, 3, 40, 40), 255, dtype=torch.uint8), labels,
                                    [torch.Generator().manual_seed(0)], scale_range=(0.5, 0.5))
    assert (y == 0).sum() == 400 and (y == 255).sum() == 1200
    assert torch.equal(x[0, 0] == 1, y[0] == 0) and torch.all(x[:, :, y[0] == 255] == 0)


def test_uint8_to_float_is_the_division_by_255():
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    want = np.arange(256, dtype=np.float32).reshape(1, 1, 16, 16) / np.float32(255)
    np.testing.assert_array_equal(ds.to_unit_float(values).numpy(), want)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale_range=(2, 1)), "scale_range"), (dict(crop=0), "crop"),
    (dict(generators=[None]), "generators"), (dict(labels=torch.zeros(2, 8, 9, dtype=torch.uint8)), "images must"),
])
def test_batch_augmentation_bad_input_names_the_parameter(kwargs, match):
    args = dict(images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8), labels=torch.zeros(2, 8, 8, dtype=torch.uint8),
                generators=[None, None]) | kwargs
    with pytest.raises(ValueError, match=match):
        ds.flip_scale_crop_batch(**args)


# -- SynthCity's device mode ---------------------------------------------------------------------
def test_device_mode_serves_storage_and_augments_reproducibly_in_any_batch():
    data = ds.SynthCity(8, 32, seed=2, augment=True, crop=24)
    raw = data.with_augment_on("device")
    assert data.augment_on == "loader" and raw.augment_on == "device"
    assert raw.images.data_ptr() == data.images.data_ptr()        # the same scenes, not a copy
    image, label, index = raw[-1]
    assert image.dtype == label.dtype == torch.uint8 and index == 7 and torch.equal(image, data.images[7])

    def batch(indices, epoch):
        raw.set_epoch(epoch)
        picked = torch.tensor(indices)
        return raw.augment_batch(raw.images[picked], raw.labels[picked], picked)

    # The same (seed, epoch, index) gives the same sample whatever else is in the batch.
    x1, y1 = batch([5, 2, 7], 1)
    x2, y2 = batch([7, 0, 5, 3, 2], 1)
    assert x1.dtype == torch.float32 and y1.dtype == torch.int64
    for i, j in ((0, 2), (1, 4), (2, 0)):
        assert torch.equal(x1[i], x2[j]) and torch.equal(y1[i], y2[j])
    x3, _ = batch([5, 2, 7], 2)
    assert not torch.equal(x1, x3)
    # Within the tolerance of what the per-sample path gives for the same epoch.
    data.set_epoch(1)
    assert (x1[0] - data[5][0]).abs().max() <= IMAGE_TOLERANCE and torch.equal(y1[0], data[5][1])


def test_device_mode_without_augmentation_only_converts():
    data = ds.SynthCity(3, 24, seed=1, augment_on="device")
    x, y = data.augment_batch(data.images, data.labels, torch.arange(3))
    plain = data.with_augment_on("loader")
    for i in range(3):
        assert torch.equal(x[i], plain[i][0]) and torch.equal(y[i], plain[i][1])


def test_device_mode_bad_value_names_the_parameter():
    with pytest.raises(ValueError, match="^augment_on"):
        ds.SynthCity(1, 16, augment_on="gpu")
    with pytest.raises(ValueError, match="^augment_on"):
        ds.SynthCity(1, 16).with_augment_on("cuda")


# -- the loader ----------------------------------------------------------------------------------
def test_make_loader_on_the_cpu_keeps_the_per_sample_path():
    loader = make_loader(ds.SynthCity(8, 24, augment=True), 4, shuffle=True, device="cpu")
    assert isinstance(loader, torch.utils.data.DataLoader)
    images, labels = next(iter(loader))
    assert images.dtype == torch.float32 and labels.dtype == torch.int64


def test_device_batches_equal_the_per_sample_batches():
    data = ds.SynthCity(12, 32, seed=4, augment=True, crop=(24, 28))
    per_sample_loader = make_loader(data, 4, shuffle=True, device="cpu", seed=5)
    device_loader = make_loader(data, 4, shuffle=True, device="cpu", seed=5, augment_on="device")
    assert isinstance(device_loader, DeviceBatches) and len(device_loader) == len(per_sample_loader) == 3
    for epoch in (0, 3):
        set_sampler_epoch(per_sample_loader, epoch)
        set_sampler_epoch(device_loader, epoch)
        assert device_loader.dataset.epoch == epoch
        # Each loader runs to its end: the sampler draws its next order only then.
        want, got = list(per_sample_loader), list(device_loader)
        assert len(want) == len(got) == 3
        for (x, y), (dx, dy) in zip(want, got):
            assert dx.dtype == torch.float32 and dy.dtype == torch.int64 and dx.shape == (4, 3, 24, 28)
            assert torch.equal(dy, y) and (dx - x).abs().max() <= IMAGE_TOLERANCE


def test_device_batches_expose_what_fit_reads():
    data = ds.SynthCity(8, 24, augment=True)
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, seed=0, drop_last=True)
    loader = make_loader(data, 2, sampler=sampler, device="cpu", num_workers=0, augment_on="device")
    set_sampler_epoch(loader, 3)
    assert sampler.epoch == 3 and loader.dataset.epoch == 3 and loader.num_workers == 0
    assert loader.sampler is sampler and len(loader) == 4
    assert [id(g) for g in loader_generators(loader)] == [id(loader.loader.generator)]


def test_device_path_refuses_data_sets_that_cannot_use_it():
    plain = TensorDataset(torch.zeros(4, 3, 8, 8), torch.zeros(4, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="augment_on"):
        make_loader(plain, 2, device="cpu", augment_on="device")
    with pytest.raises(ValueError, match="^augment_on"):
        make_loader(plain, 2, device="cpu", augment_on="gpu")
    with pytest.raises(ValueError, match="^augment"):
        DeviceBatches(torch.utils.data.DataLoader(plain, batch_size=2), "cpu")
    pairs = DeviceBatches(torch.utils.data.DataLoader(plain, batch_size=2), "cpu", augment=lambda *b: b[:2])
    with pytest.raises(ValueError, match="indices"):
        next(iter(pairs))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_with_device_batches_is_exact(tmp_path, workers):
    def run(callbacks=(), resume=False, model_seed=1):
        torch.manual_seed(123)
        data = ds.SynthCity(12, 32, seed=1, augment=True, crop=24)
        train = make_loader(data, 4, shuffle=True, device="cpu", num_workers=workers, seed=3, augment_on="device")
        torch.manual_seed(model_seed)
        model = build_model("fcn8s", ds.NUM_CLASSES, width=8)
        # fp32: on a CPU with native bf16 the first bf16 run of a process differs from the
        # later ones (the precision probe runs inside it), which is not what this tests.
        history = fit(model, train, epochs=3, lr=1e-2, keep="last", checkpoint=tmp_path / "w.pt",
                      callbacks=callbacks, resume=resume, device="cpu", progress=False, amp=False)
        return model, history

    reference, ref_history = run()
    first = run(callbacks=[InterruptAt(5)])[1]
    assert first.stopped_by == "interrupt" and first.steps == 5
    resumed, history = run(resume=True, model_seed=7)
    assert history.step_loss == ref_history.step_loss and history.steps == 9
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_match_the_cpu_ones():
    data = ds.SynthCity(16, 64, seed=2, augment=True, crop=48)
    cpu = make_loader(data, 8, shuffle=True, device="cpu", seed=0, augment_on="device")
    cuda = make_loader(data, 8, shuffle=True, device="cuda", seed=0)
    assert isinstance(cuda, DeviceBatches)
    for (x, y), (cx, cy) in zip(list(cpu), list(cuda)):
        assert cx.is_cuda and torch.equal(cy.cpu(), y)
        assert (cx.cpu() - x).abs().max() <= IMAGE_TOLERANCE


# -- the command line's workers ------------------------------------------------------------------
def test_workers_auto_is_none_on_a_cpu_and_a_share_of_the_cores_on_cuda(monkeypatch):
    from course_utils.cli.common import resolve_workers
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(20)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_workers("auto", torch.device("cpu")) == 0
    assert resolve_workers("auto", torch.device("cuda")) == 8          # min(8, 20 cores)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")                         # 4 processes share 20 cores
    assert resolve_workers("auto", torch.device("cuda")) == 5
    assert resolve_workers(3, torch.device("cuda")) == 3


@pytest.mark.parametrize("text", ["-1", "two", "1.5"])
def test_workers_option_refuses_bad_values(text, capsys):
    from course_utils.cli.train import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "fcn8s", "--data", "synthcity", "--out", "x", "--workers", text])
    assert "--workers" in capsys.readouterr().err


def test_a_batch_is_a_pair_of_images_and_labels():
    from course_utils.training.batches import split_batch
    images, labels = torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
    assert split_batch((images, labels))[1] is labels and split_batch([images, labels, "extra"])[0] is images
    with pytest.raises(ValueError, match="tuple or list"):
        split_batch({"image": images, "label": labels})
