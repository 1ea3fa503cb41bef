"""The full-band part of a SING model: its 16 kHz note upsampled to the output rate, plus
a learned band of filtered noise above what 16 kHz can hold.

Why this shape (models/default.md, "Full band"): SING at 16 kHz already plays its band
well (pitch 97 %, as close to FluidR3 below 7.5 kHz as a small SoundFont is), and its
LSTM, which is most of the cost, runs at the frame rate whatever the sample rate. What a
16 kHz note lacks is everything above 7.8 kHz: the partials, bow and breath noise of the
upper octave and the hiss of cymbals. Above ~7 kHz the ear hears a band's energy, not
its partials one by one (critical bands there are 1-3 kHz wide), so a noise band shaped
per frame and per 375 Hz band, as DDSP's filtered-noise synthesiser does, carries it at
a small cost, and it learns from the frozen 16 kHz model in minutes on a CPU.

Lengths: the core works at `config.sample_rate` (16 kHz) on `config.note_samples`;
output sample n is core sample n / `config.upsample`. The noise has one grain per
decoder frame, centred where that frame's grain peaks: frame j at output sample
upsample * (stride * j - window // 2 - trim + ...), see `NoiseBand.centre`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from singsynth.model.config import SINGConfig, trim_samples

# Core samples of context on each side of the upsampling filter (3 ms at 16 kHz): its
# transition band is ~0.8 kHz wide, ending before 8 kHz, so images of the 16 kHz band
# (8-16 kHz) are 80 dB down and do not leak into the noise band's place.
UPSAMPLE_HALF_TAPS = 48
UPSAMPLE_CUTOFF = 0.475        # of the core rate: 7.6 kHz for 16 kHz
NOISE_TABLE_ROWS = 512         # grains of stored white noise (a fixed seed: renders repeat)
# Band energies (mean |STFT|^2 over a band's bins, Hann window of 2 hops) below this are
# silence: a full-scale sine peaks near 1.5e5 at 48 kHz, so this is about -150 dB. Not
# higher: a dull instrument's top octave lies 120 dB down, and a floor above it would
# be a hiss the recording does not have (1e-5 was: 3 log-mel units too bright on pads).
ENERGY_FLOOR = 1e-10


def upsampling_filter(factor: int, half_taps: int = UPSAMPLE_HALF_TAPS) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass for zero-stuffed upsampling by `factor`: (taps,) float32,
    taps = 2 * half_taps * factor + 1, with gain `factor` so the level is kept."""
    n = np.arange(-half_taps * factor, half_taps * factor + 1, dtype=np.float64)
    cutoff = UPSAMPLE_CUTOFF / factor       # in cycles per output sample, of the core's 0.5
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(len(n), 8.0)
    h *= factor / h.sum()
    return torch.from_numpy(h.astype(np.float32))


def polyphase(kernel: torch.Tensor, factor: int) -> torch.Tensor:
    """The `factor` phases of an upsampling kernel (taps = 2 half factor + 1) as conv1d
    weights (factor, 1, 2 half + 1): weight[r, 0, t] = kernel[centre + factor (half - t) + r]."""
    half = (len(kernel) - 1) // (2 * factor)
    centre = half * factor
    out = torch.zeros(factor, 1, 2 * half + 1)
    for r in range(factor):
        for t in range(2 * half + 1):
            i = centre + factor * (half - t) + r
            if 0 <= i < len(kernel):
                out[r, 0, t] = kernel[i]
    return out


class Upsampler(nn.Module):
    """Core-rate waveforms (B, L) -> output-rate (B, L * factor), a linear-phase FIR.

    `whole` treats the note as zero before sample 0 and after its end; `Streamer` gives the
    same samples chunk by chunk, `half_taps` core samples behind its input.
    """

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor
        taps = 2 * UPSAMPLE_HALF_TAPS + 1
        phases = torch.empty(factor, 1, taps)
        if not phases.is_meta:
            phases = polyphase(upsampling_filter(factor), factor)
        self.register_buffer("phases", phases, persistent=False)

    def _interleave(self, x: torch.Tensor) -> torch.Tensor:
        """Core samples (B, n + 2 half) -> output samples (B, n * factor): phase r of output
        3m + r is a 97-tap conv of the core around m (a strided transposed conv did the same
        at 2x the cost: one channel has no fast kernel there)."""
        y = F.conv1d(x.unsqueeze(1), self.phases)            # (B, factor, n)
        return y.transpose(1, 2).reshape(x.shape[0], -1)

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L * factor): output n = sum_m x[m] h[n - factor m + centre], the
        note taken as zero before its start and after its end."""
        half = UPSAMPLE_HALF_TAPS
        return self._interleave(F.pad(x, (half, half)))

    def span(self, core: torch.Tensor, first: int, length: int) -> torch.Tensor:
        """Output samples [first, first + length) (first a multiple of factor) from
        `core`, core samples [first / factor - half_taps, ...) of the note, zeros beyond it;
        core must reach (first + length) / factor + half_taps. (B, length)."""
        n = -(-length // self.factor)
        return self._interleave(core[:, :n + 2 * UPSAMPLE_HALF_TAPS])[:, :length]


class NoiseBand(nn.Module):
    """Filtered noise above the core's band, shaped per frame from the decoder's activations.

    Per frame j, a small 1x1 conv net maps h (B, C, F), with the note's conditioning
    (instrument, pitch and velocity embeddings, (B, 26)) beside it, to log band energies
    P (B, bands, F):
    the energy a Hann-windowed STFT (n_fft = 2 * hop, hop = upsample * stride) of the
    target would see in each band. The grain is white noise from a fixed table, shaped in
    the frequency domain by gains interpolated across bands, windowed with a sine window
    (sine windows at 50 % overlap keep the noise's variance constant: no 62.5 Hz flutter),
    and overlap-added.
    """

    def __init__(self, config: SINGConfig):
        super().__init__()
        self.config = config
        self.bands = config.noise_bands
        self.hop = config.upsample * config.stride
        self.n_fft = 2 * self.hop
        rate = config.sample_rate * config.upsample
        hidden = max(32, min(256, config.channels // 2))
        # Why the conditioning beside h: the decoder's activations are tuned to its own
        # band; how bright a trumpet is at velocity 75 against 127 was not in them (the
        # fit on h alone missed training notes by 20 dB).
        inputs = config.channels + config.instrument_dim + config.pitch_dim + config.velocity_dim
        self.net = nn.Sequential(nn.Conv1d(inputs, hidden, 1), nn.ReLU(),
                                 nn.Conv1d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv1d(hidden, self.bands, 1))
        with torch.no_grad():   # start silent: the core already sounds
            self.net[-1].bias.fill_(math.log(ENERGY_FLOOR))
        bins = self.n_fft // 2 + 1
        edges = np.linspace(config.noise_low_hz, rate / 2, self.bands + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        freqs = np.arange(bins) * rate / self.n_fft
        # (bins, bands): each bin's gain interpolates its two nearest band centres; no gain
        # below the lowest edge, so the noise leaves the core's band alone.
        lower = np.zeros(bins, np.int64)            # bin k: (1 - w) band lower + w band lower + 1
        upper_w, lower_w = np.zeros(bins), np.zeros(bins)
        for k, fk in enumerate(freqs):
            if fk < edges[0]:
                continue
            b = np.clip(np.searchsorted(centres, fk) - 1, 0, self.bands - 2)
            w = np.clip((fk - centres[b]) / (centres[b + 1] - centres[b]), 0, 1)
            lower[k], lower_w[k], upper_w[k] = b, 1 - w, w
        # Which bins each band's energy is measured over (for training targets).
        member = np.zeros((self.bands, bins))
        for b in range(self.bands):
            member[b, (freqs >= edges[b]) & (freqs < edges[b + 1])] = 1
        member /= np.maximum(member.sum(1, keepdims=True), 1)
        probe = torch.empty(0)
        if probe.is_meta:
            table = torch.empty(NOISE_TABLE_ROWS, bins, 2)
            member_t = torch.empty(self.bands, bins)
            lower_t, weights_t = torch.empty(bins, dtype=torch.long), torch.empty(2, bins)
            window = torch.empty(self.n_fft)
        else:
            table = torch.from_numpy(noise_table(NOISE_TABLE_ROWS, self.n_fft))
            lower_t = torch.from_numpy(lower)
            weights_t = torch.from_numpy(np.stack([lower_w, upper_w]).astype(np.float32))
            member_t = torch.from_numpy(member.astype(np.float32))
            window = torch.hann_window(self.n_fft, periodic=True).sqrt()
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("lower", lower_t, persistent=False)
        self.register_buffer("weights", weights_t, persistent=False)
        self.register_buffer("member", member_t, persistent=False)
        self.register_buffer("window", window, persistent=False)
        # A unit-variance white noise has E|X_k|^2 = sum(hann^2) in each bin of the analysis
        # STFT; a band gain g gives g^2 times that.
        self.unit_energy = 0.375 * self.n_fft
        # Output sample of frame 0's centre (negative: before the note starts).
        self.centre0 = config.upsample * (config.window // 2 - (config.window - config.stride)
                                          - trim_samples(config))

    def log_energy(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted log band energies: h (B, C, F) and the note's conditioning cond (B, 26)
        (`SequenceGenerator.condition`) -> (B, bands, F)."""
        cond = cond[:, :, None].to(h.dtype).expand(-1, -1, h.shape[-1])
        return self.net(torch.cat([h, cond], 1))

    def band_energy(self, spec_power: torch.Tensor) -> torch.Tensor:
        """|STFT|^2 (B, bins, F) -> mean energy per band (B, bands, F), for training targets."""
        return torch.einsum("gk,bkf->bgf", self.member, spec_power)

    def grains(self, log_energy: torch.Tensor, seeds: torch.Tensor, first_frame: int
               ) -> torch.Tensor:
        """Windowed noise grains for frames [first_frame, first_frame + F): (B, F, n_fft)."""
        gains = torch.exp(0.5 * log_energy) / math.sqrt(self.unit_energy)      # (B, bands, F)
        gains = gains.transpose(1, 2)                                           # (B, F, bands)
        shape = (gains[..., self.lower] * self.weights[0]
                 + gains[..., self.lower + 1] * self.weights[1])                # (B, F, bins)
        frames = torch.arange(first_frame, first_frame + log_energy.shape[-1],
                              device=log_energy.device)
        rows = (seeds[:, None] + frames[None]) % NOISE_TABLE_ROWS               # (B, F)
        z = torch.view_as_complex(self.table[rows].contiguous())                # (B, F, bins)
        grain = torch.fft.irfft(z * shape, n=self.n_fft)
        return grain * self.window

    @staticmethod
    def seeds(instrument, pitch, velocity) -> torch.Tensor:
        """A table offset per note (B,): notes of other pitches, velocities and instruments
        get other noise, so a chord's noise does not add up coherently; the same note always
        gets the same noise, so renders repeat bit for bit."""
        pitch = torch.as_tensor(pitch).long().reshape(-1)
        vel = torch.round(torch.as_tensor(velocity).double().reshape(-1) * 8).long()
        inst = torch.as_tensor(instrument)
        inst = inst.argmax(-1) if inst.is_floating_point() else inst.long()
        return (pitch * 131 + vel * 37 + inst.reshape(-1) * 211) % NOISE_TABLE_ROWS

    def overlap_add(self, grains: torch.Tensor, length: int) -> torch.Tensor:
        """Grains of frames 0..F-1 (B, F, n_fft) -> output samples [0, length) (B, length)."""
        batch, frames, n = grains.shape
        hop = self.hop                             # grains overlap by half: n = 2 hop
        out = grains.new_zeros(batch, frames + 1, hop)
        out[:, :frames] += grains[..., :hop]
        out[:, 1:] += grains[..., hop:]
        out = out.reshape(batch, -1)
        start = -(self.centre0 - n // 2)          # span index of output sample 0
        return out[:, start:start + length]


def noise_table(rows: int, n_fft: int, seed: int = 20181203) -> np.ndarray:
    """Complex white noise spectra (rows, n_fft // 2 + 1, 2) whose irfft has unit variance.

    numpy's legacy RandomState is used because its stream is fixed forever: a checkpoint
    plays the same noise on every machine and version."""
    rng = np.random.RandomState(seed)
    bins = n_fft // 2 + 1
    z = rng.standard_normal((rows, bins, 2))
    z[:, 0, 1] = 0
    z[:, -1, 1] = 0
    spec = z[..., 0] + 1j * z[..., 1]
    scale = 1 / np.sqrt(np.mean(np.fft.irfft(spec, n=n_fft) ** 2))
    return (z * scale).astype(np.float32)
