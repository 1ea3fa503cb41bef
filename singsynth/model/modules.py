"""SING's three networks: the LSTM sequence generator, the convolutional decoder and
the encoder used to train the decoder as an autoencoder.

Shapes: B = batch, n = LSTM steps, D = latent channels, C = hidden channels,
L = samples at 16 kHz. Steps [k, k + n) decode to samples [k*256, k*256 + (n - 15)*256).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from singsynth.model.config import SINGConfig, encoder_padding, trim_samples
from singsynth.notes import midi_to_hz


def squared_hann(window: int, device=None) -> torch.Tensor:
    """Periodic Hann window squared, (window,). Shifted by window/4 these sum to 1.5."""
    probe = torch.empty(0, device=device)
    if probe.is_meta:  # shapes only (see `embedding`)
        return probe.new_empty(window)
    return torch.hann_window(window, periodic=True, device=device) ** 2


def embedding(count: int, dim: int) -> nn.Embedding:
    """`nn.Embedding(count, dim)` with torch's own N(0, 1) initialisation, skipped on the
    meta device (checkpoint.py builds the described model there to check shapes): there
    `normal_` runs a Python decomposition whose first use imports torch._dynamo, ~2 s."""
    weight = torch.empty(count, dim)
    if not weight.is_meta:
        nn.init.normal_(weight)
    return nn.Embedding(count, dim, _weight=weight)


class SequenceGenerator(nn.Module):
    """Embeddings + 3-layer LSTM + linear: (instrument, pitch, velocity) -> s, (B, n, D).

    The input at every step is only [instrument | pitch | velocity | time] embeddings;
    the previous output is not fed back, so the sequence can be run in chunks.
    """

    def __init__(self, config: SINGConfig, n_instruments: int, n_pitches: int = 128,
                 n_velocities: int = 5):
        super().__init__()
        self.config = config
        self.instrument = embedding(n_instruments, config.instrument_dim)
        self.pitch = embedding(n_pitches, config.pitch_dim)
        self.velocity = embedding(n_velocities, config.velocity_dim)
        self.time = embedding(config.steps, config.time_dim)
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
        return self.overlap_add(self.hidden(s))

    def overlap_add(self, h: torch.Tensor) -> torch.Tensor:
        """Per-frame activations (B, C, F) -> waveform (B, (F - 7) * 256)."""
        weight = self.synth.weight * self.window
        wave = F.conv_transpose1d(h, weight, self.synth.bias, stride=self.config.stride,
                                  padding=self.config.window - self.config.stride)
        trim = 2 * self.config.stride
        return wave[:, 0, trim:wave.shape[-1] - trim]


class Harmonics(nn.Module):
    """A bank of sines at exact multiples of the requested pitch, added to the decoder's
    output. Optional (`SINGConfig.harmonics` > 0); not in the paper.

    Why: the decoder's grains sit on a 62.5 Hz frame grid (16,000 / 256), and the models
    trained here put their partials on that comb instead of the note's pitch
    (models/default.md). Here the pitch is exact by construction and the network only
    chooses loudness and spectrum: per frame, a 1x1 conv reads the decoder's activations
    h (B, C, F) and gives a total amplitude (softplus) and its split over K harmonics
    (softmax; those at or above 0.45 x the sample rate get none, so nothing aliases).
    Amplitudes are interpolated linearly between frame centres, which lie where each
    grain's window peaks: frame j at sample 256 j - 768 of the decoded span.
    """

    def __init__(self, config: SINGConfig):
        super().__init__()
        self.config = config
        self.count = config.harmonics
        self.amplitude = nn.Conv1d(config.channels, self.count + 1, 1)
        with torch.no_grad():   # start nearly silent: the decoder already sounds
            self.amplitude.bias[0] = -5.0
        # Output sample i of a decoded span lies (i + offset) / stride frames after frame 0.
        self.offset = (config.window - config.stride) + trim_samples(config) - config.window // 2
        if self.offset % config.stride:
            raise ValueError("frame centres must fall on a multiple of the stride")
        numbers = torch.empty(self.count, dtype=torch.float64)
        if not numbers.is_meta:  # shapes only: see `embedding`
            numbers = torch.arange(1, self.count + 1, dtype=torch.float64)
        self.register_buffer("numbers", numbers, persistent=False)

    @staticmethod
    def pitch_hz(pitch, device) -> torch.Tensor:
        """MIDI pitches (B,) -> f0 (B,) in Hz, float64: the phases are reduced mod 1 in it."""
        return midi_to_hz(torch.as_tensor(pitch, device=device).double())

    def frames(self, h: torch.Tensor, f0: torch.Tensor,
               pitched: torch.Tensor | None = None) -> torch.Tensor:
        """Harmonic amplitudes per frame: h (B, C, F), f0 (B,) Hz -> (B, K, F).

        pitched: (B,) share 0-1 of each note's instrument that has a pitch (0 for a drum
        kit, whose "pitch" is a key: see `sing.pitched_share`), scaling the bank; None: 1.
        """
        x = self.amplitude(h)
        audible = (self.numbers[None] * f0[:, None] < 0.45 * self.config.sample_rate)
        # A large negative, not -inf: a pitch with no audible harmonic gets zeros, not NaN.
        logits = x[:, 1:].masked_fill(~audible[:, :, None], -1e4)
        amps = F.softplus(x[:, :1]) * torch.softmax(logits, dim=1) * audible[:, :, None]
        if pitched is not None:
            amps = amps * pitched.to(amps.dtype)[:, None, None]
        return amps

    def oscillators(self, f0: torch.Tensor, dtype=torch.float32):
        """What `synthesize` needs of f0 alone (computed once per note when streaming):
        rate (B, K) cycles per sample (float64), and sin and cos of the phase advance over
        one block's first 0..stride-1 samples, (B, K, stride) each."""
        rate = self.numbers[None] * f0[:, None] / self.config.sample_rate
        r = torch.arange(self.config.stride, device=f0.device, dtype=torch.float64)
        within = 2 * torch.pi * torch.frac(rate[:, :, None] * r)
        return rate, within.sin().to(dtype), within.cos().to(dtype)

    def synthesize(self, amps: torch.Tensor, f0: torch.Tensor, first: int, length: int,
                   origin=0, oscillators=None) -> torch.Tensor:
        """Samples [first, first + length) of the span whose frame 0 `amps` starts at.

        Args:
            amps: (B, K, F) from `frames`.
            f0: (B,) Hz.
            origin: note sample of the span's sample 0 (int, or (B,) LongTensor), so the
                sines keep one phase across crops and streamed chunks.
            oscillators: `oscillators(f0)`, if already computed.
        Returns:
            (B, length) float32.
        """
        # Work in blocks of one stride: inside block m the amplitudes ramp linearly from
        # frame j = m + offset / stride to j + 1, and sin(2 pi (c_m + rate r)) splits into
        # sin c_m cos(rate r) + cos c_m sin(rate r). So the sum over K harmonics becomes
        # four (M, K) @ (K, stride) matrix products, not K sines per sample.
        stride, dev = self.config.stride, amps.device
        m0, m1 = first // stride, -(-(first + length) // stride)
        blocks = torch.arange(m0, m1, device=dev)
        j = (blocks + self.offset // stride).clamp(max=amps.shape[-1] - 2)
        a0, a1 = amps[..., j], amps[..., j + 1]                            # (B, K, M)
        dtype = amps.dtype
        rate, sin_r, cos_r = oscillators or self.oscillators(f0, dtype)
        # Phases in cycles, reduced mod 1 in float64: k f0 n / sr reaches 3e7 cycles, of
        # which float32 would keep only a tenth of a cycle.
        start = torch.as_tensor(origin, device=dev).reshape(-1, 1) + blocks * stride
        block = 2 * torch.pi * torch.frac(rate[:, :, None] * start[:, None, :])   # (B, K, M)
        sin_b, cos_b = block.sin().to(dtype), block.cos().to(dtype)

        def sum_harmonics(a):   # (B, M, stride): sum_k a_k sin(phase_k)
            return (torch.bmm((a * sin_b).transpose(1, 2), cos_r)
                    + torch.bmm((a * cos_b).transpose(1, 2), sin_r))

        w = torch.arange(stride, device=dev, dtype=dtype) / stride
        out = sum_harmonics(a0) * (1 - w) + sum_harmonics(a1) * w
        skip = first - m0 * stride
        return out.reshape(out.shape[0], -1)[:, skip:skip + length]


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
