"""Where notes come from: the protocol the generators play from.

The engine never touches torch directly: a generator asks a `NoteSource` for whole notes
(`render`) or for a note in consecutive chunks (`stream`). `singsynth.model.source.ModelSource`
wraps a SING checkpoint; tests pass a deterministic sine source and assert exact samples.
"""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from singsynth.notes import NoteKey


@runtime_checkable
class NoteSource(Protocol):
    """What the engine needs from a note generator.

    Attributes:
        sample_rate: rate of the notes it returns (16,000 Hz for SING).
        note_samples: length of one whole note in samples (64,000 for SING).
        instruments: instrument names, indexed as in `NoteKey.instrument`.
        velocities: the MIDI velocities (1-127, ascending) the source was trained at; a
            `NoteKey.velocity` is a fractional index into them (the engine maps a played
            velocity through them, `notes.velocity_index`).
    """

    sample_rate: int
    note_samples: int
    instruments: Sequence[str]
    velocities: Sequence[int]

    def render(self, keys: Sequence[NoteKey]) -> np.ndarray:
        """Whole notes: float32 array (len(keys), note_samples) in [-1, 1]."""

    def stream(self, keys: Sequence[NoteKey], chunk: int = 256) -> Iterator[np.ndarray]:
        """The same notes in consecutive chunks: float32 arrays (len(keys), chunk).

        The concatenation equals `render(keys)` (to within 1e-4); the last chunk may be
        shorter. The first chunk must come much sooner than a whole note would.
        """

    def prepare(self) -> "NoteSource":
        """Get ready to generate, and return the source to generate from: `self`, or the
        loaded source a lazy one stands for (`model.files.LazySource` loads its weights
        here). The generator calls it once, in the process that generates."""

    def identity(self) -> str:
        """A string that changes whenever the audio for a key could change (checkpoint hash)."""
