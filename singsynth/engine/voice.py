"""One sounding note: playback position, pitch bend, sustain loop and envelopes.

Audio thread only; no torch. A voice reads its `Note` (possibly still streaming) at a
playback rate set by the channel's pitch bend; the mixer resamples all bent voices at once
by linear interpolation. At rate 1 and an integer position the samples are copied exactly
(what the exact-sample tests rely on).
"""
from __future__ import annotations

import numpy as np

from singsynth.generation.note import DONE, FAILED, PLAYABLE, Note

# The most samples a voice reads at once: `Synth.process` splits its blocks into reads of
# at most MAX_BLOCK when playing live, OFFLINE_BLOCK when rendering offline (8x fewer
# Python calls per second of audio; its notes repeat more loop, see `tail_margin`).
MAX_BLOCK = 512
OFFLINE_BLOCK = 4096
MAX_RATE = 4.0  # a bend of +24 semitones
# Per-read scratch: positions 0..n-1 for the longest read (float64 for read positions,
# float32 for envelopes).
_RAMP = np.arange(OFFLINE_BLOCK, dtype=np.float64)
_RAMP32 = _RAMP.astype(np.float32)


def playable_rate(rate: float) -> float:
    """`rate` clamped to MAX_RATE, the fastest read a note's loop tail holds (`tail_margin`).

    RPN 0 allows bend ranges up to 127 semitones (a rate of about 1,500 at full wheel);
    bends beyond +24 semitones play at +24. Downward bends are not limited: slower reads
    need fewer samples.
    """
    return min(rate, MAX_RATE)


def tail_margin(block: int) -> int:
    """Samples of loop start a note's tail must repeat (`Note.finish`) so that a read of
    up to `block` samples at up to MAX_RATE, starting before the loop's end, is one slice."""
    return int(block * MAX_RATE) + 2


class Voice:
    """A note being played on a channel.

    Args:
        note: the `Note` to play (may still be streaming).
        channel, pitch: MIDI channel 0-15 and the pitch that was struck (before transpose).
        amp: linear gain from the preset.
        release: release time in samples (output rate).
        rate: initial playback rate (2 ** (bend semitones / 12)).
        order: note-on counter, to steal the oldest voice.
    """

    __slots__ = ("note", "channel", "pitch", "amp", "release", "rate", "order", "pos",
                 "released", "sustained", "stolen", "looping", "finished", "env",
                 "ramp_from", "ramp_len", "ramp_done", "ramp_power", "released_at",
                 "started", "stalls")

    def __init__(self, note: Note, channel: int, pitch: int, amp: float, release: int,
                 rate: float = 1.0, order: int = 0):
        self.note = note
        self.channel = channel
        self.pitch = pitch
        self.amp = amp
        self.release = max(1, int(release))
        self.rate = playable_rate(rate)
        self.order = order
        self.pos = 0.0           # read position in note samples (output rate)
        self.released = False    # note-off (and pedal up) happened: release envelope runs
        self.sustained = False   # key up while the sustain pedal is down
        self.stolen = False      # fading out in a few ms to free its slot
        self.looping = False     # reading the sustain loop instead of the recording
        self.finished = False
        self.env = 1.0           # envelope level reached so far
        self.ramp_len = 0        # samples of the running ramp (0: none)
        self.ramp_done = 0
        self.ramp_from = 1.0
        self.ramp_power = 1.0
        self.released_at = 0     # order of the release, to steal released voices first
        self.started = False
        self.stalls = 0          # blocks a streaming note could not keep up

    # ---- state changes (at event offsets) ----------------------------------------
    def note_off(self, pedal_down: bool, order: int) -> None:
        """Key up: release now, or hold until the pedal goes up."""
        if pedal_down:
            self.sustained = True
        else:
            self.start_release(order)

    def start_release(self, order: int) -> None:
        """Start the release envelope (curve (1 - t)^2 over the preset's release time)."""
        if self.released or self.stolen:
            return
        self.released = True
        self.sustained = False
        self.released_at = order
        note = self.note
        # Still before the loop's crossfade: the recording and the loop are identical
        # there, so fall back to the recorded release seamlessly.
        if self.looping and self.pos < note.xfade_start:
            self.looping = False
        self._ramp(self.release, 2.0)

    def steal(self, fade: int) -> None:
        """Fade out over `fade` samples (linear) and finish: no click."""
        if self.stolen:
            return
        self.stolen = True
        self._ramp(max(1, fade), 1.0)

    def _ramp(self, length: int, power: float) -> None:
        self.ramp_from = self.env
        self.ramp_len = length
        self.ramp_done = 0
        self.ramp_power = power

    # ---- rendering ---------------------------------------------------------------
    def read(self, n: int):
        """Advance by `n` output samples (n <= MAX_BLOCK) and say what to mix.

        Returns None when there is nothing to add (a cold note whose first samples are
        not playable yet: the voice waits, then starts at a block boundary), else
        `(span, interp, env)`:
            span: float32 samples of the note from the block's first read position;
            interp: None when `span` is exactly the block's `n` samples (rate 1 at an
                integer position), else `(frac, rate)`: sample i of the block lies at
                position frac + rate * i of `span` (linear interpolation, see `mixer.mix`);
            env: None, or float32 (n,) envelope to multiply the block by.
        """
        note = self.note
        state = note.state  # read before `available` and `data`: see `Note`
        if state == FAILED:
            self.finished = True
            return None
        avail = note.available
        data = note.data
        done = state == DONE
        rate = self.rate
        pos = self.pos
        if done and note.loop_end and not self.released and not self.looping \
                and pos < note.xfade_start:
            self.looping = True
        if not done and (pos + rate * n + 2 > avail or not (self.started or state == PLAYABLE)):
            if self.started:
                self.stalls += 1  # generation fell behind playback: a gap, counted
            return None
        self.started = True
        ipos = int(pos)
        frac = pos - ipos
        exact = rate == 1.0 and frac == 0.0
        m = n if exact else int(frac + rate * (n - 1)) + 2
        span = self._span(ipos, m, data, avail, done)
        pos += rate * n
        if self.looping:
            while pos >= note.loop_end:
                pos -= note.loop_end - note.loop_start
        elif done and pos >= note.length:
            self.finished = True
        self.pos = pos
        env = self._envelope(n) if self.ramp_len else None
        return span, (None if exact else (frac, rate)), env

    def _span(self, a: int, m: int, data: np.ndarray, avail: int, done: bool) -> np.ndarray:
        """Samples a .. a+m of the note as played: through the sustain loop when looping,
        zeros past the end. One slice in all but the block that enters the loop's tail."""
        note = self.note
        if self.looping:
            xs = note.xfade_start
            if a + m <= xs:
                return data[a:a + m]
            if a >= xs:
                return note.tail[a - xs:a - xs + m]
            return np.concatenate((data[a:xs], note.tail[:a + m - xs]))
        limit = note.length if done else avail
        if a + m <= limit:
            return data[a:a + m]
        out = np.zeros(m, np.float32)
        if a < limit:
            out[:limit - a] = data[a:limit]
        return out

    def _envelope(self, n: int) -> np.ndarray:
        """The running ramp's next `n` gains: float32 (n,); finishes the voice at its end."""
        # ramp_from * (1 - k / ramp_len) ** power for k = ramp_done .. ramp_done + n - 1,
        # in place in float32 (the sample counts are exact there: below 2 ** 24).
        env = _RAMP32[:n] + np.float32(self.ramp_done)
        env *= np.float32(-1.0 / self.ramp_len)
        env += np.float32(1.0)
        np.maximum(env, np.float32(0.0), out=env)
        if self.ramp_power == 2.0:
            env *= env
        elif self.ramp_power != 1.0:
            env **= np.float32(self.ramp_power)
        env *= np.float32(self.ramp_from)
        self.ramp_done += n
        self.env = float(env[-1])
        if self.ramp_done >= self.ramp_len:
            self.finished = True
        return env
