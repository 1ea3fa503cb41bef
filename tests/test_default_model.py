"""The shipped default model loads through the CLI's path and makes sound: not silent,
not clipped, and at the pitch asked for (issue 8's test). The dataset-wide quality bar
(95 % of held-out notes in tune) is measured by `singsynth eval` and reported in
models/default.md, not here: scoring hundreds of notes with pyin would slow `make test`.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

from singsynth.checkpoint import MODELS_DIR, load_model, resolve

INSTRUMENTS = ["yamaha_grand_piano_000", "flute_073", "fingered_bass_033"]
PITCHES = [48, 48, 36]


@pytest.fixture(scope="module")
def notes():
    model = load_model(None)                       # what `render`/`play` use by default
    index = [model.instruments.index(name) for name in INSTRUMENTS]
    waves = model.generate(torch.tensor(index), torch.tensor(PITCHES), torch.tensor([4, 4, 4]))
    return waves.numpy()


def test_default_resolves_to_the_shipped_file():
    assert resolve(None) == MODELS_DIR / "default.safetensors"
    assert resolve(None).stat().st_size <= 50 * 2**20
    model = load_model(None)
    assert len(model.instruments) == 19
    assert model.provenance["dataset"] and model.provenance["stage"] in ("lstm", "e2e")


def test_notes_are_not_silent_and_not_clipped(notes):
    held = notes[:, 3200:40000]                    # 0.2-2.5 s, the sustained part
    rms = np.sqrt((held ** 2).mean(axis=1))
    assert (rms > 1e-3).all(), rms
    assert (np.abs(notes) < 0.999).mean(axis=1).min() > 0.999   # no clipped stretches


def test_instruments_differ(notes):
    # Different families must not come out as one timbre.
    a, b = notes[0] / (np.abs(notes[0]).max() + 1e-9), notes[1] / (np.abs(notes[1]).max() + 1e-9)
    assert np.abs(a - b).mean() > 1e-3


def test_fundamental_within_50_cents(notes):
    from singsynth.eval.metrics import cents, track_pitch
    for wave, pitch in zip(notes, PITCHES):
        f0 = track_pitch(wave, pitch)
        assert abs(cents(f0, pitch)) <= 50, (pitch, f0)


def test_cli_info_uses_the_default():
    out = subprocess.run([sys.executable, "-m", "singsynth", "info"], capture_output=True,
                         text=True, check=True).stdout
    assert "default.safetensors" in out and "instruments (19)" in out
