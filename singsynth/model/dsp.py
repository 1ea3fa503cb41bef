"""Signal helpers: the STFT and the losses of the SING paper (equations 3.1-3.3)."""
from __future__ import annotations

import torch

N_FFT = 1024
HOP = 256


def power_spectrogram(x: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """|STFT x|², periodic Hann frames, no centring (as the paper's code).

    Args:
        x: (B, L) waveforms.
    Returns:
        (B, n_fft // 2 + 1, frames) power, frames = (L - n_fft) // hop + 1.
    """
    window = torch.hann_window(n_fft, periodic=True, device=x.device, dtype=torch.float32)
    spec = torch.stft(x.float(), n_fft, hop, window=window, center=False, return_complex=True)
    return spec.real.square() + spec.imag.square()


def log_spectrogram(x: torch.Tensor, eps: float = 1.0, n_fft: int = N_FFT) -> torch.Tensor:
    """l(x) = log(eps + |STFT x|²), (B, n_fft // 2 + 1, frames), hop n_fft / 4. eps = 1 was
    best in the paper."""
    return torch.log(eps + power_spectrogram(x, n_fft, n_fft // 4))


def spectral_loss(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1.0,
                  ffts=(N_FFT,)) -> torch.Tensor:
    """Mean absolute difference of log power spectrograms (L1 form of eq. 3.3).

    It ignores phase, so a phase-shifted copy of a note costs (almost) nothing.
    Args:
        estimate, target: (B, L) waveforms, L >= max(ffts).
        ffts: STFT sizes averaged over (hop = size / 4); the paper uses one, 1,024. Several
            (a multi-resolution loss) also see a note's fine pitch (long windows) and how
            neighbouring grains join (short ones).
    Returns:
        scalar tensor, differentiable in `estimate`.
    """
    return sum((log_spectrogram(estimate, eps, n) - log_spectrogram(target, eps, n)).abs().mean()
               for n in ffts) / len(ffts)


def waveform_mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between waveforms (eq. 3.1, averaged over samples)."""
    return (estimate.float() - target.float()).square().mean()


def relative_mse(estimate: torch.Tensor, target: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Waveform MSE over each target's mean power, averaged over the batch (B, L): quiet
    notes count as much as loud ones."""
    error = (estimate.float() - target.float()).square().mean(-1)
    return (error / (target.float().square().mean(-1) + floor)).mean()
