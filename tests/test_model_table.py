"""One description of a network: runtime.model.MODELS (kind -> config class, module class), the
checkpoint's {"kind", "config": asdict(config), "prediction"}, and the reader of the flat
description that version-1 checkpoints hold."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from runtime.model import (
    MODELS,
    CondFiLMNet,
    CondFiLMNetConfig,
    EpsConvNet,
    EpsConvNetConfig,
    EpsFiLMNetConfig,
    EpsResidualConvNet,
    build_model,
    describe_model,
    model_from_description,
    model_kind,
)
from runtime.plumbing.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    restore_for_inference,
    save_checkpoint,
    upgrade_model_description,
)
from runtime.plumbing.config import TrainConfig
from runtime.train import model_config

SMALL = {
    "conv": EpsConvNetConfig(1, 4, 0),
    "residual": EpsConvNetConfig(1, 4, 2),
    "film": EpsFiLMNetConfig(1, 8, 1, 8, 4),
    "cond_film": CondFiLMNetConfig(1, 3, 8, 1, 8, 4),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_description_rebuilds_the_same_network(kind):
    module = build_model(kind, SMALL[kind], "v")
    description = describe_model(module)
    assert description == {"kind": kind, "config": dataclasses.asdict(SMALL[kind]),
                           "prediction": "v"}
    again = model_from_description(description)
    assert type(again) is MODELS[kind][1] and again.cfg == module.cfg
    assert again.prediction == "v" and model_kind(again) == kind
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in module.state_dict().items()}


def test_bad_descriptions_are_refused():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("unet", {"data_channels": 1})
    with pytest.raises(ValueError, match="no field 'embed_dim'"):
        build_model("conv", {"data_channels": 1, "hidden_channels": 4, "embed_dim": 8})
    with pytest.raises(TypeError, match="EpsFiLMNetConfig"):
        build_model("film", EpsConvNetConfig(1, 4, 0))
    with pytest.raises(ValueError, match="not a network"):
        model_kind(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(("flags", "kind", "config"), [
    ({}, "film", EpsFiLMNetConfig(1, 64, 2, 64, 8, 4)),
    ({"blocks": 4, "down_blocks": 0}, "film", EpsFiLMNetConfig(1, 64, 4, 64, 8)),
    ({"model": "residual"}, "residual", EpsConvNetConfig(1, 64, 2)),
    ({"model": "conv", "hidden_c": 16}, "conv", EpsConvNetConfig(1, 16, 0)),
    ({"class_conditional": True, "blocks": 2}, "cond_film",
     CondFiLMNetConfig(1, 10, 64, 2, 64, 8, 4)),
])
def test_the_trainer_picks_the_kind_and_fills_its_config(flags, kind, config):
    assert model_config(TrainConfig(**flags), 1, 10) == (kind, config)


# --------------------------------------------------------------------------- version 1


def _old_payload(module: torch.nn.Module, flat: dict) -> dict:
    """A checkpoint dict as diffspec wrote it before the model table (format version 1)."""
    betas = torch.linspace(1e-3, 0.2, 10, dtype=torch.float64)
    return {"format": CHECKPOINT_FORMAT, "version": 1, "model": module.state_dict(),
            "ema": None, "optimizer": {}, "step": 3, "rng": {}, "history": {},
            "config": {"dataset": "digits",
                       "derived": {"model": flat, "betas": betas, "image_shape": [1, 8, 8]}}}


@pytest.mark.parametrize(("flat", "kind", "prediction"), [
    ({"kind": "film", "data_channels": 1, "hidden_channels": 8, "residual_blocks": 1,
      "embed_dim": 8, "groups": 4}, "film", "eps"),
    ({"kind": "film", "data_channels": 1, "hidden_channels": 8, "residual_blocks": 1,
      "embed_dim": 8, "groups": 4, "prediction": "v", "num_classes": 3}, "cond_film", "v"),
    ({"kind": "residual", "data_channels": 1, "hidden_channels": 4, "residual_blocks": 2},
     "residual", "eps"),
    ({"kind": "conv", "data_channels": 1, "hidden_channels": 4, "residual_blocks": 0,
      "prediction": "x0"}, "conv", "x0"),
])
def test_a_version_1_checkpoint_still_loads(tmp_path, flat, kind, prediction):
    torch.manual_seed(0)
    module = build_model(kind, SMALL[kind])
    path = tmp_path / "old.pt"
    torch.save(_old_payload(module, dict(flat)), path)
    payload = load_checkpoint(path)
    description = payload["config"]["derived"]["model"]
    assert (description["kind"], description["prediction"]) == (kind, prediction)
    # fields added since (down_blocks) are absent and read as their defaults
    assert MODELS[kind][0](**description["config"]) == SMALL[kind]
    model, sched, _, weights = restore_for_inference(payload, path, torch.device("cpu"))
    assert type(model) is MODELS[kind][1] and model.prediction == prediction
    assert weights == "model" and sched.T == 10
    for key, value in module.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.2, 0.9])
    with torch.no_grad():
        assert torch.equal(model(x, t), module.eval()(x, t))


def test_the_old_kinds_map_to_the_classes_they_built():
    classes = {"conv": EpsConvNet, "residual": EpsResidualConvNet, "cond_film": CondFiLMNet}
    for kind, cls in classes.items():
        assert MODELS[kind][1] is cls
    new = {"kind": "film", "config": {"data_channels": 1}, "prediction": "eps"}
    assert upgrade_model_description(new) is new  # today's form passes through


def test_a_new_checkpoint_is_version_2_and_a_version_0_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    module = build_model("conv", SMALL["conv"])
    payload = _old_payload(module, describe_model(module))
    del payload["format"], payload["version"]
    save_checkpoint(path, payload)
    assert load_checkpoint(path)["version"] == 2
    torch.save({**payload, "format": CHECKPOINT_FORMAT, "version": 0}, path)
    with pytest.raises(CheckpointError, match="version 0"):
        load_checkpoint(path)
