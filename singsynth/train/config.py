"""Typed training configs: one dataclass per stage, loaded from YAML with checked keys."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from singsynth.errors import ConfigError
from singsynth.files import missing, read_bytes
from singsynth.model.config import CONFIGS
from singsynth.model.dsp import N_FFT
from singsynth.yamlfile import load_yaml


@dataclass
class StageConfig:
    """Hyper-parameters shared by the three stages.

    Attributes:
        epochs: passes over the training notes (one random crop per note per pass).
        batch: global batch size (split across processes under torchrun).
        lr: peak Adam learning rate; linear warm-up then cosine decay to lr * final_lr.
        warmup_steps: optimizer steps of linear warm-up.
        final_lr: the learning rate at the end, as a fraction of `lr`.
        crop: samples per training example (multiple of 256); 0 = the whole note.
        crop_end: crops lie within note samples [0, crop_end]; the sounding part trains
            fastest (near silence the spectral loss has almost no gradient).
        start_share: share of crops that start at sample 0. Uniform starts put a note's
            first 0.1 s (the attack) in under 1 % of the crops; left untrained, the
            harmonic model's attacks overshot the recordings 4x and clipped.
        loss: 'spectral' or 'mse' (the paper's comparison).
        eps: epsilon of the spectral loss log(eps + |X|²). The paper's 1 suits NSynth's
            loud notes; quieter data needs a smaller one for the loss to see more than
            the loudest bins (0.01 = the same curve 20 dB lower).
        ffts: STFT sizes of the spectral loss (hop = size / 4); the paper's is [1024].
        wave_weight: weight of an added waveform term: MSE relative to each target's power
            (so quiet notes count as much as loud ones). It pins the phase the autoencoder
            can see in its input, which the spectral loss alone leaves to chance: with it
            partials stop collapsing onto the 62.5 Hz frame-rate comb.
        wave_steps: decay `wave_weight` linearly to 0 over this many steps; 0 = keep it.
        wave_from: optimizer step the waveform term starts at. From step 0 it drives a
            fresh autoencoder to silence (zeros score exactly 1, any wrong phase more);
            after the spectral loss has shaped the output it pins the phase.
        peak_weight: weight of a penalty on samples past full scale (0.99), squared and
            summed over each note. The spectral loss barely notices an attack 4x too loud;
            the harmonic model's loud low notes clipped without this.
        residual_weight: weight of a penalty on the decoder's own output where a harmonic
            model's bank plays (below min((K + 0.5) f0, 7.2 kHz)), as a share of the
            target's power there (`stages.residual_share`); ae and e2e stages. The
            spectral loss cannot tell a partial from the bank (at the pitch) from one the
            decoder puts on its frame grid; this makes the bank carry the partials.
        tbptt: LSTM stage only: truncated back-propagation window in steps.
        grad_clip: max gradient norm (0 = off).
        harmonics_lr: learning rate of the harmonic branch (models with `harmonics`) as a
            multiple of `lr`: it starts from scratch where the rest may be trained already.
        eval_notes: held-out notes scored at the end of each epoch (whole notes).
        kit_repeat: times each note of a drum kit (an unpitched `drums_*` instrument) is
            trained per epoch (1-1000). A kit is a few hundred of tens of thousands of notes
            (0.6 % of the GM data): at 1, the GM model's kit was 10-25 dB too quiet after 5
            epochs, closer to FluidR3 than TimGM6mb's kit on 3 of 47 keys.
        melodic_share: share of the melodic (pitched) training notes an epoch trains, in
            (0, 1]: a fixed random subset (`stages.kit_order`). With `kit_repeat`, a short
            phase weighted towards a kit (configs/gm-kit.yaml).
    """

    epochs: int = 1
    batch: int = 256
    lr: float = 3e-4
    warmup_steps: int = 0
    final_lr: float = 1.0
    crop: int = 0
    crop_end: int = 64000
    start_share: float = 0.0
    loss: str = "spectral"
    eps: float = 1.0
    ffts: list = field(default_factory=lambda: [1024])
    wave_weight: float = 0.0
    wave_steps: int = 0
    wave_from: int = 0
    peak_weight: float = 0.0
    residual_weight: float = 0.0
    tbptt: int = 32
    grad_clip: float = 0.0
    harmonics_lr: float = 1.0
    eval_notes: int = 256
    kit_repeat: int = 1
    melodic_share: float = 1.0


@dataclass
class TrainConfig:
    """A whole training run: model size, seed, precision and the three stages.

    amp: "auto" (bf16 autocast on CUDA, float32 elsewhere), "bf16" (autocast on any
    device) or "off". Autocast covers the forward pass and loss; weights, optimiser state
    and evaluation stay float32.

    init: a checkpoint whose weights start the run (every tensor whose name and shape
    the model shares; the rest keep their fresh initialisation), e.g. to add a harmonic
    branch to a trained model. Used when the first stage has no state to resume; with it
    a run may start at a later stage without the earlier stage's checkpoint.

    extend: with `init`, add the dataset's instruments that the checkpoint lacks to its
    vocabulary and train only their embedding rows; the checkpoint's own model size is
    used (`model` is ignored) and its instruments stay bit for bit (train/extend.py).
    """

    model: str = "small"
    init: str = ""
    extend: bool = False
    seed: int = 0
    amp: str = "auto"
    save_minutes: float = 5.0
    ae: StageConfig = field(default_factory=lambda: StageConfig(epochs=50))
    lstm: StageConfig = field(default_factory=lambda: StageConfig(epochs=50, loss="mse"))
    e2e: StageConfig = field(default_factory=lambda: StageConfig(epochs=20))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


STAGES = ("ae", "lstm", "e2e")
_CHOICES = {"loss": ("spectral", "mse"), "amp": ("auto", "bf16", "off")}
# Lowest allowed value of numeric keys (a batch of 0 would otherwise divide by zero).
_MINIMUM = {"epochs": 1, "batch": 1, "tbptt": 1, "warmup_steps": 0, "crop": 0, "crop_end": 256,
            "wave_steps": 0, "eval_notes": 0, "save_minutes": 0, "wave_weight": 0,
            "wave_from": 0, "start_share": 0, "peak_weight": 0, "residual_weight": 0,
            # A negative clip norm flips the gradients; a negative final_lr, the schedule.
            "grad_clip": 0, "final_lr": 0, "kit_repeat": 1}
_POSITIVE = ("lr", "eps", "harmonics_lr", "melodic_share")


def _fill(cls, values: dict, where: str, source: str):
    if not isinstance(values, dict):
        what = where.rstrip(".") or "the config"
        got = "nothing" if values is None else type(values).__name__
        raise ConfigError(f"{source}: {what} must be a mapping of keys to values, got {got}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = cls()
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {where}{key}; allowed: {', '.join(fields)}")
        default = getattr(out, key)
        if isinstance(default, float) and isinstance(value, str):
            # YAML 1.1 reads `4e-4` (no dot) as a string; a number written so is still meant.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(default, StageConfig):
            value = _fill(StageConfig, value, f"{where}{key}.", source)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {where}{key} must be true or false, got {value!r}")
        elif not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"{source}: {where}{key} must be {type(default).__name__}, "
                              f"got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            # YAML's .nan and .inf pass every comparison below (nan < 0 is False).
            raise ConfigError(f"{source}: {where}{key} is {value!r}; allowed: a finite number")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{source}: {where}{key} is {value!r}; allowed: {_CHOICES[key]}")
        if key == "model" and value not in CONFIGS:
            raise ConfigError(f"{source}: model is {value!r}; allowed: {', '.join(CONFIGS)}")
        if key in _MINIMUM and value < _MINIMUM[key]:
            raise ConfigError(f"{source}: {where}{key} is {value!r}; allowed: "
                              f"{_MINIMUM[key]} or more")
        if key in ("start_share", "melodic_share") and value > 1:
            raise ConfigError(f"{source}: {where}{key} is {value!r}; allowed: 0 to 1")
        if key in _POSITIVE and not value > 0:
            raise ConfigError(f"{source}: {where}{key} is {value!r}; allowed: more than 0")
        if key == "ffts" and not (value and all(isinstance(n, int) and not isinstance(n, bool)
                                                 and 16 <= n <= 8192 and n % 4 == 0 for n in value)):
            raise ConfigError(f"{source}: {where}ffts is {value!r}; allowed: a list of STFT "
                              "sizes, multiples of 4 from 16 to 8192, e.g. [2048, 1024, 512]")
        setattr(out, key, float(value) if isinstance(default, float) else value)
    return out


def _check_crop(stage: StageConfig, where: str, source: str, note_samples: int) -> None:
    """A crop must fit in a note (longer ones index past its samples) and hold the
    largest STFT its loss takes (torch.stft needs n_fft <= samples); 0 = whole notes."""
    shortest = 256
    if stage.loss == "spectral":
        shortest = max(shortest, *stage.ffts)
    if stage.residual_weight:
        shortest = max(shortest, N_FFT)          # residual_share's spectrogram frames
    shortest = -(-shortest // 256) * 256         # crops start on the 256-sample grid
    if stage.crop and (stage.crop % 256 or not shortest <= stage.crop <= note_samples):
        raise ConfigError(f"{source}: {where}crop is {stage.crop}; allowed: 0 (whole notes) "
                          f"or a multiple of 256 from {shortest} to {note_samples}")


def _read_yaml(path):
    """The parsed YAML file `path`, or one ConfigError line saying why it cannot be."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file; pass a .yaml file such "
                          "as configs/small.yaml")
    if missing(path):
        raise ConfigError(f"{path}: no such config file; see configs/*.yaml")
    try:  # a regular file of bounded size: a FIFO or /dev/zero is named, not read
        text = read_bytes(path, "a YAML config (.yaml)", 1 << 20, ConfigError).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8); pass a .yaml config such as "
                          "configs/small.yaml") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    return load_yaml(text, str(path))


def _read_value(item: str, raw: str):
    """The YAML value of override `item` (its text after '=')."""
    return load_yaml(raw, f"override {item!r}", fix="quote a string, write a list as [1024, 512]")


def load_config(path=None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (None: all defaults) and apply `key.sub=value` overrides."""
    source = str(path) if path else "<defaults>"
    data = {}
    if path:
        from singsynth.files import shipped_dir, shipped_or_path

        # A bare name ("wide") is a shipped config, as for models and presets: a wheel
        # carries configs/ inside the package, where no relative path finds it.
        path = shipped_or_path(str(path), shipped_dir("configs"), ".yaml")
        data = _read_yaml(path) or {}
    if overrides and not isinstance(data, dict):
        _fill(TrainConfig, data, "", source)  # raises: the file's top level is no mapping
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like ae.lr=0.001")
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:i + 1])} is not a "
                                  "mapping of keys")
        node[parts[-1]] = _read_value(item, raw)
    cfg = _fill(TrainConfig, data, "", source)
    for name in STAGES:
        _check_crop(getattr(cfg, name), f"{name}.", source, CONFIGS[cfg.model].note_samples)
    return cfg
