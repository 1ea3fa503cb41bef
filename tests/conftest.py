"""Shared fixtures: a real (random-init, seeded) tiny SING checkpoint; training's decoded
audio files go to a folder of the test session, not the user's cache."""
import os

import pytest
import torch

TINY_INSTRUMENTS = ["piano", "organ", "guitar", "strings"]


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """`SINGSYNTH_DATA_CACHE` for this session (subprocesses inherit it)."""
    folder = tmp_path_factory.mktemp("data-cache")
    old = os.environ.get("SINGSYNTH_DATA_CACHE")
    os.environ["SINGSYNTH_DATA_CACHE"] = str(folder)
    yield folder
    if old is None:
        del os.environ["SINGSYNTH_DATA_CACHE"]
    else:
        os.environ["SINGSYNTH_DATA_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path to a saved `tiny` checkpoint with 4 instruments (weights seeded, untrained)."""
    from singsynth.model.checkpoint import save_model
    from singsynth.model.sing import build

    torch.manual_seed(1234)
    model = build("tiny", TINY_INSTRUMENTS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(path, model, {"dataset": "none (random init for tests)", "stage": "init"})
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through the same path the CLI uses."""
    from singsynth.model.checkpoint import load_model

    return load_model(tiny_checkpoint)


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """For every test: the CLI installs a SIGTERM handler and, once its output is complete,
    ignores Ctrl-C; a command run in-process must not leave the test session deaf to
    either."""
    import signal
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in old.items():
        signal.signal(s, handler)
