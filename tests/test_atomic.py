"""course_utils.atomic: a write that fails half-way leaves the old file and no debris."""
import json
import os

import pytest
import torch

from course_utils.atomic import atomic_open, write_atomic, write_json_atomic
from course_utils.training import save_checkpoint, sha256_file


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.csv"
    write_atomic(target, "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target, "w") as f:
            f.write("half of the new")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_a_checkpoint_interrupted_inside_torch_save_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    digest = save_checkpoint(path, step=1)
    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial zip")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, step=2)
    monkeypatch.setattr(torch, "save", real_save)
    assert sha256_file(path) == digest
    assert torch.load(path, weights_only=True)["step"] == 1
    assert os.listdir(tmp_path) == ["model.pt"]


def test_written_files_have_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_json_atomic(tmp_path / "a.json", {"b": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": 1}
    assert (tmp_path / "a.json").stat().st_mode == plain.stat().st_mode


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open(tmp_path / "x", "a"):
            pass
