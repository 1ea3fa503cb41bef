"""Mixing voices into a stereo block (the master bus's limiter is in limiter.py).

Audio thread only; no torch.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np

from singsynth.engine.voice import _RAMP, Voice


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

    Per voice this costs a slice and a few Python operations: voices at their recorded
    pitch are stacked and mixed with one matrix product; pitch-bent voices are resampled
    together by linear interpolation on a padded (voices, span) array.
    """
    exact: List[np.ndarray] = []
    exact_gains: List[tuple] = []
    spans: List[np.ndarray] = []
    where: List[tuple] = []
    bent_gains: List[tuple] = []
    bent_envs: List[tuple] = []
    for voice in voices:
        got = voice.read(n)
        if got is None:
            continue
        span, interp, env = got
        left, right = channel_gains[voice.channel]
        gains = (voice.amp * left, voice.amp * right)
        if interp is None:
            exact.append(span if env is None else span * env)
            exact_gains.append(gains)
        else:
            if env is not None:
                bent_envs.append((len(spans), env))
            spans.append(span)
            where.append(interp)
            bent_gains.append(gains)
    if len(exact) == 1:
        out[:, 0] += exact[0] * np.float32(exact_gains[0][0])
        out[:, 1] += exact[0] * np.float32(exact_gains[0][1])
    elif exact:
        out += np.stack(exact).T @ np.asarray(exact_gains, dtype=np.float32)
    if spans:
        padded = np.zeros((len(spans), max(len(x) for x in spans)), np.float32)
        for i, x in enumerate(spans):
            padded[i, :len(x)] = x
        fr = np.asarray(where)                                  # (voices, 2): frac, rate
        t = fr[:, :1] + fr[:, 1:] * _RAMP[None, :n]             # positions in each span
        i0 = t.astype(np.intp)
        a = np.take_along_axis(padded, i0, 1)
        b = np.take_along_axis(padded, i0 + 1, 1)
        seg = a + (b - a) * (t - i0).astype(np.float32)         # (voices, n)
        for i, env in bent_envs:
            seg[i] *= env
        out += seg.T @ np.asarray(bent_gains, dtype=np.float32)
