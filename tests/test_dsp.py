"""The spectral loss ignores phase; the waveform MSE does not."""
import math

import torch

from singsynth.model.dsp import log_spectrogram, spectral_loss, waveform_mse


def sine(freq, phase=0.0, n=16000, sr=16000, amp=0.5):
    t = torch.arange(n) / sr
    return amp * torch.sin(2 * math.pi * freq * t + phase)[None]


def test_spectral_loss_ignores_phase_but_mse_does_not():
    x, shifted = sine(440.0), sine(440.0, phase=math.pi / 2)
    silence = torch.zeros_like(x)
    assert waveform_mse(shifted, x) > 0.2                 # 2 * amp² / 2 = 0.25
    assert spectral_loss(shifted, x) < 0.02 * spectral_loss(silence, x)
    assert spectral_loss(x, x) == 0


def test_log_spectrogram_shape_and_epsilon():
    x = torch.randn(3, 4096)
    spec = log_spectrogram(x)
    assert spec.shape == (3, 513, (4096 - 1024) // 256 + 1)
    assert torch.allclose(log_spectrogram(torch.zeros(1, 1024)), torch.zeros(1, 513, 1))


def test_losses_are_differentiable_and_batched():
    target = sine(220.0).repeat(2, 1)
    estimate = torch.zeros_like(target, requires_grad=True)
    loss = spectral_loss(estimate + 1e-3 * torch.randn_like(target), target)
    loss.backward()
    assert estimate.grad is not None and estimate.grad.abs().sum() > 0
    # The mean over a batch equals the mean of per-example losses of equal size.
    a, b = torch.randn(1, 4096), torch.randn(1, 4096)
    ta, tb = torch.randn(1, 4096), torch.randn(1, 4096)
    both = spectral_loss(torch.cat([a, b]), torch.cat([ta, tb]))
    assert torch.allclose(both, (spectral_loss(a, ta) + spectral_loss(b, tb)) / 2, atol=1e-6)


def test_multi_resolution_loss_is_the_mean_of_single_resolutions():
    torch.manual_seed(0)
    a, b = torch.randn(2, 4096), torch.randn(2, 4096)
    single = {n: spectral_loss(a, b, 0.01, (n,)).item() for n in (2048, 512)}
    assert spectral_loss(a, b, 0.01).item() == spectral_loss(a, b, 0.01, (1024,)).item()
    assert abs(spectral_loss(a, b, 0.01, (2048, 512)).item() - sum(single.values()) / 2) < 1e-6
    assert single[2048] != single[512]
    # A smaller eps weighs quiet bins: the same quiet error costs more.
    quiet = 0.01 * a
    assert spectral_loss(quiet, 0 * a, 0.01).item() > 10 * spectral_loss(quiet, 0 * a, 1.0).item()
