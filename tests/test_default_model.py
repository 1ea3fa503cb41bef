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

from singsynth.model.checkpoint import load_model
from singsynth.model.header import MODELS_DIR, resolve

INSTRUMENTS = ["yamaha_grand_piano_000", "flute_073", "fingered_bass_033"]
HAT_SHARE = 0.05   # of the note's energy at 9-16 kHz; FluidR3: 0.35 (hi-hat), 0.09 (crash)
PITCHES = [48, 48, 36]


@pytest.fixture(scope="module")
def model():
    return load_model(None)                        # what `render`/`play` use by default


@pytest.fixture(scope="module")
def notes(model):
    index = [model.instruments.index(name) for name in INSTRUMENTS]
    waves = model.generate(torch.tensor(index), torch.tensor(PITCHES), torch.tensor([4, 4, 4]))
    return waves.numpy()


def test_default_resolves_to_the_shipped_file():
    assert resolve(None) == MODELS_DIR / "default.safetensors"
    assert resolve(None).stat().st_size <= 50 * 2**20
    model = load_model(None)
    # General MIDI (issue 22): the 128 FluidR3_GM programs in program order, then the kit.
    assert len(model.instruments) == 129
    assert [int(n[-3:]) for n in model.instruments[:128]] == list(range(128))
    assert model.instruments[128] == "drums_standard_000"
    assert model.provenance["dataset"] and model.provenance["stage"] in ("lstm", "e2e")
    # Full band (issue 21): 48 kHz notes, the noise band trained on FluidR3 at 48 kHz.
    assert model.config.output_rate == 48000 and model.noise is not None
    assert model.provenance["highband"]["epochs"] > 0


def test_notes_have_the_high_band(model):
    """Energy between 9 and 16 kHz, about as much as FluidR3's (benchmarks/timbre.py: 1.0x
    and 2.2x for these two notes); the 16 kHz model, resampled to 48 kHz, has none."""
    index = torch.tensor([model.instruments.index("violin_040"),
                          model.instruments.index("trumpet_056")])
    pitch, velocity = torch.tensor([60, 72]), torch.tensor([3, 3])

    def share(waves, rate):
        spec = np.abs(np.fft.rfft(waves, axis=1)) ** 2
        freqs = np.fft.rfftfreq(waves.shape[1], 1 / rate)
        return spec[:, (freqs >= 9000) & (freqs < 16000)].sum(1) / spec.sum(1)

    full = share(model.generate(index, pitch, velocity).numpy(), model.config.output_rate)
    assert (full > 5e-6).all(), full                 # -53 dB of the note; FluidR3: -47
    import soxr
    core = model.generate(index, pitch, velocity, core=True).numpy()
    old = np.stack([soxr.resample(w, model.config.sample_rate, 48000) for w in core])
    assert (share(old, 48000) < 1e-8).all()


def high_share(waves, rate):
    """Share of each note's energy between 9 and 16 kHz, (B, L) -> (B,)."""
    spec = np.abs(np.fft.rfft(waves, axis=1)) ** 2
    freqs = np.fft.rfftfreq(waves.shape[1], 1 / rate)
    return spec[:, (freqs >= 9000) & (freqs < 16000)].sum(1) / spec.sum(1)


def test_the_drum_kit_hits_on_time_bright_and_then_ends(model):
    """Channel 10's kit (issue 22): each hit starts within 5 ms of the note-on; the
    closed hi-hat (42) and the crash (49) are bright, the kick (36) is not; a kick is
    over long before the note's 4 s (exact zeros: model/gate.py)."""
    kit = model.instruments.index("drums_standard_000")
    assert model.pitched(torch.tensor([kit])).tolist() == [0.0]   # no harmonic bank
    keys = [36, 38, 42, 49]
    waves = model.generate(torch.full((4,), kit), torch.tensor(keys),
                           torch.full((4,), 3)).numpy()
    rate = model.config.output_rate
    for key, wave in zip(keys, waves):
        onset = np.flatnonzero(np.abs(wave) > 0.1 * np.abs(wave).max())[0] / rate
        assert onset <= 0.005, (key, onset)
    share = high_share(waves, rate)
    assert share[2] > HAT_SHARE and share[3] > HAT_SHARE, share
    assert share[0] < share[2] / 10, share
    assert (waves[0, -rate:] == 0).all()


def test_notes_are_not_silent_and_not_clipped(model, notes):
    rate = model.config.output_rate
    held = notes[:, rate // 5:int(rate * 2.5)]     # 0.2-2.5 s, the sustained part
    rms = np.sqrt((held ** 2).mean(axis=1))
    assert (rms > 1e-3).all(), rms
    assert (np.abs(notes) < 0.999).mean(axis=1).min() > 0.999   # no clipped stretches


def test_instruments_differ(notes):
    # Different families must not come out as one timbre.
    a, b = notes[0] / (np.abs(notes[0]).max() + 1e-9), notes[1] / (np.abs(notes[1]).max() + 1e-9)
    assert np.abs(a - b).mean() > 1e-3


def test_fundamental_within_50_cents(model, notes):
    from singsynth.data.pitch import cents, track_pitch
    for wave, pitch in zip(notes, PITCHES):
        f0 = track_pitch(wave, pitch, sample_rate=model.config.output_rate)
        assert abs(cents(f0, pitch)) <= 50, (pitch, f0)


def test_cli_info_uses_the_default():
    out = subprocess.run([sys.executable, "-m", "singsynth", "info"], capture_output=True,
                         text=True, check=True).stdout
    assert "default.safetensors" in out and "instruments (129)" in out
