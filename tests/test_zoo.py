"""The committed model zoo (data/zoo) and the command that makes it."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from course_utils import zoo
from course_utils.cli import zoo as zoo_cli
from course_utils.datasets import CLASSES, SynthCity
from course_utils.training import evaluate, make_loader, sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_committed_manifest_describes_the_committed_files():
    info = zoo.read_zoo_manifest()
    assert list(info["models"]) == list(zoo.ZOO_MODELS)
    assert info["command"].startswith("python -m course_utils.cli.zoo --out data/zoo")
    # The code's recipe is the one the committed weights were trained with.
    assert info["recipe"] == dataclasses.asdict(zoo.RECIPE)
    for name, entry in info["models"].items():
        path = zoo.ZOO_DIR / entry["file"]
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["bytes"], name
        assert entry["options"] == {"width": zoo.RECIPE.width, **zoo.ZOO_MODELS[name]}


def test_the_manifests_validation_miou_is_what_the_committed_weights_score():
    # Recomputed from the weights and a freshly generated validation set: the number in the
    # manifest is not just copied around.
    info = zoo.read_zoo_manifest()
    r = zoo.RECIPE
    val = make_loader(SynthCity(r.n_val, r.size, seed=r.val_seed), 50)
    for name, model in zoo.load_zoo().items():
        assert not model.training
        miou = evaluate(model, val, len(CLASSES)).miou()
        assert miou == pytest.approx(info["models"][name]["val_miou"], abs=2e-4), name


def test_zoo_models_segment_any_input_size():
    model = zoo.load_zoo_model("gscnn")
    with torch.no_grad():
        out = model(torch.rand(1, 3, 40, 56))
    assert out.shape == (1, len(CLASSES), 40, 56)


def test_a_tampered_file_unknown_name_or_missing_zoo_are_clear_errors(tmp_path):
    copy = tmp_path / "zoo"
    shutil.copytree(zoo.ZOO_DIR, copy)
    entry = zoo.read_zoo_manifest(copy)["models"]["fcn8s"]
    data = bytearray((copy / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / entry["file"]).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        zoo.load_zoo_model("fcn8s", copy)
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.load_zoo_model("segformer", copy)
    with pytest.raises(FileNotFoundError, match="python -m course_utils.cli.zoo"):
        zoo.read_zoo_manifest(tmp_path / "nowhere")


TINY = ["--size", "32", "--n-train", "8", "--n-val", "4", "--epochs", "1", "--batch-size", "4", "--quiet"]


def test_the_command_trains_selected_models_and_keeps_the_others(tmp_path):
    out = tmp_path / "zoo"
    assert zoo_cli.main(["--out", str(out), "--models", "fcn8s", *TINY]) == 0
    assert zoo_cli.main(["--out", str(out), "--models", "gscnn", *TINY]) == 0
    info = json.loads((out / "manifest.json").read_text())
    assert list(info["models"]) == ["fcn8s", "gscnn"]
    assert info["recipe"]["size"] == 32 and info["models"]["gscnn"]["steps"] == 2
    model = zoo.load_zoo_model("gscnn", out)
    assert model.build_config["name"] == "gscnn" and not model.training
    # A changed recipe makes the kept models stale: they are retrained with it.
    before = info["models"]["fcn8s"]["sha256"]
    assert zoo_cli.main(["--out", str(out), "--models", "gscnn", *TINY[:-1], "--seed", "1", "--quiet"]) == 0
    info = json.loads((out / "manifest.json").read_text())
    assert set(info["models"]) == {"fcn8s", "gscnn"} and info["recipe"]["seed"] == 1
    assert info["models"]["fcn8s"]["sha256"] != before
    assert sorted(p.name for p in out.iterdir()) == ["fcn8s.pt", "gscnn.pt", "manifest.json"]


def test_the_pretrained_encoder_is_where_every_zoo_model_starts(tmp_path):
    from course_utils.pretrain import DEFAULT_CHECKPOINT, read_manifest
    from course_utils.training import load_checkpoint
    out = tmp_path / "zoo"
    zoo_cli.main(["--out", str(out), "--models", "pspnet", *TINY, "--max-steps", "1"])
    enc = load_checkpoint(DEFAULT_CHECKPOINT, read_manifest()["sha256"])["encoder"]
    trained = zoo.load_zoo_model("pspnet", out).backbone.state_dict()
    # After one small AdamW step the weights are still close to the encoder's, far from a fresh init.
    w = "stem.0.weight" if "stem.0.weight" in enc else next(k for k in enc if k.endswith("weight"))
    assert np.abs((trained[w] - enc[w]).numpy()).max() < 0.05


def test_the_prediction_browser_takes_a_zoo_model():
    from course_utils.widgets import prediction_browser
    scenes = SynthCity(3, 64, seed=9)
    browser = prediction_browser(zoo.load_zoo_model("gscnn"), scenes.images.float() / 255, scenes.labels.long())
    assert browser.error is None and browser.preds.shape == (3, 64, 64)
    assert 0 <= browser.preds.min() and browser.preds.max() < len(CLASSES)


def test_course_data_dir_points_the_package_at_another_data_folder(tmp_path):
    import os
    import subprocess
    import sys
    shutil.copytree(zoo.ZOO_DIR, tmp_path / "zoo")
    code = ("from course_utils import zoo, pretrain; print(zoo.ZOO_DIR); print(pretrain.DEFAULT_CHECKPOINT); "
            "print(list(zoo.read_zoo_manifest()['models']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, COURSE_DATA_DIR=str(tmp_path))).stdout.splitlines()
    assert out[0] == str(tmp_path / "zoo") and out[1] == str(tmp_path / "encoder_synthcity.pt")
    assert out[2] == str(list(zoo.ZOO_MODELS))
