"""Note-level metrics: the paper's spectral loss and waveform MSE, and pitch accuracy.

Every waveform here is a 16 kHz float32 note of 64,000 samples. Losses are computed
per note, so a table cell is the mean over notes (equal to `singsynth.dsp.spectral_loss`
over the whole batch, since all notes have the same length).
"""
from __future__ import annotations

import math
import sys
import warnings
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from singsynth.dsp import log_spectrogram
from singsynth.midi import midi_to_hz

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


def progress(iterable, desc: str, total: int | None = None):
    """A tqdm bar on stderr, redrawn at most every 30 s when stderr is a log file."""
    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 30)


def note_losses(estimate: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-note spectral loss and waveform MSE.

    Args:
        estimate, target: (B, L) waveforms at 16 kHz, L >= 1024.
    Returns:
        (spectral (B,), mse (B,)) float32 CPU tensors; spectral is the mean over
        frequency bins and frames of |log(1 + |STFT est|²) - log(1 + |STFT tgt|²)|.
    """
    estimate, target = estimate.float(), target.float()
    spec = (log_spectrogram(estimate) - log_spectrogram(target)).abs().mean(dim=(1, 2))
    mse = (estimate - target).square().mean(dim=1)
    return spec.cpu(), mse.cpu()


def score(produce: Callable[[torch.Tensor], torch.Tensor], targets: torch.Tensor,
          batch: int = 16, desc: str = "scoring", keep: bool = False) -> dict:
    """Score `produce` against `targets` in batches.

    Args:
        produce: maps a LongTensor of row indices (b,) to estimates (b, L) float32.
        targets: (N, L) float32 ground-truth notes.
        keep: also return the estimates (N, L) (for pitch tracking and pictures).
    Returns:
        {"spectral": per-note (N,) tensor, "mse": (N,), "estimates": (N, L) if keep}.
    """
    n = len(targets)
    spec, mse, kept = torch.zeros(n), torch.zeros(n), []
    for rows in progress(torch.arange(n).split(batch), desc):
        est = produce(rows).float().cpu()
        spec[rows], mse[rows] = note_losses(est, targets[rows])
        if keep:
            kept.append(est)
    out = {"spectral": spec, "mse": mse}
    if keep:
        out["estimates"] = torch.cat(kept) if kept else torch.zeros(0, targets.shape[-1])
    return out


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


def pitch_accuracy(waves, pitches, desc: str = "pitch", tolerance: float = IN_TUNE_CENTS) -> dict:
    """Track every note and count those within `tolerance` cents of its pitch.

    Args:
        waves: (N, L) notes at 16 kHz (tensor or array).
        pitches: (N,) requested MIDI pitches.
    Returns:
        {"f0": (N,) Hz (nan = no pitch), "cents": (N,) signed error (nan = no pitch),
         "in_tune": count within tolerance, "octave_in_tune": count within tolerance of
         the pitch in some octave (pyin and sub-octave sounds such as organ stops make
         octave errors), "unpitched": count with no pitch found, "total": N,
         "share": in_tune / N (unpitched notes count as out of tune)}.
    """
    waves = waves.numpy() if isinstance(waves, torch.Tensor) else np.asarray(waves)
    pitches = [int(p) for p in pitches]
    f0 = np.full(len(pitches), np.nan)
    for i in progress(range(len(pitches)), desc):
        f0[i] = track_pitch(waves[i], pitches[i])
    err = np.array([cents(f, p) for f, p in zip(f0, pitches)])
    found = err[~np.isnan(err)]
    in_tune = int(np.sum(np.abs(found) <= tolerance))
    folded = np.abs((found + 600) % 1200 - 600)
    total = len(pitches)
    return {"f0": f0, "cents": err, "in_tune": in_tune,
            "octave_in_tune": int(np.sum(folded <= tolerance)),
            "unpitched": int(np.isnan(err).sum()),
            "total": total, "share": in_tune / total if total else math.nan}


def in_tune_mask(cents_error, tolerance: float = IN_TUNE_CENTS) -> np.ndarray:
    """(N,) bool: which errors (cents, nan = no pitch) are within `tolerance`."""
    err = np.asarray(cents_error, dtype=float)
    return np.abs(np.nan_to_num(err, nan=np.inf)) <= tolerance
