"""A low-latency streaming resampler for cold notes.

`soxr.ResampleStream` holds back its first output until it has several hundred input
samples (592 at 16 -> 48 kHz in HQ, 928 at 16 -> 44.1 kHz: 37-58 ms of model output),
which would delay a cold note by three or four generated chunks. This windowed-sinc
resampler needs only `half_width` input samples (16: 1 ms at 16 kHz) beyond the output it
emits, at a cost that only matters for the few notes being streamed; whole notes still go
through soxr. No torch here.
"""
from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np


class SincStream:
    """Resample consecutive chunks of `channels` signals from `in_rate` to `out_rate`.

    Output sample n sits at input position n * in_rate / out_rate (no delay: output 0 is
    input 0, as soxr's compensated output), interpolated with a Kaiser-windowed sinc of
    2 * half_width taps whose cutoff is `cutoff` times the lower Nyquist frequency.

    Args:
        in_rate, out_rate: Hz (integers).
        channels: signals resampled together.
        half_width: taps on each side, in input samples (also the look-ahead).
        cutoff: fraction of the lower Nyquist frequency where the passband ends.
        beta: Kaiser window shape (8.6: about 90 dB stopband).
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int, half_width: int = 16,
                 cutoff: float = 0.92, beta: float = 8.6):
        g = gcd(int(in_rate), int(out_rate))
        self.p, self.q = int(in_rate) // g, int(out_rate) // g  # input step per output: p / q
        self.channels = channels
        self.w = half_width
        self.table = _table(self.p, self.q, half_width, min(1.0, out_rate / in_rate) * cutoff,
                            beta)                                           # (q, 2W)
        self.taps = np.arange(-half_width + 1, half_width + 1)             # (2W,)
        self.buffer = np.zeros((channels, 4096), np.float32)  # W zeros, then the input
        self.received = 0
        self.emitted = 0

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed float32 (channels, samples); returns float32 (channels, outputs) ready now.

        With `last=True` the signal ends: everything up to its resampled length is emitted.
        """
        self._append(chunk)
        if last:
            total = -(-self.received * self.q // self.p)  # ceil(received * out / in)
            self._append(np.zeros((self.channels, 2 * self.w + 1), np.float32))
            self.received -= 2 * self.w + 1
        else:
            # Output n needs input up to floor(n * p / q) + W.
            limit = self.received - 1 - self.w
            total = (limit * self.q) // self.p + 1 if limit >= 0 else 0
        n = np.arange(self.emitted, max(total, self.emitted))
        self.emitted = max(total, self.emitted)
        if len(n) == 0:
            return np.zeros((self.channels, 0), np.float32)
        pos = n * self.p
        base, phase = pos // self.q, pos % self.q
        idx = base[:, None] + self.taps[None, :] + self.w                  # into buffer
        coeffs = self.table[phase]                                         # (m, 2W)
        return np.einsum("cmk,mk->cm", self.buffer[:, idx], coeffs).astype(np.float32)

    def _append(self, chunk: np.ndarray) -> None:
        n = chunk.shape[1]
        end = self.w + self.received + n
        if end > self.buffer.shape[1]:  # grow by doubling: appending stays linear overall
            grown = np.zeros((self.channels, max(end, 2 * self.buffer.shape[1])), np.float32)
            grown[:, :self.w + self.received] = self.buffer[:, :self.w + self.received]
            self.buffer = grown
        self.buffer[:, self.w + self.received:end] = chunk
        self.received += n


@lru_cache(maxsize=8)
def _table(p: int, q: int, half_width: int, scale: float, beta: float) -> np.ndarray:
    """Filter taps for each of the q output phases, float32 (q, 2 * half_width); built
    once per rate pair (0.35 ms, paid otherwise by every cold note's first chunk)."""
    taps = np.arange(-half_width + 1, half_width + 1)                      # (2W,)
    frac = np.arange(q)[:, None] / q                                        # (q, 1)
    t = taps[None, :] - frac                                                # (q, 2W)
    window = np.kaiser(2 * half_width + 1, beta)
    # Kaiser window evaluated at fractional positions by interpolating its samples.
    win = np.interp(t, np.arange(-half_width, half_width + 1), window)
    table = scale * np.sinc(scale * t) * win
    # Unit gain at DC for every phase, or slow signals would ripple at the phase rate.
    table = (table / table.sum(axis=1, keepdims=True)).astype(np.float32)
    table.flags.writeable = False  # shared by every stream
    return table
