"""Where notes come from: the small protocol the engine plays from.

The engine never touches torch directly: it asks a `NoteSource` for whole notes
(`render`) or for a note in consecutive chunks (`stream`). `ModelSource` wraps a SING
checkpoint; tests pass a deterministic sine source and assert exact samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, Tuple

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


def velocity_index(midi_velocity: float, trained=TRAINED_VELOCITIES) -> float:
    """Map a MIDI velocity (1-127) to a fractional index into `trained` velocities.

    Piecewise linear between the trained velocities, clamped at both ends, so that
    25 -> 0.0, 50 -> 1.0, 62.5 -> 1.5, 127 -> 4.0 and anything below 25 -> 0.0.
    """
    return float(np.interp(midi_velocity, trained, np.arange(len(trained))))


def velocity_level(midi_velocity: int, levels: int = 16) -> int:
    """Quantise a MIDI velocity 1-127 to one of `levels` levels (0 .. levels-1)."""
    v = min(max(int(midi_velocity), 1), 127)
    return int(round((v - 1) / 126 * (levels - 1)))


def level_velocity(level: int, levels: int = 16) -> float:
    """The MIDI velocity at the centre of a level: inverse of `velocity_level`."""
    return 1.0 + level * 126.0 / (levels - 1)


class NoteSource(Protocol):
    """What the engine needs from a note generator.

    Attributes:
        sample_rate: rate of the notes it returns (16,000 Hz for SING).
        note_samples: length of one whole note in samples (64,000 for SING).
        instruments: instrument names, indexed as in `NoteKey.instrument`.
    """

    sample_rate: int
    note_samples: int
    instruments: Sequence[str]

    def render(self, keys: Sequence[NoteKey]) -> np.ndarray:
        """Whole notes: float32 array (len(keys), note_samples) in [-1, 1]."""

    def stream(self, keys: Sequence[NoteKey], chunk: int = 256) -> Iterator[np.ndarray]:
        """The same notes in consecutive chunks: float32 arrays (len(keys), chunk).

        The concatenation equals `render(keys)` (to within 1e-4); the last chunk may be
        shorter. The first chunk must come much sooner than a whole note would.
        """

    def identity(self) -> str:
        """A string that changes whenever the audio for a key could change (checkpoint hash)."""
