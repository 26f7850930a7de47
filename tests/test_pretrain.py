"""The course-pretrained encoder: committed file, manifest, hash check, loading, and a tiny run."""
import json
import shutil

import pytest
import torch

from course_utils import pretrain as pt
from course_utils.cli import pretrain as pretrain_cli
from course_utils.datasets import NUM_CLASSES, generate
from course_utils.models import ResNetBackbone, build_model
from course_utils.training import sha256_file

CKPT = pt.DEFAULT_CHECKPOINT
MANIFEST = CKPT.with_suffix(".json")


@pytest.fixture(scope="module")
def manifest():
    return json.loads(MANIFEST.read_text())


def test_manifest_matches_committed_checkpoint(manifest):
    assert manifest["checkpoint"] == CKPT.name
    assert sha256_file(CKPT) == manifest["sha256"]
    assert CKPT.stat().st_size == manifest["bytes"] < 2_500_000
    assert manifest["command"].startswith("python -m course_utils.cli.pretrain")
    assert f"--seed {manifest['seed']}" in manifest["command"]
    assert manifest["backbone_options"] == pt.DEFAULT_OPTIONS
    assert manifest["torch_version"]
    m = manifest["metrics"]
    # Far above chance (1/9): the encoder did learn the classes.
    assert m["heldout_accuracy"] > 3 * m["chance_accuracy"]
    assert m["heldout_balanced_accuracy"] > 3 * m["chance_accuracy"]


def test_load_encoder_copies_the_saved_weights(manifest):
    model = build_model("fcn8s", NUM_CLASSES, **pt.DEFAULT_OPTIONS)
    info = pt.load_encoder(model)
    assert info["sha256"] == manifest["sha256"]
    # Independent route: the raw state dict straight from torch.load into a fresh backbone.
    raw = torch.load(CKPT, weights_only=True)
    ref = ResNetBackbone(**pt.DEFAULT_OPTIONS)
    ref.load_state_dict(raw["encoder"])
    x = torch.from_numpy(generate(2, 64, seed=3)[0])
    model.eval()
    ref.eval()
    with torch.no_grad():
        ours, theirs = model.backbone(x), ref(x)
    for level in theirs:
        torch.testing.assert_close(ours[level], theirs[level], rtol=0, atol=0)
    fresh = ResNetBackbone(**pt.DEFAULT_OPTIONS)
    assert not torch.equal(fresh.stem[0].weight, model.backbone.stem[0].weight)


def test_load_encoder_into_a_bare_backbone():
    backbone = ResNetBackbone(**pt.DEFAULT_OPTIONS)
    pt.load_encoder(backbone)
    raw = torch.load(CKPT, weights_only=True)
    assert torch.equal(backbone.stem[0].weight, raw["encoder"]["stem.0.weight"])


def test_wrong_hash_raises_naming_the_file():
    model = build_model("fcn8s", NUM_CLASSES, **pt.DEFAULT_OPTIONS)
    before = model.backbone.stem[0].weight.clone()
    with pytest.raises(ValueError, match="encoder_synthcity.pt"):
        pt.load_encoder(model, expected_sha256="0" * 64)
    assert torch.equal(before, model.backbone.stem[0].weight)


def test_tampered_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "enc.pt"
    shutil.copy(CKPT, ckpt)
    shutil.copy(MANIFEST, tmp_path / "enc.json")
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="enc.pt"):
        pt.load_encoder(ResNetBackbone(**pt.DEFAULT_OPTIONS), ckpt)


def test_missing_manifest_and_wrong_width(tmp_path):
    ckpt = tmp_path / "enc.pt"
    shutil.copy(CKPT, ckpt)
    with pytest.raises(FileNotFoundError, match="enc.json"):
        pt.load_encoder(ResNetBackbone(**pt.DEFAULT_OPTIONS), ckpt)
    with pytest.raises(ValueError, match="width"):
        pt.load_encoder(build_model("fcn8s", NUM_CLASSES, width=8))


def test_classifier_reproduces_pooled_scores():
    clf = pt.load_classifier()
    x = torch.from_numpy(generate(2, 48, seed=5)[0])
    with torch.no_grad():
        ref = clf.fc(clf.backbone(x)["c5"].mean(dim=(2, 3)))
        torch.testing.assert_close(clf(x), ref)


def test_make_crops_shapes_labels_and_bad_input():
    x, y = pt.make_crops(3, scene_size=32, crop=16, per_scene=5, seed=1)
    assert x.shape == (15, 3, 16, 16) and x.dtype == torch.float32
    assert y.shape == (15,) and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) < NUM_CLASSES
    again = pt.make_crops(3, scene_size=32, crop=16, per_scene=5, seed=1)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    with pytest.raises(ValueError, match="crop"):
        pt.make_crops(2, scene_size=32, crop=64)
    with pytest.raises(ValueError, match="n_scenes"):
        pt.make_crops(0)


def test_centre_pixel_is_the_label():
    # With crops as large as the scene minus one, only the centre class can be checked via
    # the scene itself: the crop's centre pixel must be a pixel of the scene with that label.
    images, labels = generate(2, 24, seed=4)
    x, y = pt.make_crops(2, scene_size=24, crop=12, per_scene=6, seed=4)
    for k in range(len(y)):
        scene = k // 6
        centre = x[k, :, 6, 6].numpy()
        match = (abs(images[scene] - centre[:, None, None]).sum(0) < 1e-6)
        assert (labels[scene][match] == int(y[k])).any()


def test_tiny_pretrain_run_writes_checkpoint_and_manifest(tmp_path, capsys):
    out = tmp_path / "sub" / "tiny.pt"
    code = pretrain_cli.main(["--out", str(out), "--seed", "3", "--scenes", "4", "--val-scenes", "2",
                    "--scene-size", "32", "--crop", "16", "--per-scene", "4", "--epochs", "1",
                    "--batch-size", "4", "--width", "4", "--max-steps", "2"])
    assert code == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["sha256"] == sha256_file(out)
    assert info["seed"] == 3 and "--seed 3" in info["command"]
    assert info["training"]["steps"] == 2
    assert info["backbone_options"]["width"] == 4
    assert 0.0 <= info["metrics"]["heldout_accuracy"] <= 1.0
    assert not list(out.parent.glob("*.tmp"))
    backbone = ResNetBackbone(width=4)
    pt.load_encoder(backbone, out)
    assert "wrote" in capsys.readouterr().out
