"""Shared fixtures: a real (random-init, seeded) tiny SING checkpoint."""
import pytest
import torch

TINY_INSTRUMENTS = ["piano", "organ", "guitar", "strings"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path to a saved `tiny` checkpoint with 4 instruments (weights seeded, untrained)."""
    from singsynth.checkpoint import save_model
    from singsynth.model import build

    torch.manual_seed(1234)
    model = build("tiny", TINY_INSTRUMENTS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(path, model, {"dataset": "none (random init for tests)", "stage": "init"})
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through the same path the CLI uses."""
    from singsynth.checkpoint import load_model

    return load_model(tiny_checkpoint)
