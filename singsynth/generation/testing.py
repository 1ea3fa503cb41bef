"""A deterministic `NoteSource` for tests and benchmarks of the engine: decaying sines.

Instrument i adds its (i + 2)-th harmonic to the fundamental, so blends are audible; the
fundamental is the key's pitch (A4 = 440 Hz); the amplitude grows with the velocity index.
The note starts at its peak (a cosine), so its first sample is never zero.
"""
from __future__ import annotations

import threading
import time
from typing import Iterator, List, Optional, Sequence

import numpy as np

from singsynth.generation.thread import WARM_UP_KEY
from singsynth.notes import TRAINED_VELOCITIES, NoteKey
from singsynth.notes import midi_to_hz as pitch_hz


class SineSource:
    """Decaying cosine notes.

    Args:
        instruments: names; instrument i adds harmonic i + 2 (instrument 0 is a pure tone).
        sample_rate: Hz of the notes it returns.
        note_samples: length of a note in samples.
        decay: amplitude decay per second (exp(-decay * t)).
        chunk_delay: seconds slept before each streamed chunk (a slow model).
        gate: if set, `stream` yields `gate_after` chunks, then waits for this event before
            the rest (tests hold a note mid-generation with it).
        fail_after: if set, `stream` and `render` raise RuntimeError after this many chunks
            (a model that breaks).

    Attributes:
        calls: list of ("render" | "stream", number of keys), in call order, leaving out
            the generator's warm-up (`generator.WARM_UP_KEY` alone).
        warm_ups: list of the calls that were the warm-up.
    """

    def __init__(self, instruments: Sequence[str] = ("piano", "organ", "guitar", "strings"),
                 sample_rate: int = 16000, note_samples: int = 16000, decay: float = 1.0,
                 chunk_delay: float = 0.0, gate: Optional[threading.Event] = None,
                 gate_after: int = 1, fail_after: Optional[int] = None,
                 velocities: Sequence[int] = TRAINED_VELOCITIES):
        self.instruments = list(instruments)
        self.velocities = tuple(velocities)
        self.sample_rate = sample_rate
        self.note_samples = note_samples
        self.decay = decay
        self.chunk_delay = chunk_delay
        self.gate = gate
        self.gate_after = gate_after
        self.fail_after = fail_after
        self.calls: List[tuple] = []
        self.warm_ups: List[tuple] = []
        self.streams_finished = 0

    def note(self, key: NoteKey) -> np.ndarray:
        """One note: float32 (note_samples,)."""
        t = np.arange(self.note_samples) / self.sample_rate
        f = pitch_hz(key.pitch)
        wave = np.zeros(self.note_samples)
        for i, w in key.instrument:
            wave += w * np.cos(2 * np.pi * f * t)
            if i:
                wave += w * 0.3 * np.cos(2 * np.pi * f * (i + 2) * t)
        amp = 0.1 + 0.1 * key.velocity  # 0.1 at velocity 25 .. 0.5 at 127
        return (amp * np.exp(-self.decay * t) * wave).astype(np.float32)

    def _record(self, kind: str, keys: Sequence[NoteKey]) -> None:
        (self.warm_ups if list(keys) == [WARM_UP_KEY] else self.calls).append((kind, len(keys)))

    def render(self, keys: Sequence[NoteKey]) -> np.ndarray:
        """Whole notes: float32 (len(keys), note_samples)."""
        self._record("render", keys)
        if self.fail_after is not None:
            raise RuntimeError("SineSource: failing as asked")
        return np.stack([self.note(k) for k in keys]) if keys else np.zeros((0, self.note_samples), np.float32)

    def stream(self, keys: Sequence[NoteKey], chunk: int = 256) -> Iterator[np.ndarray]:
        """The same notes in chunks of `chunk` samples (the last may be shorter)."""
        self._record("stream", keys)
        notes = np.stack([self.note(k) for k in keys])
        for i, start in enumerate(range(0, self.note_samples, chunk)):
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
            if i == self.fail_after:
                raise RuntimeError("SineSource: failing as asked")
            if i == self.gate_after and self.gate is not None:
                self.gate.wait()
            yield notes[:, start:start + chunk]
        self.streams_finished += 1

    def prepare(self) -> "SineSource":
        return self

    def identity(self) -> str:
        return f"sine-{self.sample_rate}-{self.note_samples}-{self.decay}"
