"""tools/seed_variance.py without its hour of training: model options from --set, a stored
checkpoint scored as seed 0, and the boundary scores it records."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils.datasets import CLASSES, SynthCity
from course_utils.metrics import boundary_f1
from course_utils.models import build_model
from course_utils.training import predict, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tool(monkeypatch):
    spec = importlib.util.spec_from_file_location("seed_variance", ROOT / "tools" / "seed_variance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "TEST", {"n": 3, "size": 32, "seed": 2})
    return module


def small_gscnn(**options):
    torch.manual_seed(0)
    return build_model("gscnn", len(CLASSES), width=4, **options).eval()


def test_set_parses_integers_and_words(tool):
    assert tool.parse_model_options(["output_stride=8", "shape_level=c2", "aux=true", "x=False"]) == {
        "output_stride": 8, "shape_level": "c2", "aux": True, "x": False}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        tool.parse_model_options(["shape_level"])


def test_a_bad_option_stops_before_any_training(tool, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(tool, "train_zoo_model", lambda *a, **k: pytest.fail("trained with a bad option"))
    with pytest.raises(SystemExit) as e:
        tool.main(["--model", "gscnn", "--set", "edge_pool=bilinear", "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "edge_pool" in capsys.readouterr().err


def test_seed0_checkpoint_is_scored_not_trained_and_others_train_with_the_set_options(tool, monkeypatch, tmp_path):
    stored = small_gscnn(edge_output="fused", edge_pool="adaptive")
    save_checkpoint(tmp_path / "old.pt", model=stored, val_miou=0.25)
    trained_with = []

    def fake_train(name, out_dir, recipe, device, progress, options):
        trained_with.append((recipe.seed, options))
        model = small_gscnn(**{k: v for k, v in options.items() if k != "width"})
        save_checkpoint(Path(out_dir) / "gscnn.pt", model=model, val_miou=0.5)
        return {"file": "gscnn.pt", "val_miou": 0.5, "steps": 7}

    monkeypatch.setattr(tool, "train_zoo_model", fake_train)
    out = tmp_path / "runs.json"
    assert tool.main(["--model", "gscnn", "--seeds", "0", "1", "--set", "edge_output=fused", "--set",
                      "edge_pool=adaptive", "--set", "width=4", "--seed0-checkpoint", str(tmp_path / "old.pt"),
                      "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["options"]["edge_output"] == "fused" and result["options"]["width"] == 4
    assert [s for s, _ in trained_with] == [1] and trained_with[0][1] == result["options"]
    seed0, seed1 = result["runs"]
    assert seed0["checkpoint"] == "old.pt" and seed0["val_miou"] == 0.25 and seed1["steps"] == 7
    # Seed 0's scores are those of the stored weights, recomputed here from the metric itself.
    test = SynthCity(3, 32, seed=2)
    pred = predict(stored, test.images.float() / 255, batch_size=32)
    target = test.labels.long().numpy()
    assert seed0["test_bf2"] == pytest.approx(boundary_f1(pred, target, 2), abs=1e-5)
    assert seed0["test_bf2_davis_per_image"] == pytest.approx(
        boundary_f1(pred, target, 2, rule="davis", average="image"), abs=1e-5)
    pole = boundary_f1(pred, target, 2, num_classes=len(CLASSES))[CLASSES.index("pole")]
    assert seed0["test_pole_bf2"] == pytest.approx(float(pole), abs=1e-5)
    assert len(seed0["test_iou"]) == len(CLASSES) and np.isfinite(seed0["test_iou"]).all()


def test_a_checkpoint_with_other_options_is_refused(tool, tmp_path):
    save_checkpoint(tmp_path / "fused.pt", model=small_gscnn(edge_output="fused"), val_miou=0.25)
    with pytest.raises(RuntimeError, match="fuse"):
        tool.scored_checkpoint(tmp_path / "fused.pt", "gscnn", {"width": 4})
