"""SING's three networks: the LSTM sequence generator, the convolutional decoder and
the encoder used to train the decoder as an autoencoder.

Shapes: B = batch, n = LSTM steps, D = latent channels, C = hidden channels,
L = samples at 16 kHz. Steps [k, k + n) decode to samples [k*256, k*256 + (n - 15)*256).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from singsynth.model.config import SINGConfig, encoder_padding


def squared_hann(window: int, device=None) -> torch.Tensor:
    """Periodic Hann window squared, (window,). Shifted by window/4 these sum to 1.5."""
    return torch.hann_window(window, periodic=True, device=device) ** 2


class SequenceGenerator(nn.Module):
    """Embeddings + 3-layer LSTM + linear: (instrument, pitch, velocity) -> s, (B, n, D).

    The input at every step is only [instrument | pitch | velocity | time] embeddings;
    the previous output is not fed back, so the sequence can be run in chunks.
    """

    def __init__(self, config: SINGConfig, n_instruments: int, n_pitches: int = 128,
                 n_velocities: int = 5):
        super().__init__()
        self.config = config
        self.instrument = nn.Embedding(n_instruments, config.instrument_dim)
        self.pitch = nn.Embedding(n_pitches, config.pitch_dim)
        self.velocity = nn.Embedding(n_velocities, config.velocity_dim)
        self.time = nn.Embedding(config.steps, config.time_dim)
        inputs = config.instrument_dim + config.pitch_dim + config.velocity_dim + config.time_dim
        self.lstm = nn.LSTM(inputs, config.lstm_hidden, config.lstm_layers, batch_first=True)
        self.output = nn.Linear(config.lstm_hidden, config.latent)

    def condition(self, instrument: torch.Tensor, pitch: torch.Tensor,
                  velocity: torch.Tensor) -> torch.Tensor:
        """Concatenated [instrument | pitch | velocity] embeddings, (B, 26).

        Args:
            instrument: LongTensor (B,) of indices, or FloatTensor (B, n_instruments) of
                blend weights (mixing embeddings: timbre morphing).
            pitch: LongTensor (B,) MIDI pitches.
            velocity: LongTensor (B,) indices into the trained velocities, or FloatTensor
                (B,) fractional indices interpolating between neighbouring embeddings.
        """
        if instrument.is_floating_point():
            inst = instrument.to(self.instrument.weight.dtype) @ self.instrument.weight
        else:
            inst = self.instrument(instrument)
        if velocity.is_floating_point():
            top = self.velocity.num_embeddings - 1
            v = velocity.clamp(0, top)
            low = v.floor().long().clamp(max=top - 1) if top > 0 else v.long()
            frac = (v - low).unsqueeze(-1)
            vel = (1 - frac) * self.velocity(low) + frac * self.velocity((low + 1).clamp(max=top))
        else:
            vel = self.velocity(velocity)
        return torch.cat([inst, self.pitch(pitch), vel], dim=-1)

    def forward(self, condition: torch.Tensor, start: int = 0, length: int | None = None,
                hidden=None):
        """Run steps [start, start + length) from LSTM state `hidden`.

        Returns:
            s: (B, length, D) and the LSTM state to continue from.
        """
        length = self.config.steps - start if length is None else length
        batch = condition.shape[0]
        times = torch.arange(start, start + length, device=condition.device)
        z = self.time(times).unsqueeze(0).expand(batch, -1, -1)
        x = torch.cat([condition.unsqueeze(1).expand(-1, length, -1), z], dim=-1)
        out, hidden = self.lstm(x, hidden)
        return self.output(out), hidden


class Decoder(nn.Module):
    """s (B, D, n) -> waveform (B, (n - 15) * 256): conv k9, two 1x1, Hann²-windowed
    transposed conv of kernel 1,024 and stride 256 (an overlap-add of grains)."""

    def __init__(self, config: SINGConfig):
        super().__init__()
        c = config
        self.config = c
        self.conv1 = nn.Conv1d(c.latent, c.channels, c.kernel)
        self.conv2 = nn.Conv1d(c.channels, c.channels, 1)
        self.conv3 = nn.Conv1d(c.channels, c.channels, 1)
        self.synth = nn.ConvTranspose1d(c.channels, 1, c.window, stride=c.stride,
                                        padding=c.window - c.stride)
        self.register_buffer("window", squared_hann(c.window), persistent=False)

    def hidden(self, s: torch.Tensor) -> torch.Tensor:
        """Per-frame activations before the overlap-add: (B, D, n) -> (B, C, n - 8)."""
        h = F.relu(self.conv1(s))
        h = F.relu(self.conv2(h))
        return F.relu(self.conv3(h))

    def grain_weight(self, cached: bool = False) -> torch.Tensor:
        """Windowed synthesis filters, (C, window): frame f adds h[:, f] @ W at f * stride.

        cached: reuse the last result while the weights are unchanged (for inference:
        `SING.stream` needs it once per batch, 0.35-0.7 ms for 512 x 1,024 on a CPU).
        """
        weight = self.synth.weight
        if not cached:
            return weight[:, 0] * self.window
        key = (weight.data_ptr(), weight._version, weight.device, weight.dtype)
        if getattr(self, "_grain_key", None) != key:
            with torch.no_grad():
                self._grain = weight[:, 0] * self.window
            self._grain_key = key
        return self._grain

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        h = self.hidden(s)
        weight = self.synth.weight * self.window
        wave = F.conv_transpose1d(h, weight, self.synth.bias, stride=self.config.stride,
                                  padding=self.config.window - self.config.stride)
        trim = 2 * self.config.stride
        return wave[:, 0, trim:wave.shape[-1] - trim]


class Encoder(nn.Module):
    """Padded waveform (B, L + 2 * 2304) -> (B, D, L / 256 + 15), aligned with the steps."""

    def __init__(self, config: SINGConfig):
        super().__init__()
        c = config
        self.config = c
        self.conv1 = nn.Conv1d(1, c.channels, c.window, stride=c.stride)
        self.conv2 = nn.Conv1d(c.channels, c.channels, 1)
        self.conv3 = nn.Conv1d(c.channels, c.channels, 1)
        self.output = nn.Conv1d(c.channels, c.latent, 1)
        self.register_buffer("window", squared_hann(c.window), persistent=False)

    @property
    def padding(self) -> int:
        """Samples of context on each side of the waveform to encode: 2,304."""
        return encoder_padding(self.config)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        h = F.conv1d(wave.unsqueeze(1), self.conv1.weight * self.window, self.conv1.bias,
                     stride=self.config.stride)
        h = F.relu(h)
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        return self.output(h)

    def encode_note(self, wave: torch.Tensor) -> torch.Tensor:
        """Whole notes (B, L) zero-padded and encoded: (B, D, L / 256 + 15)."""
        return self(F.pad(wave, (self.padding, self.padding)))
