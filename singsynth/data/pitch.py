"""Pitch tracking of a note by librosa's pyin: how `eval` checks a model's tuning and how
`dataset build --samples` reads the pitch of an unnamed sample. No torch.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from singsynth.notes import midi_to_hz

SAMPLE_RATE = 16000
# The sustained part of an NSynth note (key held 0-3 s): skip the attack, stop before
# the release so decaying instruments still have a stable pitch there.
PITCH_START_S = 0.2
PITCH_END_S = 2.5
# A note counts as "in tune" when its median f0 is within this many cents.
IN_TUNE_CENTS = 50.0
# pyin searches about an octave either side of the requested pitch: wide enough to see
# octave errors, narrow enough to be ~10x faster than a search over all of MIDI 21-108.
SEARCH_SEMITONES = 13
FRAME_LENGTH = 2048
# pyin (YIN) compares the note with itself shifted by whole samples: at 16 kHz a 3 kHz
# period is 5.3 samples, and a pure 2,960 Hz sine reads an octave down. High notes are
# upsampled first so that the shortest period searched spans at least this many samples.
MIN_PERIOD_SAMPLES = 16
# Fewer voiced frames than this share of the window = "no pitch found".
MIN_VOICED = 0.1


def cents(f0: float, pitch: float) -> float:
    """Signed distance in cents of a frequency from a MIDI pitch (nan if f0 is nan)."""
    return 1200.0 * math.log2(f0 / midi_to_hz(pitch)) if f0 == f0 and f0 > 0 else math.nan


def track_pitch(wave, pitch: int, sample_rate: int = SAMPLE_RATE,
                start_s: float = PITCH_START_S, end_s: float = PITCH_END_S) -> float:
    """Median fundamental (Hz) of a note's sustained part, by librosa's pyin.

    Args:
        wave: (L,) float waveform at `sample_rate`.
        pitch: the requested MIDI pitch; pyin searches +-13 semitones around it.
    Returns:
        median f0 over voiced frames in [start_s, end_s), or nan when fewer than
        10% of the frames are voiced (silence, noise, an unpitched sound).
    """
    import librosa
    import soxr

    y = np.asarray(wave, dtype=np.float32)[int(start_s * sample_rate):int(end_s * sample_rate)]
    if len(y) < FRAME_LENGTH or not np.any(y):
        return math.nan
    f = midi_to_hz(pitch)
    highest = 0.95 * sample_rate / 2                     # the content stops at Nyquist
    fmax = min(f * 2 ** (SEARCH_SEMITONES / 12), highest)
    factor = max(1, math.ceil(MIN_PERIOD_SAMPLES * fmax / sample_rate))
    if factor > 1:
        y = soxr.resample(y, sample_rate, sample_rate * factor, quality="VHQ")
    rate = sample_rate * factor
    lowest = 2.0 * rate / FRAME_LENGTH                   # two periods must fit in a frame
    fmin = min(max(f * 2 ** (-SEARCH_SEMITONES / 12), lowest), fmax / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f0, voiced, _ = librosa.pyin(y, fmin=fmin, fmax=fmax, sr=rate,
                                     frame_length=FRAME_LENGTH)
    if voiced.mean() < MIN_VOICED:
        return math.nan
    return float(np.nanmedian(f0[voiced]))
