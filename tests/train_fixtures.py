"""Shared pieces of the training tests: a small real dataset and fast `tiny` settings.

`train_dataset` (pytest fixture, built once per session) renders 2 instruments of
TimGM6mb (piano 0, violin 40) at pitches 55-72 and velocities 50 and 127 with the real
FluidSynth: 72 notes, 64 train and 8 held out (pitch-completion split), in about a
second. Where FluidSynth or the SoundFont is missing it writes synthetic harmonic notes
in the same layout instead, so the training tests still run.

Tests import it with `from tests.train_fixtures import train_dataset`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
SF2 = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
# Cheap tiny settings: few held-out notes scored per epoch, bigger batches for the slow
# stages (the LSTM runs all 265 steps in e2e whatever the crop).
FAST = ["ae.eval_notes=2", "lstm.eval_notes=2", "e2e.eval_notes=2",
        "lstm.batch=16", "e2e.batch=32"]


def sets(*items: str) -> list[str]:
    """['--set', a, '--set', b, ...] for the FAST settings plus `items`."""
    out = []
    for item in (*FAST, *items):
        out += ["--set", item]
    return out


def write_synthetic(root, instruments, pitches, velocities=(50, 127)) -> Path:
    """A dataset in NSynth's layout of decaying harmonic tones: 16 kHz, 64,000 samples.

    Args:
        instruments: instrument_str names; their ids are their positions.
        pitches: MIDI pitches every instrument has (all velocities each).
    """
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    t = np.arange(64000) / 16000
    examples = {}
    for i, name in enumerate(instruments):
        for p in pitches:
            f0 = 440 * 2 ** ((p - 69) / 12)
            for v in velocities:
                key = f"{name}-{p:03d}-{v:03d}"
                wave = sum(np.sin(2 * np.pi * f0 * h * t) / h ** (1 + i) for h in range(1, 5))
                wave = 0.3 * v / 127 * np.exp(-t * (1 + i)) * wave
                sf.write(root / "audio" / f"{key}.wav", wave.astype(np.float32), 16000,
                         subtype="PCM_16")
                examples[key] = {"note_str": key, "instrument": i, "instrument_str": name,
                                 "pitch": p, "velocity": v, "sample_rate": 16000,
                                 "instrument_family": 0, "instrument_source": 0,
                                 "qualities": [0] * 10}
    (root / "examples.json").write_text(json.dumps(examples))
    return root


def build_dataset(root: Path) -> Path:
    """The real TimGM6mb dataset (or the synthetic stand-in) in `root`, unless there."""
    if (root / "examples.json").exists():
        return root
    if SF2.exists() and shutil.which("fluidsynth"):
        subprocess.run([sys.executable, "-m", "singsynth", "dataset", "build",
                        "--soundfont", str(SF2), "--out", str(root), "--programs", "0,40",
                        "--pitches", "55-72", "--velocities", "50,127"],
                       check=True, capture_output=True, cwd=REPO)
    else:
        write_synthetic(root, ["piano_1_000", "violin_040"], range(55, 73))
    return root


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory) -> Path:
    """Folder of the shared 72-note dataset (64 train, 8 test notes)."""
    # A fixed folder under the session's base temp: modules that import this fixture
    # each get their own fixture definition, but the dataset is built once.
    return build_dataset(tmp_path_factory.getbasetemp() / "train-dataset")


def weights(path) -> dict:
    """Tensors of a .safetensors file (checkpoint or training state)."""
    from singsynth.model.checkpoint import read_tensors
    return read_tensors(path)[0]


def assert_same_weights(a: dict, b: dict, atol: float = 0.0):
    """Same tensor names; equal bit for bit (atol=0) or within `atol`."""
    assert sorted(a) == sorted(b)
    for name in a:
        if atol == 0:
            assert torch.equal(a[name], b[name]), f"{name} differs"
        else:
            diff = (a[name] - b[name]).abs().max().item()
            assert diff <= atol, f"{name} differs by {diff}"


def cli_env() -> dict:
    """Environment for `python -m singsynth` subprocesses run from the repository."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
