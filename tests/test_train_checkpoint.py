"""Checkpoints are written atomically and loaded with one clear error for anything unusable."""

from __future__ import annotations

import pytest
import torch

import runtime.plumbing.checkpoint as checkpoint_module
from runtime.plumbing.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
)


def _payload(step: int) -> dict:
    return {"model": {"w": torch.full((3,), float(step))}, "optimizer": {}, "step": step,
            "config": {"derived": {}}, "rng": {}, "history": {"curve": []}}


def test_roundtrip(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(7))
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.full((3,), 7.0))


def test_a_failing_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1))
    before = path.read_bytes()

    def write_half_then_fail(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes of a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", write_half_then_fail)
    with pytest.raises(OSError):
        save_checkpoint(path, _payload(2))
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left


def test_an_interrupted_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1))

    def interrupted(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _payload(2))
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize(("content", "needle"), [
    (None, "does not exist"),
    (b"", "corrupt"),
    (b"garbage that is not a zip or pickle", "corrupt"),
    ("truncated", "corrupt"),
    ("not-ours", "not a diffspec"),
    ("old-version", "version"),
    ("missing-key", "lacks"),
])
def test_unusable_checkpoints_give_one_error(tmp_path, content, needle):
    path = tmp_path / "checkpoint.pt"
    if content == "truncated":
        save_checkpoint(path, _payload(1))
        path.write_bytes(path.read_bytes()[:200])
    elif content == "not-ours":
        torch.save({"state_dict": {}}, path)
    elif content == "old-version":
        torch.save({**_payload(1), "format": "diffspec-checkpoint", "version": 0}, path)
    elif content == "missing-key":
        payload = {**_payload(1), "format": "diffspec-checkpoint", "version": 1}
        del payload["optimizer"]
        torch.save(payload, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=needle) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_mismatched_weights_give_one_error():
    module = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="shape"):
        load_state_dict_checked(module, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)},
                                "model", "ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_checked(module, {"weight": torch.zeros(2, 3)}, "model", "ckpt")
