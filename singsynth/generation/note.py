"""A note at the output rate, as the generators write it and the voices read it.

No torch here: the audio thread reads these arrays while mixing.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from singsynth.notes import NoteKey

# Where the sustain loop sits, as fractions of the note length. SING notes (like NSynth)
# are held for 3 s of 4 s and then released, so a loop within 50-70% stays inside the
# stable held part, clear of the attack and of the recorded release.
LOOP_START = 0.50
LOOP_END = 0.70
LOOP_XFADE = 0.025
# Samples of loop start repeated after the crossfade: at least the most a voice reads at
# once (voice.tail_margin(voice.MAX_BLOCK) = 2050); an offline synth asks for more.
TAIL_MARGIN = 2100


def note_nbytes(samples: int, margin: int = TAIL_MARGIN) -> int:
    """Bytes a finished note of `samples` samples holds: its data and the loop tail
    `Note.finish` builds (the crossfade, then `margin` samples)."""
    return 4 * (samples + max(1, int(LOOP_XFADE * samples)) + margin)


class Note:
    """One note at the output rate, possibly still being generated (streamed).

    A generator thread writes `data` and then raises `available`; the audio thread reads
    `available` first and then `data`, so it only ever reads written samples.

    Attributes:
        key: the note's `NoteKey`.
        data: float32 (capacity,) samples at the output rate; valid up to `available`.
        available: samples of `data` already written.
        done: True once the whole note is written (then `length == available`).
        length: final length in samples (output rate); 0 until done.
        loop_start, loop_end: sustain loop bounds in samples; valid once `done`.
        tail: float32 samples of the looped signal from `xfade_start` = loop_end - (crossfade
            length) on: the loop's last samples crossfaded into those just before
            `loop_start` (so jumping back is seamless), then the loop's start again, long
            enough (`margin`) that any block read from before `loop_end` is one slice.
        xfade_start: where the looped signal leaves `data` for `tail`.
        failed: generation raised; the note stays silent.
        playable: a voice may start (it will not overtake generation); True once done.
    """

    __slots__ = ("key", "data", "available", "done", "length", "loop_start", "loop_end",
                 "tail", "xfade_start", "failed", "started", "playable")

    def __init__(self, key: NoteKey, data: Optional[np.ndarray] = None):
        self.key = key
        self.data = data if data is not None else np.zeros(0, np.float32)
        self.available = 0
        self.done = False
        self.length = 0
        self.loop_start = 0
        self.loop_end = 0
        self.tail = np.zeros(0, np.float32)
        self.xfade_start = 0
        self.failed = False
        self.started = False  # generator bookkeeping: a stream for it has begun
        # Enough is written that, at the measured generation speed, playback started now
        # will not catch up with generation (set by the generator).
        self.playable = False

    @classmethod
    def complete(cls, key: NoteKey, data: np.ndarray, margin: int = TAIL_MARGIN) -> "Note":
        """A finished note from a whole float32 (samples,) array at the output rate."""
        note = cls(key, np.ascontiguousarray(data, dtype=np.float32))
        note.available = len(note.data)
        note.finish(margin)
        return note

    def finish(self, margin: int = TAIL_MARGIN) -> None:
        """Mark the note whole and build its sustain loop (generator side); the tail
        repeats `margin` samples of the loop's start."""
        n = self.available
        self.length = n
        ls, le = int(LOOP_START * n), int(LOOP_END * n)
        x = max(1, min(int(LOOP_XFADE * n), ls, le - ls))
        if le - ls >= 2:
            w = (np.arange(x, dtype=np.float32) + 1) / x
            d = self.data
            # Blend the loop's tail into what precedes loop_start: its last sample becomes
            # data[ls - 1], so data[ls] follows it as naturally as in the recording.
            xfade = d[le - x:le] * (1 - w) + d[ls - x:ls] * w
            period = np.concatenate([d[ls:le - x], xfade])
            self.tail = np.concatenate([xfade, np.resize(period, margin)]).astype(np.float32)
            self.loop_start, self.loop_end, self.xfade_start = ls, le, le - x
        self.done = True
        self.playable = True

    @property
    def nbytes(self) -> int:
        """Bytes held by the note's arrays."""
        return int(self.data.nbytes + self.tail.nbytes)
