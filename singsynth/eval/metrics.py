"""Note-level metrics: the paper's spectral loss and waveform MSE, and pitch accuracy.

Every waveform here is a 16 kHz float32 note of 64,000 samples. Losses are computed
per note, so a table cell is the mean over notes (equal to `singsynth.model.dsp.spectral_loss`
over the whole batch, since all notes have the same length).
"""
from __future__ import annotations

import math
import sys
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from singsynth.data.pitch import IN_TUNE_CENTS, cents, track_pitch
from singsynth.model.dsp import log_spectrogram

SAMPLE_RATE = 16000
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
