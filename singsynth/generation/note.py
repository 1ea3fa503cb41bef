"""A note at the output rate, as the generators write it and the voices read it.

No torch here: the audio thread reads these arrays while mixing.
"""
from __future__ import annotations

from collections import deque
from typing import List, Optional

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
    `Note.finish` builds (the crossfade, then `margin` samples); a one-shot (a note that
    ends in silence before its loop) holds no tail, so this is an upper bound."""
    return 4 * (samples + max(1, int(LOOP_XFADE * samples)) + margin)


# A note's life, in order: each state follows the one before, and never goes back.
QUEUED = 0       # asked for, not begun
GENERATING = 1   # a batch is making it: `available` samples are written
PLAYABLE = 2     # still generating, but far enough ahead that a voice may start
DONE = 3         # whole: `length`, the loop and `tail` are valid
FAILED = 4       # generation raised: the note stays silent


class Note:
    """One note at the output rate, possibly still being generated (streamed).

    A generator writes `data`, then raises `available`, then (when it changes) `state`;
    the audio thread reads `state` first, then `available`, then `data`, so it only ever
    reads written samples, and a note it reads as DONE has its loop built.

    Attributes:
        key: the note's `NoteKey`.
        state: QUEUED, GENERATING, PLAYABLE, DONE or FAILED (module constants).
        data: float32 (capacity,) samples at the output rate; valid up to `available`.
        available: samples of `data` already written.
        length: final length in samples (output rate); 0 until DONE.
        loop_start, loop_end: sustain loop bounds in samples; valid once DONE.
        tail: float32 samples of the looped signal from `xfade_start` = loop_end - (crossfade
            length) on: the loop's last samples crossfaded into those just before
            `loop_start` (so jumping back is seamless), then the loop's start again, long
            enough (`margin`) that any block read from before `loop_end` is one slice.
        xfade_start: where the looped signal leaves `data` for `tail`.
    """

    __slots__ = ("key", "state", "data", "available", "length", "loop_start", "loop_end",
                 "tail", "xfade_start")

    def __init__(self, key: NoteKey, data: Optional[np.ndarray] = None):
        self.key = key
        self.state = QUEUED
        self.data = data if data is not None else np.zeros(0, np.float32)
        self.available = 0
        self.length = 0
        self.loop_start = 0
        self.loop_end = 0
        self.tail = np.zeros(0, np.float32)
        self.xfade_start = 0

    # Read-only views of `state`, for code off the audio path.
    @property
    def started(self) -> bool:
        """A generator has begun it (or it has ended)."""
        return self.state != QUEUED

    @property
    def playable(self) -> bool:
        """A voice may start it: generation will stay ahead, or it is whole."""
        return self.state in (PLAYABLE, DONE)

    @property
    def done(self) -> bool:
        """It has ended: whole, or failed."""
        return self.state >= DONE

    @property
    def failed(self) -> bool:
        return self.state == FAILED

    def begin(self) -> None:
        """A generator starts making it."""
        if self.state == QUEUED:
            self.state = GENERATING

    def make_playable(self) -> None:
        """Enough is written that playback started now will not catch up with generation."""
        if self.state < PLAYABLE:
            self.state = PLAYABLE

    def fail(self) -> None:
        """Generation raised: the note is silent from now on."""
        self.state = FAILED

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
        ls, le = int(LOOP_START * n), int(LOOP_END * n)
        # A note that ends in exact silence before its loop would (model/gate.py: a drum
        # hit, a decayed pluck) is a one-shot: no loop, and a voice playing it is over at
        # its last sound, not 4 s later. (On the generator's side: a scan of the note.)
        sounding = self.data[:n] != 0
        last = int(np.argmax(sounding[::-1])) if n else 0   # zeros at the end (0.1 ms)
        end = n - last if n and sounding[n - 1 - last] else 0
        if end < le:
            self.length = end
            self.state = DONE
            return
        self.length = n
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
        self.state = DONE

    @property
    def nbytes(self) -> int:
        """Bytes held by the note's arrays."""
        return int(self.data.nbytes + self.tail.nbytes)


class NoteTables:
    """`queued` and `collect` for a generator that keeps `pending` ({key: Note} queued or
    being made) and `done` (a deque of ended Notes), as both implementations do."""

    pending: dict
    done: deque

    def queued(self, key: NoteKey) -> Optional[Note]:
        """The note a request for `key` made, while queued or being made; else None."""
        return self.pending.get(key)

    def collect(self) -> List[Note]:
        """The notes that ended since the last call (audio thread; never blocks)."""
        done, out = self.done, []
        while done:
            out.append(done.popleft())
        return out
