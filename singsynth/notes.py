"""The shared vocabulary of singsynth: what a note is, at every layer.

Dependency-free (numpy only), so the engine, the generators, the model and the hosts all
speak of notes the same way without importing one another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

# Blend of instruments: ((instrument index, weight), ...), weights summing to 1.
# A single instrument is ((index, 1.0),).
Blend = Tuple[Tuple[int, float], ...]

# The 5 velocities NSynth (and our SoundFont datasets) were recorded at.
TRAINED_VELOCITIES = (25, 50, 75, 100, 127)


@dataclass(frozen=True)
class NoteKey:
    """One note a source can render.

    Attributes:
        instrument: blend of instrument indices and weights (see `Blend`).
        pitch: MIDI pitch 0-127.
        velocity: fractional index into the trained velocities, 0.0 (25) .. 4.0 (127);
            a fraction interpolates between neighbouring velocity embeddings.
    """

    instrument: Blend
    pitch: int
    velocity: float


def single(instrument: int) -> Blend:
    """The blend that is just one instrument."""
    return ((int(instrument), 1.0),)


def velocity_index(midi_velocity: float, trained: Sequence[int]) -> float:
    """Map a MIDI velocity (1-127) to a fractional index into `trained` velocities (the
    source's own, `NoteSource.velocities`; ascending).

    Piecewise linear between the trained velocities, clamped at both ends, so that
    with NSynth's (25, 50, 75, 100, 127): 25 -> 0.0, 50 -> 1.0, 62.5 -> 1.5, 127 -> 4.0,
    and anything below 25 -> 0.0.
    """
    return float(np.interp(midi_velocity, trained, np.arange(len(trained))))


def velocity_level(midi_velocity: int, levels: int = 16) -> int:
    """Quantise a MIDI velocity 1-127 to one of `levels` levels (0 .. levels-1)."""
    v = min(max(int(midi_velocity), 1), 127)
    return int(round((v - 1) / 126 * (levels - 1)))


def level_velocity(level: int, levels: int = 16) -> float:
    """The MIDI velocity at the centre of a level: inverse of `velocity_level`."""
    return 1.0 + level * 126.0 / (levels - 1)


def midi_to_hz(pitch):
    """Equal-tempered frequency in Hz of a MIDI pitch, A4 = 69 = 440 Hz.

    Plain arithmetic: a float, a numpy array or a torch tensor in, the same out (the
    model passes float64 tensors).
    """
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def is_unpitched(name: str) -> bool:
    """Whether an instrument has no pitch: a drum kit, whose MIDI note is a key (35-81 in
    GM), each key its own sound. `dataset build --drums` names kits `drums_<kit>_<NNN>`."""
    return name.startswith("drums_")
