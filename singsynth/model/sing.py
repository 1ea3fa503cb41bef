"""The SING generator: (instrument, pitch, velocity) -> 4-second 16 kHz note.

`generate` runs all 265 steps and decodes once; `stream` runs the LSTM a few steps at a
time and overlap-adds only the grains a chunk needs, so the first 256 samples need only
14 steps (the decoder's receptive field), not the whole sequence.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn

from singsynth.model.config import VELOCITIES, SINGConfig, get_config, trim_samples
from singsynth.model.fullband import UPSAMPLE_HALF_TAPS, NoiseBand, Upsampler
from singsynth.model.gate import TailGate
from singsynth.model.modules import Decoder, Encoder, Harmonics, SequenceGenerator
from singsynth.notes import is_unpitched

# A run of at most this many LSTM steps uses PyTorch's native CPU kernel: oneDNN's LSTM
# primitive costs about 0.7 ms a call to set up, 3x the native kernel for the 1-14 steps a
# streamed chunk needs (1.16 vs 0.36 ms for one step, 2.66 vs 1.66 ms for the first 14),
# and wins only beyond about 32 steps (benchmarks/README.md, "first chunk").
SHORT_RUN_STEPS = 32


@contextlib.contextmanager
def _native_lstm(short: bool):
    """Turn oneDNN off for a short LSTM run (a process-wide flag, restored on exit).

    Two threads streaming at once could interleave and leave the flag off: only the speed
    of later long runs would change, never a result.
    """
    before = torch.backends.mkldnn.enabled
    if short:
        torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def decode_parts(decoder: Decoder, harmonics: Harmonics | None, s: torch.Tensor, pitch,
                 first_step=0, pitched: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sequence s (B, D, n) from step `first_step` -> the decoder's output and, when the
    model has them, the harmonics of `pitch` ((B,) MIDI), each (B, (n - 15) * 256): note
    samples [256 first_step, ...). `first_step` may be a (B,) LongTensor (one crop per
    note). `pitched`: (B,) share of the bank each note gets (`pitched_share`; None: all).
    Kept apart for training, which can penalise the decoder's share."""
    h = decoder.hidden(s)
    wave = decoder.overlap_add(h)
    if harmonics is None:
        return wave, None
    f0 = harmonics.pitch_hz(pitch, h.device)
    origin = torch.as_tensor(first_step, device=h.device) * decoder.config.stride
    return wave, harmonics.synthesize(harmonics.frames(h, f0, pitched), f0, 0, wave.shape[-1],
                                      origin)


def decode(decoder: Decoder, harmonics: Harmonics | None, s: torch.Tensor, pitch,
           first_step=0, pitched: torch.Tensor | None = None) -> torch.Tensor:
    """The note: the sum of `decode_parts`, (B, (n - 15) * 256)."""
    return mix(decode_parts(decoder, harmonics, s, pitch, first_step, pitched))


def pitched_share(unpitched: torch.Tensor | None, instrument) -> torch.Tensor | None:
    """The share of each note's instrument that has a pitch, (B,) in 0-1, or None when the
    vocabulary has no unpitched instrument (the bank then plays as it always has).

    Args:
        unpitched: (n_instruments,) 1.0 for unpitched rows (`SING.unpitched`), or None.
        instrument: (B,) indices, or (B, n_instruments) blend weights: a blend's share is
            its weight on pitched rows over its total weight.
    """
    if unpitched is None:
        return None
    instrument = torch.as_tensor(instrument, device=unpitched.device)
    if not instrument.is_floating_point():
        return 1.0 - unpitched[instrument.long()]
    w = instrument.to(unpitched.dtype)
    drums = (w * unpitched).sum(-1) / w.sum(-1).clamp(min=1e-8)
    return (1.0 - drums).clamp(0.0, 1.0)


def mix(parts: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
    """(decoder output, harmonics or None) -> their sum."""
    wave, harm = parts
    return wave if harm is None else wave + harm


class SING(nn.Module):
    """Sequence generator + decoder (+ optional harmonics, + the encoder, kept for the
    autoencoder stage).

    Attributes:
        config: architecture, see `SINGConfig`.
        instruments: names of the instrument vocabulary (index = embedding row).
        velocities: MIDI velocities of the embedding rows, (25, 50, 75, 100, 127).
    """

    def __init__(self, config: SINGConfig, instruments: Sequence[str],
                 velocities: Sequence[int] = VELOCITIES, n_pitches: int = 128,
                 with_encoder: bool = True):
        super().__init__()
        if not instruments:
            raise ValueError("a SING model needs at least one instrument")
        self.config = config
        self.instruments = list(instruments)
        self.velocities = tuple(int(v) for v in velocities)
        self.sequence = SequenceGenerator(config, len(self.instruments), n_pitches,
                                          len(self.velocities))
        self.decoder = Decoder(config)
        self.harmonics = Harmonics(config) if config.harmonics else None
        self.upsampler = Upsampler(config.upsample) if config.upsample > 1 else None
        self.noise = NoiseBand(config) if config.noise_bands else None
        self.encoder = Encoder(config) if with_encoder else None
        # Unpitched rows (drum kits) by name: the harmonic bank stays silent for them.
        # A non-persistent buffer: no tensor is added to the checkpoint, so old files load
        # unchanged, and a vocabulary without drums keeps None (the bank as before).
        mask = [float(is_unpitched(name)) for name in self.instruments]
        self.register_buffer("unpitched", torch.tensor(mask) if any(mask) else None,
                             persistent=False)

    @property
    def device(self) -> torch.device:
        return self.decoder.conv1.weight.device

    def _inputs(self, instrument, pitch, velocity):
        dev = self.device
        instrument = torch.as_tensor(instrument, device=dev)
        pitch = torch.as_tensor(pitch, device=dev).long()
        velocity = torch.as_tensor(velocity, device=dev)
        if not instrument.is_floating_point():
            instrument = instrument.long()
        return self.sequence.condition(instrument, pitch, velocity)

    def pitched(self, instrument) -> torch.Tensor | None:
        """(B,) share of the harmonic bank each note plays, or None: see `pitched_share`."""
        return pitched_share(self.unpitched, instrument)

    def forward(self, instrument, pitch, velocity) -> torch.Tensor:
        """Differentiable whole notes of the core, (B, 64000) at 16 kHz, not clamped (for
        training the paper's three stages)."""
        s, _ = self.sequence(self._inputs(instrument, pitch, velocity))
        return self.decode(s.transpose(1, 2), pitch, pitched=self.pitched(instrument))

    def full_band(self, instrument, pitch, velocity) -> torch.Tensor:
        """Whole notes at the output rate, (B, output_samples), not clamped: the core's
        note upsampled, plus the noise band (model/fullband.py). The core's alone when the
        model has neither."""
        cond, h, wave = self.upsampled_core(instrument, pitch, velocity)
        if self.noise is not None:
            seeds = NoiseBand.seeds(instrument, pitch, velocity).to(h.device)
            grains = self.noise.grains(self.noise.log_energy(h, cond), seeds, 0)
            wave = wave + self.noise.overlap_add(grains, wave.shape[-1])
        return wave

    def upsampled_core(self, instrument, pitch, velocity):
        """The core's whole notes at the output rate, and what the noise band reads:
        (conditioning (B, 26), decoder activations h (B, C, F), waves (B, output_samples))."""
        cond = self._inputs(instrument, pitch, velocity)
        s, _ = self.sequence(cond)
        h = self.decoder.hidden(s.transpose(1, 2))
        wave = self.decoder.overlap_add(h)
        if self.harmonics is not None:
            f0 = self.harmonics.pitch_hz(pitch, h.device)
            amps = self.harmonics.frames(h, f0, self.pitched(instrument))   # none for drums
            wave = wave + self.harmonics.synthesize(amps, f0, 0, wave.shape[-1])
        if self.upsampler is not None:
            wave = self.upsampler.whole(wave)
        return cond, h, wave

    def decode(self, s: torch.Tensor, pitch, first_step=0,
               pitched: torch.Tensor | None = None) -> torch.Tensor:
        """See `decode`."""
        return decode(self.decoder, self.harmonics, s, pitch, first_step, pitched)

    @torch.no_grad()
    def generate(self, instrument, pitch, velocity, dtype: torch.dtype | None = None,
                 core: bool = False) -> torch.Tensor:
        """Whole notes for a batch of inputs.

        Args:
            instrument: (B,) indices or (B, n_instruments) blend weights.
            pitch: (B,) MIDI pitches.
            velocity: (B,) velocity indices 0-4, or fractional indices (float).
            dtype: compute dtype, e.g. torch.bfloat16 on CUDA; None for float32.
            core: the 16 kHz core's note alone, (B, note_samples) at `config.sample_rate`
                (what `singsynth eval` scores, the paper's Table 1).
        Returns:
            (B, output_samples) float32 waveforms at `config.output_rate` in [-1, 1]:
            (B, 64000) at 16 kHz, or (B, 192000) at 48 kHz for a full-band model.
        """
        dev = self.device
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            wave = (self(instrument, pitch, velocity) if core
                    else self.full_band(instrument, pitch, velocity))
        if not core:
            wave = self.tail_gate(instrument, wave.shape[0])(wave.float())
        return wave.float().clamp(-1, 1)

    def tail_gate(self, instrument, batch: int):
        """What ends each note of a batch once it has died away (model/gate.py): a
        `TailGate` for the notes of unpitched instruments (drum kits), a callable that
        returns the wave as it is when there are none. Melodic notes keep their quiet
        tails: gated too, the GM model's quiet short notes went silent before pyin could
        find their pitch (held-out notes in tune: models/default.md)."""
        pitched = self.pitched(instrument)
        if pitched is None or bool((pitched >= 0.5).all()):
            return lambda wave: wave
        return TailGate(batch, self.config.output_rate, self.device, active=pitched < 0.5)

    @torch.no_grad()
    def stream(self, instrument, pitch, velocity, chunk: int = 256) -> Iterator[torch.Tensor]:
        """The same notes as `generate`, as consecutive (B, chunk) float32 chunks at the
        output rate.

        The last chunk is shorter when `chunk` does not divide the note's length.
        Concatenated, the chunks equal `generate` to within float rounding.
        """
        gate = None
        if self.upsampler is None and self.noise is None:
            chunks = (out for out, _, _ in self._stream_core(instrument, pitch, velocity, chunk))
        else:
            chunks = self._stream_full_band(instrument, pitch, velocity, chunk)
        for out in chunks:
            gate = gate or self.tail_gate(instrument, out.shape[0])
            yield gate(out.float()).clamp(-1, 1)

    def _stream_full_band(self, instrument, pitch, velocity, chunk: int):
        """`stream` for a full-band model: the core streamed in whole strides, each
        output chunk sent once the upsampler's context (3 ms of core) and every noise grain
        over it are there (the core's frames run ahead of its samples, so the grains are)."""
        cfg, f = self.config, self.config.upsample
        half = UPSAMPLE_HALF_TAPS if self.upsampler is not None else 0
        # Core chunks of about the output chunk's span (whole strides): one LSTM call and
        # one decoder call each, as a 16 kHz model streams.
        core_chunk = max(1, -(-chunk // (f * cfg.stride))) * cfg.stride
        core = self._stream_core(instrument, pitch, velocity, core_chunk)
        core_buf = None    # (B, half + note_samples + half + 1): core sample m at m + half
        noise_buf = None   # (B, span): output sample n at n + lead
        noise = self.noise
        seeds = None
        cond = self._inputs(instrument, pitch, velocity) if noise is not None else None
        have = frames_done = emitted = 0
        total_frames = cfg.steps - (cfg.kernel - 1)
        lead = noise.n_fft // 2 - noise.centre0 if noise is not None else 0
        total = cfg.output_samples
        while emitted < total:
            end = min(emitted + chunk, total)
            need_core = min(cfg.note_samples, -(-end // f) + half + 1)
            need_frames = total_frames if noise is None else min(
                total_frames, (end - 1 + lead) // noise.hop + 1)
            while have < need_core or (noise is not None and frames_done < need_frames):
                out, h, frame0 = next(core)
                if core_buf is None:
                    batch = out.shape[0]
                    core_buf = out.new_zeros(batch, cfg.note_samples + 2 * half + 1)
                    if noise is not None:
                        seeds = NoiseBand.seeds(instrument, pitch, velocity).to(out.device)
                        noise_buf = out.new_zeros(batch, (total_frames - 1) * noise.hop
                                                  + noise.n_fft)
                core_buf[:, half + have:half + have + out.shape[1]] = out
                have += out.shape[1]
                if noise is not None and h is not None:
                    grains = noise.grains(noise.log_energy(h, cond), seeds, frame0)
                    n, hop = grains.shape[1], noise.hop     # grains overlap by halves
                    span = noise_buf[:, frame0 * hop:(frame0 + n + 1) * hop].unflatten(1, (n + 1, hop))
                    span[:, :n] += grains[..., :hop]
                    span[:, 1:] += grains[..., hop:]
                    frames_done = frame0 + n
            a = emitted - emitted % f
            if self.upsampler is not None:
                x = core_buf[:, a // f:(end + f - 1) // f + 2 * half + 1]
                wave = self.upsampler.span(x, a, end - a)[:, emitted - a:]
            else:
                wave = core_buf[:, emitted:end]
            if noise is not None:
                wave = wave + noise_buf[:, emitted + lead:end + lead]
            yield wave
            emitted = end

    def _stream_core(self, instrument, pitch, velocity, chunk: int):
        """The core's note in (B, chunk) chunks at its own rate, not clamped, each with the
        decoder activations computed for it ((B, C, new frames) from frame index frame0,
        or None): yields (chunk, h, frame0)."""
        cfg = self.config
        cond = self._inputs(instrument, pitch, velocity)
        batch, dev = cond.shape[0], cond.device
        total_steps = cfg.steps
        total_frames = total_steps - (cfg.kernel - 1)
        weight = self.decoder.grain_weight(cached=True)           # (C, window)
        bias = self.decoder.synth.bias
        seq = torch.empty(batch, cfg.latent, total_steps, device=dev)
        ola = torch.zeros(batch, (total_frames - 1) * cfg.stride + cfg.window, device=dev)
        harmonics = self.harmonics
        if harmonics is not None:
            f0 = harmonics.pitch_hz(pitch, dev)
            pitched = self.pitched(instrument)
            amps = torch.zeros(batch, harmonics.count, total_frames, device=dev)
            oscillators = harmonics.oscillators(f0)
        # Note sample 0 sits at this index of the un-padded transposed-conv output.
        origin = (cfg.window - cfg.stride) + trim_samples(cfg)
        steps = frames = emitted = 0
        hidden = None
        while emitted < cfg.note_samples:
            end = min(emitted + chunk, cfg.note_samples)
            # Every frame whose grain starts at or before the chunk's last sample.
            need_frames = min(total_frames, (origin + end - 1) // cfg.stride + 1)
            need_steps = need_frames + cfg.kernel - 1
            if need_steps > steps:
                with _native_lstm(need_steps - steps <= SHORT_RUN_STEPS):
                    s, hidden = self.sequence(cond, steps, need_steps - steps, hidden)
                seq[:, :, steps:need_steps] = s.transpose(1, 2)
                steps = need_steps
            h, frame0 = None, frames
            if need_frames > frames:
                h = self.decoder.hidden(seq[:, :, frames:need_frames + cfg.kernel - 1])
                grains = torch.einsum("bcf,cw->bfw", h, weight)
                if harmonics is not None:
                    amps[:, :, frames:need_frames] = harmonics.frames(h, f0, pitched)
                for i, f in enumerate(range(frames, need_frames)):
                    ola[:, f * cfg.stride:f * cfg.stride + cfg.window] += grains[:, i]
                frames = need_frames
            out = ola[:, origin + emitted:origin + end] + bias
            if harmonics is not None:
                out = out + harmonics.synthesize(amps, f0, emitted, end - emitted,
                                                 oscillators=oscillators)
            yield out, h, frame0
            emitted = end

    def parameter_count(self, part: str = "generator") -> int:
        """Parameters of the 'generator' (LSTM + decoder, what plays), 'encoder' or 'all'."""
        generator = [self.sequence, self.decoder] + [m for m in (self.harmonics, self.noise)
                                                     if m is not None]
        parts = {"generator": generator,
                 "encoder": [self.encoder] if self.encoder is not None else [],
                 "all": [self]}[part]
        return sum(p.numel() for m in parts for p in m.parameters())


def build(config: "str | SINGConfig", instruments: Sequence[str],
          velocities: Sequence[int] = VELOCITIES, with_encoder: bool = True) -> SING:
    """A randomly initialised SING of a named size ('paper', 'small', 'tiny') or config."""
    cfg = get_config(config) if isinstance(config, str) else config
    return SING(cfg, instruments, velocities, with_encoder=with_encoder)
