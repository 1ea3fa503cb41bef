"""The paper's three training stages (section 4.3) as tasks for the shared `Loop`.

1. ae:   encoder + decoder reconstruct waveforms (spectral loss, or waveform MSE).
2. lstm: the frozen encoder gives target sequences; the LSTM learns them with MSE and
         truncated back-propagation through time.
3. e2e:  LSTM + decoder fine-tuned together on the spectral loss.
Crops: `crop` samples starting at a multiple of 256; steps [k, k + crop/256 + 15) decode
exactly note samples [256 k, 256 k + crop), and the encoder sees the same span plus
2,304 samples of context on each side.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from singsynth.data.soundfont import PEAK_MAX
from singsynth.errors import ConfigError
from singsynth.model.config import samples_to_steps
from singsynth.model.dsp import N_FFT, power_spectrogram, relative_mse, spectral_loss, waveform_mse
from singsynth.model.sing import SING, decode_parts, mix
from singsynth.notes import midi_to_hz


class TrainData:
    """A split: labels (N,) LongTensors and audio (N, 64000), either float32 in memory
    (a FloatTensor) or int16 in full scale on disk (a numpy memory map, see
    `NSynthDataset.audio_file`), read a batch at a time."""

    def __init__(self, instrument, pitch, velocity, audio):
        self.instrument, self.pitch, self.velocity, self.audio = instrument, pitch, velocity, audio

    def __len__(self):
        return len(self.audio)

    def notes(self, idx) -> torch.Tensor:
        """float32 waveforms (len(idx), 64000) in [-1, 1] of notes `idx` (indices or a slice)."""
        if isinstance(self.audio, torch.Tensor):
            return self.audio[idx]
        rows = self.audio[idx.numpy() if isinstance(idx, torch.Tensor) else idx]
        return torch.from_numpy(rows.astype(np.float32)).mul_(1 / 32768)  # exact: 2^-15

    def crops(self, idx: torch.Tensor, starts: torch.Tensor, length: int, context: int = 0):
        """(len(idx), length + 2 * context) spans of notes `idx` from `starts - context`."""
        audio = self.notes(idx)
        if context:
            audio = F.pad(audio, (context, context))
        span = starts[:, None] + torch.arange(length + 2 * context)[None]
        return torch.gather(audio, 1, span)


def crop_starts(count: int, cfg, gen: torch.Generator, note_samples: int = 64000):
    """Start samples (multiples of 256) of `count` crops inside [0, crop_end]; a share
    `start_share` of them at sample 0, so that the attack is trained too."""
    if not cfg.crop:
        return torch.zeros(count, dtype=torch.long)
    last = (min(cfg.crop_end, note_samples) - cfg.crop) // 256
    starts = torch.randint(0, max(0, last) + 1, (count,), generator=gen) * 256
    if cfg.start_share:
        starts[torch.rand(count, generator=gen) < cfg.start_share] = 0
    return starts


def audio_loss(cfg, estimate, target, step: int):
    """The stage's loss, plus the waveform term (MSE relative to each note's power) from
    step `wave_from`, decaying to 0 over `wave_steps` when that is set, plus the
    overshoot term when `peak_weight` is set."""
    if cfg.loss == "spectral":
        loss = spectral_loss(estimate, target, cfg.eps, cfg.ffts)
    else:
        loss = waveform_mse(estimate, target)
    if cfg.wave_weight and step >= cfg.wave_from and (not cfg.wave_steps or step < cfg.wave_steps):
        weight = cfg.wave_weight * (1 - step / cfg.wave_steps if cfg.wave_steps else 1.0)
        loss = loss + weight * relative_mse(estimate, target)
    if cfg.peak_weight:
        # No training note exceeds PEAK_MAX (the dataset builder's cap); penalise what the
        # model puts past it (per note, summed over samples: a few milliseconds of
        # overshoot at an attack count).
        loss = loss + cfg.peak_weight * F.relu(estimate.abs() - PEAK_MAX).pow(2).sum(-1).mean()
    return loss


def residual_share(residual, target, pitch, harmonics: int, sample_rate: int,
                   floor: float = 1e-6, pitched: torch.Tensor | None = None) -> torch.Tensor:
    """How much the decoder's own output puts where the harmonic bank plays: its power
    below min((K + 0.5) f0, 0.45 sr) over the target's power there, per note, averaged.

    Why: each partial inside that band can come from the bank, exactly at the note's pitch,
    or from the decoder, on its 62.5 Hz frame grid; the spectral loss cannot tell them
    apart. Decoder partials that miss the pitch are what pyin still heard on the first
    harmonic default's low and quiet notes (models/default.md).
    Args:
        residual, target: (B, L) waveforms, L >= 1,024; pitch: (B,) MIDI.
        harmonics: K, the bank's size; floor: mean-square level (per sample) added to
            the target's, so near-silent crops do not divide by zero.
        pitched: (B,) weight of each note's share (`SING.pitched`: 0 for a drum kit, which
            has no bank, so its decoder is the whole sound and owes nothing), or None.
    Returns:
        scalar tensor, differentiable in `residual`.
    """
    power_r, power_t = power_spectrogram(residual), power_spectrogram(target)   # (B, F, T)
    bins = torch.arange(power_r.shape[1], device=power_r.device) * sample_rate / N_FFT
    f0 = midi_to_hz(pitch.to(power_r.device).float())
    top = torch.clamp((harmonics + 0.5) * f0, max=0.45 * sample_rate)
    band = (bins[None] < top[:, None]).float()[:, :, None]                    # (B, F, 1)
    # Parseval: a signal of mean square 1 gives N_FFT * sum(window²) / 2 per frame here.
    unit = N_FFT * 0.375 * N_FFT / 2 * power_r.shape[-1]
    share = (power_r * band).sum((1, 2)) / ((power_t * band).sum((1, 2)) + floor * unit)
    if pitched is not None:
        share = share * pitched.to(share.dtype)
    return share.mean()


class AutoEncoder(nn.Module):
    def __init__(self, model: SING):
        super().__init__()
        self.encoder, self.decoder, self.harmonics = model.encoder, model.decoder, model.harmonics

    def forward(self, padded, pitch, first_step):
        return decode_parts(self.decoder, self.harmonics, self.encoder(padded), pitch, first_step)


class Sequence(nn.Module):
    def __init__(self, model: SING):
        super().__init__()
        self.sequence = model.sequence

    def forward(self, instrument, pitch, velocity, start, length, hidden=None):
        cond = self.sequence.condition(instrument, pitch, velocity)
        return self.sequence(cond, start, length, hidden)


class EndToEnd(nn.Module):
    def __init__(self, model: SING):
        super().__init__()
        self.sequence, self.decoder, self.harmonics = model.sequence, model.decoder, model.harmonics
        self.pitched = model.pitched   # drum kits: no harmonic bank (model/sing.py)

    def forward(self, instrument, pitch, velocity, first_step, steps):
        cond = self.sequence.condition(instrument, pitch, velocity)
        s, _ = self.sequence(cond, 0, first_step + steps)
        return decode_parts(self.decoder, self.harmonics, s[:, first_step:].transpose(1, 2), pitch,
                            first_step, self.pitched(instrument))


def kit_order(model: SING, train: TrainData, repeat: int, melodic_share: float = 1.0
              ) -> torch.Tensor:
    """The training notes of one epoch, as indices into `train`: the notes of unpitched
    instruments (drum kits) `repeat` times each, and a fixed random `melodic_share` of the
    other notes once (all of them at 1.0; the same subset every epoch and on `--resume`:
    seed 0). A share below 1 makes a short phase that shifts the epoch towards the kit
    without training every melodic note again."""
    every = torch.arange(len(train))
    if not 1 <= repeat <= 1000:
        raise ConfigError(f"kit_repeat {repeat}: use 1-1000")
    if not 0 < melodic_share <= 1:
        raise ConfigError(f"melodic_share {melodic_share}: use a share in (0, 1]")
    pitched = model.pitched(train.instrument)
    if pitched is None:
        return every
    kit, once = every[pitched < 0.5], every
    if melodic_share < 1:
        melodic = every[pitched >= 0.5]
        keep = torch.randperm(len(melodic), generator=torch.Generator().manual_seed(0))
        keep = keep[:max(1, round(melodic_share * len(melodic)))]
        once = torch.cat([melodic[keep], kit]).sort().values
    return torch.cat([once, kit.repeat(repeat - 1)])


class Task:
    """What the three stages share: data on the device, local slices, evaluation."""

    name = ""
    steps_per_batch = 1

    def __init__(self, model: SING, cfg, train: TrainData, test: TrainData, device):
        self.model, self.cfg, self.train_data, self.test_data = model, cfg, train, test
        self.device = device
        self.order = kit_order(model, train, cfg.kit_repeat, cfg.melodic_share)
        self.examples = len(self.order)
        self.length = cfg.crop or model.config.note_samples
        self.eval_index = torch.randperm(len(test), generator=torch.Generator().manual_seed(0)
                                         )[:cfg.eval_notes]
        if cfg.residual_weight and model.harmonics is None:
            raise ConfigError(f"{self.name}.residual_weight needs a model with harmonics "
                              f"(e.g. model: harmonic); this one is {model.config.name!r}")

    def decoded_loss(self, parts, target, pitch, step, pitched=None):
        """`audio_loss` of the decoded crops (decoder output, harmonics or None), plus the
        decoder's share of the harmonic band when `residual_weight` is set (`pitched`: see
        `residual_share`)."""
        loss = audio_loss(self.cfg, mix(parts), target, step)
        if self.cfg.residual_weight:
            cfg = self.model.config
            loss = loss + self.cfg.residual_weight * residual_share(
                parts[0], target, pitch, cfg.harmonics, cfg.sample_rate, pitched=pitched)
        return loss

    def parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def param_groups(self) -> list[dict]:
        """The optimiser's groups: the harmonic branch, when trained here, learns at
        `harmonics_lr` x the stage's rate (it starts from scratch beside trained weights)."""
        head = {id(p) for p in self.model.harmonics.parameters()} if self.model.harmonics else set()
        params = self.parameters()
        groups = [{"params": [p for p in params if id(p) not in head], "lr_scale": 1.0}]
        new = [p for p in params if id(p) in head]
        if new:
            groups.append({"params": new, "lr_scale": self.cfg.harmonics_lr})
        return groups

    def train(self):
        self.module.train()

    def eval(self):
        self.module.eval()

    def local(self, indices, gen, world):
        """This rank's slice of the global batch and of its crop starts."""
        starts = crop_starts(len(indices), self.cfg, gen, self.model.config.note_samples)
        return indices[world.rank::world.size], starts[world.rank::world.size]

    def labels(self, data: TrainData, idx):
        return (data.instrument[idx].to(self.device), data.pitch[idx].to(self.device),
                data.velocity[idx].to(self.device))

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Whole-note spectral loss and waveform MSE on the held-out notes."""
        spec = mse = 0.0
        for part in self.eval_index.split(16):
            estimate = self.whole_notes(part)
            target = self.test_data.notes(part).to(self.device)
            spec += spectral_loss(estimate, target).item() * len(part)
            mse += waveform_mse(estimate, target).item() * len(part)
        n = max(1, len(self.eval_index))
        return {"test_spectral": spec / n, "test_mse": mse / n}


class AETask(Task):
    name = "ae"

    def __init__(self, *args):
        super().__init__(*args)
        self.module = AutoEncoder(self.model)

    def loss(self, module, indices, gen, window, step, world):
        idx, starts = self.local(indices, gen, world)
        pad = self.model.encoder.padding
        spans = self.train_data.crops(idx, starts, self.length, pad).to(self.device)
        pitch = self.train_data.pitch[idx].to(self.device)
        parts = module(spans, pitch, (starts // 256).to(self.device))
        return self.decoded_loss(parts, spans[:, pad:pad + self.length], pitch, step)

    def whole_notes(self, idx):
        return self.model.decode(self.model.encoder.encode_note(
            self.test_data.notes(idx).to(self.device)), self.test_data.pitch[idx].to(self.device))


class LSTMTask(Task):
    name = "lstm"

    def __init__(self, *args):
        super().__init__(*args)
        self.module = Sequence(self.model)
        self.steps = self.model.config.steps
        self.steps_per_batch = math.ceil(self.steps / self.cfg.tbptt)
        self._targets = None
        self.hidden = None

    @property
    def targets(self) -> torch.Tensor:
        """Target sequences, encoded on first use: after a resume has restored the
        encoder's weights, never from the freshly built (random) one."""
        if self._targets is None:
            self._targets = self.encode(self.train_data)
        return self._targets

    @torch.no_grad()
    def encode(self, data: TrainData) -> torch.Tensor:
        """Frozen-encoder target sequences (N, 265, D), kept on the CPU."""
        self.model.encoder.eval()
        out = [self.model.encoder.encode_note(data.notes(slice(i, i + 32)).to(self.device)).cpu()
               for i in range(0, len(data), 32)]
        return torch.cat(out).transpose(1, 2).contiguous()

    def parameters(self):
        return list(self.model.sequence.parameters())

    def loss(self, module, indices, gen, window, step, world):
        idx = indices[world.rank::world.size]
        start = window * self.cfg.tbptt
        length = min(self.cfg.tbptt, self.steps - start)
        if window == 0:
            self.hidden = None
        s, hidden = module(*self.labels(self.train_data, idx), start, length, self.hidden)
        self.hidden = tuple(h.detach() for h in hidden)
        target = self.targets[idx, start:start + length].to(self.device)
        return F.mse_loss(s, target)

    def whole_notes(self, idx):
        instrument, pitch, velocity = self.labels(self.test_data, idx)
        s, _ = self.module(instrument, pitch, velocity, 0, self.steps)
        return self.model.decode(s.transpose(1, 2), pitch, pitched=self.model.pitched(instrument))


class E2ETask(Task):
    name = "e2e"

    def __init__(self, *args):
        super().__init__(*args)
        self.module = EndToEnd(self.model)

    def loss(self, module, indices, gen, window, step, world):
        # One crop position per global batch keeps the LSTM call a single batched run;
        # taken before the rank's slice so that every process crops the same span.
        starts = crop_starts(len(indices), self.cfg, gen, self.model.config.note_samples)
        start = int(starts[0]) if len(starts) else 0
        idx = indices[world.rank::world.size]
        steps = samples_to_steps(self.length, self.model.config)
        labels = self.labels(self.train_data, idx)
        parts = module(*labels, start // 256, steps)
        target = self.train_data.crops(idx, torch.full((len(idx),), start), self.length)
        return self.decoded_loss(parts, target.to(self.device), labels[1], step,
                                 self.model.pitched(labels[0]))

    def whole_notes(self, idx):
        return mix(self.module(*self.labels(self.test_data, idx), 0, self.model.config.steps))


TASKS = {"ae": AETask, "lstm": LSTMTask, "e2e": E2ETask}
