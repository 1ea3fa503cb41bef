"""The master bus's look-ahead peak limiter: no output sample exceeds the ceiling.

Audio thread only; no torch.

The gain is worked out at a control rate: one value per frame boundary (a frame is
`frame` samples, 8 at 48 kHz), from the peak of each frame, and interpolated linearly
between boundaries, sample by sample. A boundary's gain is at most the gain each of the
two frames beside it needs (ceiling / its peak), so every sample of a frame, scaled by
a gain between the two, stays at or under the ceiling. A loud frame up to `AHEAD` frames
ahead already pulls the gain down, linearly over those frames (the attack); after it the
gain recovers exponentially (`release`). The gain is exactly 1 while nothing in reach
exceeds the ceiling, so quiet audio passes bit for bit, only delayed.

The price is latency: the output is the input delayed by `latency` samples,
(AHEAD + 1) * frame - 1 (31 samples, 0.65 ms at 48 kHz; 27, 0.61 ms at 44.1 kHz).

Frames are counted from the first sample ever processed, not per block, and each value
depends only on the frames it covers: the output is the same, sample for sample, for any
sequence of block sizes.
"""
from __future__ import annotations

import math

import numpy as np

# Frames of look-ahead: the attack spans them (24 samples, 0.5 ms at 48 kHz). Latency
# counts in live play (the warm-note target is p95 <= 6 ms): 0.65 ms in all, not more.
AHEAD = 3
FRAMES_PER_SECOND = 6000


class Limiter:
    """Look-ahead peak limiter with a ceiling under full scale (linked stereo gain).

    Args:
        sample_rate: Hz.
        ceiling_db: the highest output level, dBFS (-0.3 dBFS: 0.966).
        release: seconds for the gain to recover by a factor e after a peak.
        block: the longest block expected; a longer one grows the buffers once.

    Attributes:
        latency: samples the output lags the input (the look-ahead).
        active_blocks: blocks in which the gain went below 1 somewhere.
    """

    def __init__(self, sample_rate: int, ceiling_db: float = -0.3, release: float = 0.1,
                 block: int = 8192):
        self.sample_rate = int(sample_rate)
        self.ceiling = 10.0 ** (ceiling_db / 20.0)
        self.frame = max(1, int(round(self.sample_rate / FRAMES_PER_SECOND)))
        self.latency = (AHEAD + 1) * self.frame - 1
        self.active_blocks = 0
        # A hair under the ceiling: the float32 gain and product may each round up an ulp.
        self._limit = self.ceiling * (1.0 - 2.0 ** -20)
        # Recover towards 1.001 and stop at 1: exponential, yet exactly 1 again in finite
        # time (the last step is under 2e-6), so the gain-1 fast path comes back.
        self._decay = math.exp(-self.frame / (release * self.sample_rate))
        self._ramp = np.arange(self.frame, dtype=np.float64) / self.frame
        self._weights = [(AHEAD - j) / AHEAD for j in range(1, AHEAD)]
        # Internal sample index u: the output starts with `latency` samples of silence
        # (u = 0 .. latency - 1), so input sample t is u = t + latency.
        self._next_in = self.latency           # u of the next input sample
        self._next_frame = self.latency // self.frame  # first frame not yet measured (AHEAD)
        self._req = np.ones(AHEAD)             # gains the last AHEAD measured frames need
        self._g = 1.0                          # gain at the last boundary worked out
        self._g0 = 0                           # boundary of self._gains[0]
        self._ng = 1                           # boundaries held: [g0, g0 + ng), gain 1
        self._alloc(int(block))

    def _alloc(self, block: int) -> None:
        f, d = self.frame, self.latency
        self._cap = block
        self._buf = np.zeros((d + block, 2), np.float32)       # input not yet output
        self._abs = np.empty(((block // f + 2) * f, 2), np.float32)
        self._gains = np.ones(block // f + AHEAD + 8)          # boundary gains held
        self._curve = np.empty((block // f + 2, f))
        self._g32 = np.empty(block, np.float32)
        frames = block // f + 2
        self._r = np.empty(AHEAD + frames)     # required gains while limiting
        self._a = np.empty(frames)             # boundary bounds while limiting
        self._tmp = np.empty(frames)

    def _grow(self, block: int) -> None:
        pending, gains = self._buf[:self.latency].copy(), self._gains[:self._ng].copy()
        self._alloc(block)
        self._buf[:self.latency] = pending
        self._gains[:self._ng] = gains

    def process(self, block: np.ndarray) -> np.ndarray:
        """Limit float32 (n, 2) `block` in place and return it: the output `latency`
        samples behind the input. Audio thread only."""
        n = len(block)
        if n == 0:
            return block
        if n > self._cap:  # only a longer block than any before allocates
            self._grow(n)
        f, d, buf = self.frame, self.latency, self._buf
        buf[d:d + n] = block
        base = self._next_in - d               # u of buf[0], the first sample output now
        end = self._next_in + n
        done = end // f                        # frames before this one are complete
        m = done - self._next_frame
        if m > 0:  # measure the frames completed by this block
            s = self._next_frame * f - base
            a = np.abs(buf[s:s + m * f], out=self._abs[:m * f])
            self._boundaries(a.reshape(m, 2 * f).max(axis=1))
            self._next_frame = done
        # Per-sample gains for u in [base, base + n): frames fo0 .. fo1, boundaries
        # fo0 .. fo1 + 1, all worked out (that is what the latency buys).
        fo0, fo1 = base // f, (base + n - 1) // f
        g = self._gains[fo0 - self._g0:fo1 - self._g0 + 2]
        if g.min() < 1.0:
            k = fo1 - fo0 + 1
            curve = self._curve[:k]
            np.subtract(g[1:, None], g[:-1, None], out=curve)
            curve *= self._ramp
            curve += g[:-1, None]
            off = base - fo0 * f
            g32 = self._g32[:n]
            g32[:] = curve.reshape(-1)[off:off + n]
            np.multiply(buf[:n], g32[:, None], out=block)
            self.active_blocks += 1
        else:
            block[:] = buf[:n]
        buf[:d] = buf[n:n + d]
        self._next_in = end
        keep = (base + n) // f  # the frame of the next output sample: drop boundaries before
        drop = keep - self._g0
        if drop > 0:
            self._gains[:self._ng - drop] = self._gains[drop:self._ng]
            self._ng -= drop
            self._g0 = keep
        return block

    def _boundaries(self, peaks: np.ndarray) -> None:
        """Append the gains of the boundaries that the new frames' `peaks` (float32 (m,),
        linear) settle: boundary b needs frames b - 1 .. b + AHEAD - 1."""
        m = len(peaks)
        at = self._ng
        if self._g == 1.0 and self._req.min() == 1.0 and not peaks.max() > self._limit:
            self._gains[at:at + m] = 1.0  # nothing in reach is loud: gain exactly 1
            self._ng += m
            return
        r = self._r[:AHEAD + m]  # required gains of frames next_frame - AHEAD .. done - 1
        r[:AHEAD] = self._req
        # limit / max(peak, limit), in float64: exactly 1 for frames under the limit
        # (zero ones too); NaN frames need nothing (fmax drops NaN).
        need = r[AHEAD:]
        need[:] = peaks
        np.fmax(need, self._limit, out=need)
        np.divide(self._limit, need, out=need)
        a, tmp = self._a[:m], self._tmp[:m]
        np.minimum(r[:m], r[1:m + 1], out=a)  # the two frames beside each boundary
        for j, w in enumerate(self._weights, 1):  # the attack: loud frames j ahead
            np.subtract(1.0, r[1 + j:m + 1 + j], out=tmp)  # at most 1 - (1 - need) * w
            tmp *= -w
            tmp += 1.0
            np.minimum(a, tmp, out=a)
        g, decay = self._g, self._decay
        out = a.tolist()
        for i, bound in enumerate(out):  # the release: one boundary after another
            g = 1.001 - (1.001 - g) * decay
            if g > 1.0:
                g = 1.0
            if bound < g:
                g = bound
            out[i] = g
        self._gains[at:at + m] = out
        self._ng += m
        self._g = g
        self._req[:] = r[m:]
