"""The one queue where threads meet the audio thread: timed MIDI-like events.

Any thread may push; only the audio thread (the caller of `Synth.process`) pops. A
`collections.deque` is used because `append` and `popleft` are atomic in CPython and
never block: the audio thread cannot be made to wait on a lock that a slow producer
holds (FluidSynth's ring buffer, in Python).
"""
from __future__ import annotations

from collections import deque
from typing import List, NamedTuple

# Event kinds.
NOTE_ON = 0
NOTE_OFF = 1
CONTROL = 2
PROGRAM = 3
BEND = 4


class Event(NamedTuple):
    """One event, applied at sample `offset` of the next `process` block.

    Attributes:
        offset: samples (output rate) from the start of the next block; an offset beyond
            that block is carried over to the following blocks.
        seq: push order, to keep events with the same offset in order.
        kind: NOTE_ON, NOTE_OFF, CONTROL, PROGRAM or BEND.
        channel: MIDI channel 0-15.
        a, b: pitch/velocity, controller/value, program/0 or bend/0.
    """

    offset: int
    seq: int
    kind: int
    channel: int
    a: int
    b: int


class EventQueue:
    """Bounded multi-producer, single-consumer event queue that never blocks.

    Args:
        capacity: events held at most; pushes beyond it are dropped and counted
            (`dropped`), since waiting would stall the producer (a MIDI callback).
    """

    def __init__(self, capacity: int = 65536):
        self.capacity = capacity
        self.dropped = 0
        self._events: deque = deque()
        self._carry: List[Event] = []
        self._seq = 0

    def push(self, kind: int, channel: int, a: int, b: int, offset: int = 0) -> None:
        """Enqueue one event (any thread; never blocks)."""
        if len(self._events) >= self.capacity:
            self.dropped += 1
            return
        # `seq` may race between producers; it only orders equal offsets, and deque
        # order already reflects push order for the common single-producer case.
        self._seq += 1
        self._events.append(Event(max(0, int(offset)), self._seq, kind, channel, a, b))

    def pop_block(self, frames: int) -> List[Event]:
        """Events due in the next `frames` samples, sorted by offset (audio thread only).

        Events with `offset >= frames` stay queued with their offset reduced by `frames`.
        """
        events = self._carry
        self._carry = []
        pop = self._events.popleft
        for _ in range(len(self._events)):
            events.append(pop())
        if not events:
            return events
        due = []
        for ev in events:
            if ev.offset < frames:
                due.append(ev)
            else:
                self._carry.append(ev._replace(offset=ev.offset - frames))
        due.sort(key=lambda ev: (ev.offset, ev.seq))
        return due

    def __len__(self) -> int:
        return len(self._events) + len(self._carry)
