"""Mixing voices into a stereo block, and the soft limiter on the master bus.

Audio thread only; no torch.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np

from .voice import Voice


def pan_gains(pan: float) -> tuple:
    """Equal-power (left, right) gains for `pan` in [-1 (left), 1 (right)]; 0 -> 0.707 each."""
    angle = (min(max(pan, -1.0), 1.0) + 1.0) * math.pi / 4
    return math.cos(angle), math.sin(angle)


def mix(voices: Sequence[Voice], n: int, channel_gains: Sequence[tuple], out: np.ndarray) -> None:
    """Add `n` samples of every voice into `out` (float32 (n, 2)).

    Args:
        voices: the voices to render (each advances by `n` samples).
        channel_gains: per channel (left, right) linear gains (volume, expression, pan).
        out: float32 (n, 2) block to add into.

    Rows are stacked and mixed with one matrix product, so the cost per voice is a few
    Python operations instead of several numpy calls.
    """
    rows: List[np.ndarray] = []
    gains: List[tuple] = []
    for voice in voices:
        seg = voice.render(n)
        if seg is None:
            continue
        left, right = channel_gains[voice.channel]
        rows.append(seg)
        gains.append((voice.amp * left, voice.amp * right))
    if not rows:
        return
    if len(rows) == 1:
        out[:, 0] += rows[0] * np.float32(gains[0][0])
        out[:, 1] += rows[0] * np.float32(gains[0][1])
        return
    matrix = np.stack(rows)                                # (voices, n)
    g = np.asarray(gains, dtype=np.float32)               # (voices, 2)
    out += matrix.T @ g                                   # (n, 2)


class Limiter:
    """Soft limiter: never lets a sample out of (-1, 1), and counts the blocks it touched.

    A block whose peak exceeds `threshold` ramps the gain down across the block to
    `threshold / peak`; the gain then recovers with time constant `recovery` seconds.
    Whatever still exceeds `threshold` (a peak early in a ramp) goes through a tanh knee
    that maps [threshold, inf) onto [threshold, 1), so the output stays strictly inside (-1, 1).

    Args:
        sample_rate: Hz.
        threshold: level where limiting starts (linear, < 1).
        recovery: seconds for the gain to recover by a factor e.
    """

    def __init__(self, sample_rate: int, threshold: float = 0.9, recovery: float = 0.2):
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.recovery = recovery
        self.gain = 1.0
        self.active_blocks = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Limit float32 (n, 2) `block` in place and return it."""
        n = len(block)
        if n == 0:
            return block
        peak = float(np.max(np.abs(block)))
        target = 1.0
        if peak * self.gain > self.threshold:
            target = self.threshold / peak
        touched = False
        if target < self.gain:
            ramp = np.linspace(self.gain, target, n + 1, dtype=np.float32)[1:]
            block *= ramp[:, None]
            self.gain = target
            touched = True
        else:
            # Recover towards 1 exponentially, smoothly across the block.
            new = 1.0 - (1.0 - self.gain) * math.exp(-n / (self.recovery * self.sample_rate))
            new = min(new, target) if target < 1.0 else new
            if self.gain != 1.0 or new != 1.0:
                block *= np.linspace(self.gain, new, n + 1, dtype=np.float32)[1:, None]
                touched = touched or self.gain < 0.999
            self.gain = new
        over = np.abs(block) > self.threshold
        if over.any():
            t = self.threshold
            x = block[over]
            block[over] = np.sign(x) * (t + (1 - t) * np.tanh((np.abs(x) - t) / (1 - t)))
            touched = True
        if touched:
            self.active_blocks += 1
        return block
