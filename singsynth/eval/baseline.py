"""The sampler baseline: play the nearest training pitch, resampled to the requested one.

This is what a sample-based instrument does with a missing key: take the recording of
the closest pitch of the same instrument and velocity and change its playback speed by
2^(semitones / 12). It keeps the timbre of a real recording but shifts formants and
shortens or stretches the envelope; SING should beat it on held-out pitches to be worth
its cost.
"""
from __future__ import annotations

import numpy as np
import soxr
import torch

NOTE_SAMPLES = 64000


def shift_pitch(wave, semitones: float, length: int = NOTE_SAMPLES) -> np.ndarray:
    """Play `wave` faster by 2^(semitones/12) (pitch and speed together, like a sampler).

    Args:
        wave: (L,) float waveform at any rate.
        semitones: pitch change; +12 plays an octave higher and twice as fast.
        length: output samples; the result is cut or zero-padded to it.
    Returns:
        (length,) float32 at the same sample rate as `wave`.
    """
    wave = np.asarray(wave, dtype=np.float32)
    ratio = 2.0 ** (semitones / 12)
    if semitones == 0:
        out = wave
    else:
        # Reading the input at `ratio` times its rate = resampling from rate*ratio to rate.
        out = soxr.resample(wave, 16000 * ratio, 16000, quality="HQ").astype(np.float32)
    if len(out) >= length:
        return np.ascontiguousarray(out[:length])
    return np.pad(out, (0, length - len(out)))


def nearest_sources(train_instrument, train_pitch, train_velocity,
                    instrument, pitch, velocity) -> dict:
    """For each requested note, the training note a sampler would play.

    The nearest pitch of the same instrument and velocity (ties: the lower pitch, so
    it is shifted up); if that instrument has no training note at that velocity, the
    nearest velocity that has one.

    Args:
        train_*: (M,) labels of the training notes (instrument index, MIDI pitch,
            velocity index).
        instrument, pitch, velocity: (N,) labels of the notes to imitate.
    Returns:
        {"rows": (N,) int64 rows into the training notes (-1 if the instrument has none),
         "semitones": (N,) requested minus source pitch,
         "other_velocity": (N,) bool, True where the velocity had to change}.
    """
    ti, tp, tv = (np.asarray(a, dtype=np.int64) for a in (train_instrument, train_pitch,
                                                          train_velocity))
    n = len(instrument)
    rows = np.full(n, -1, dtype=np.int64)
    shift = np.zeros(n, dtype=np.int64)
    other = np.zeros(n, dtype=bool)
    for k, (i, p, v) in enumerate(zip(np.asarray(instrument), np.asarray(pitch),
                                      np.asarray(velocity))):
        candidates = np.flatnonzero(ti == i)
        if len(candidates) == 0:
            continue
        # Lexicographic cost: velocity distance first, then pitch distance, then pitch.
        cost = (np.abs(tv[candidates] - v) * 1_000_000 + np.abs(tp[candidates] - p) * 1000
                + tp[candidates])
        best = candidates[np.argmin(cost)]
        rows[k], shift[k], other[k] = best, p - tp[best], tv[best] != v
    return {"rows": rows, "semitones": shift, "other_velocity": other}


def baseline_notes(sources: dict, train_audio: dict) -> torch.Tensor:
    """Render the baseline for every requested note.

    Args:
        sources: the output of `nearest_sources`.
        train_audio: training row -> (64000,) waveform, for every row in sources["rows"].
    Returns:
        (N, 64000) float32; silence where the instrument had no training note.
    """
    out = np.zeros((len(sources["rows"]), NOTE_SAMPLES), dtype=np.float32)
    for k, (row, semis) in enumerate(zip(sources["rows"], sources["semitones"])):
        if row >= 0:
            out[k] = shift_pitch(train_audio[int(row)], float(semis))
    return torch.from_numpy(out)
