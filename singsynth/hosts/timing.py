"""Timestamped MIDI events -> sample offsets in the audio block that plays them.

MIDI arrives on its own thread at any moment; audio is produced a block at a time. Playing
each event at the start of the next block would round its timing to the block size and make
fast runs jitter. Instead each event is stamped on arrival with the audio stream's clock
and played exactly `latency` after that instant: the audio callback, which knows the
stream time of its first sample, turns the stamp into an offset inside its block. With
`latency` = one block every event lands in the block after it arrived, at the position
that keeps the spacing the player gave it, whatever order the MIDI and audio threads run
in. The hand-off is a deque (append and popleft are atomic in CPython): the MIDI thread
never waits for the audio thread or the other way round.
"""
from __future__ import annotations

import collections


class EventScheduler:
    """Carry (time, message) pairs from the MIDI thread to sample offsets in the audio thread.

    Args:
        handle: `handle(msg, offset)` called from the audio thread for each due event, with
            `offset` in samples into the block about to be processed (`Synth.handle`).
        sample_rate: output rate in Hz.
        latency_frames: fixed delay from arrival to sound, in output samples; at least one
            block, raised automatically if the host delivers larger blocks.
    """

    # An event due further ahead than this is a clock jump, not a real schedule: play it now.
    MAX_AHEAD_SECONDS = 1.0

    def __init__(self, handle, sample_rate, latency_frames):
        self._handle = handle
        self.sample_rate = float(sample_rate)
        self.latency_frames = int(latency_frames)
        self._queue = collections.deque(maxlen=8192)
        self.late = 0      # events whose moment had already passed (played at offset 0)
        self.events = 0    # events dispatched

    def push(self, timestamp, msg):
        """MIDI thread: queue `msg` stamped with the stream clock time `timestamp` (s)."""
        self._queue.append((timestamp, msg))

    def dispatch(self, block_time, frames):
        """Audio thread only: hand every event due in this block to `handle`.

        Args:
            block_time: stream clock time (s) at which this block is being computed.
            frames: block length in samples.
        """
        if frames > self.latency_frames:
            self.latency_frames = frames
        queue = self._queue
        while queue:
            stamp, msg = queue[0]
            offset = round((stamp - block_time) * self.sample_rate) + self.latency_frames
            if offset >= frames and offset < self.MAX_AHEAD_SECONDS * self.sample_rate:
                break  # due in a later block; later stamps are later still
            queue.popleft()
            if offset < 0:
                self.late += 1
                offset = 0
            elif offset >= frames:
                offset = 0
            self.events += 1
            self._handle(msg, offset)
