"""Model sizes and SING's length arithmetic.

Lengths in samples are at the model rate (16 kHz). A "step" is one LSTM step; the
decoder's first conv (kernel 9, no padding) turns `steps` steps into `steps - 8` frames,
and its transposed conv (kernel 1,024, stride 256, padding 768) overlap-adds one
1,024-sample grain per frame. For SING's 265 steps that gives 257 frames and 65,024
samples, trimmed by 512 at each end to the 64,000 samples of a 4-second note.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from singsynth.errors import ConfigError
from singsynth.notes import TRAINED_VELOCITIES

SAMPLE_RATE = 16_000
NOTE_SAMPLES = 64_000
VELOCITIES = TRAINED_VELOCITIES  # the default for a new model; a checkpoint stores its own


@dataclass(frozen=True)
class SINGConfig:
    """Architecture hyper-parameters (what a checkpoint stores to rebuild its model)."""

    name: str = "paper"
    lstm_hidden: int = 1024
    lstm_layers: int = 3
    latent: int = 128          # D, channels of the sequence s and the encoder output
    channels: int = 4096       # hidden channels of decoder and encoder
    instrument_dim: int = 16
    pitch_dim: int = 8
    velocity_dim: int = 2
    time_dim: int = 4
    kernel: int = 9            # decoder's first conv
    window: int = 1024         # grain length of the (transposed) strided conv
    stride: int = 256
    harmonics: int = 0         # sines at multiples of the pitch added to the output (0 = the paper)
    sample_rate: int = SAMPLE_RATE    # the core's rate: the LSTM, decoder and harmonics
    note_samples: int = NOTE_SAMPLES  # ... and a note's length at it
    # Full band (model/fullband.py): the core's note is upsampled by this factor (3: 16 ->
    # 48 kHz) and a band of filtered noise in `noise_bands` bands from `noise_low_hz` to
    # the output's Nyquist adds what 16 kHz cannot hold. 1 and 0: the paper's 16 kHz note.
    upsample: int = 1
    noise_bands: int = 0
    noise_low_hz: int = 6000

    @property
    def output_rate(self) -> int:
        """Rate of the notes the model plays, Hz: 16,000, or 48,000 for a full-band model."""
        return self.sample_rate * self.upsample

    @property
    def output_samples(self) -> int:
        """Length of a whole note at `output_rate`: 64,000, or 192,000 at 48 kHz."""
        return self.note_samples * self.upsample

    @property
    def steps(self) -> int:
        """LSTM steps (and rows of the time embedding) for a whole note: 265."""
        return samples_to_steps(self.note_samples, self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SINGConfig":
        """The config `d` describes (a checkpoint's header, a training YAML), checked:
        ConfigError for an unknown key, a wrong type or a size out of `LIMITS`."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a mapping of sizes, not {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}; allowed: {sorted(known)}")
        config = cls(**d)
        config.check()
        return config

    def check(self) -> None:
        """ConfigError unless every size is an int within `LIMITS` and the lengths fit."""
        if not isinstance(self.name, str):
            raise ConfigError(f"model config name must be a string, not {self.name!r}")
        for key, (low, high) in LIMITS.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"model config {key} = {value!r} must be an integer in "
                                  f"{low}..{high}")
        if self.noise_bands and not 0 <= self.noise_low_hz < self.output_rate // 2 - self.noise_bands:
            raise ConfigError(f"model config noise_low_hz {self.noise_low_hz} must lie below "
                              f"the output's Nyquist frequency ({self.output_rate // 2} Hz)")
        if self.noise_bands == 1:
            raise ConfigError("model config noise_bands must be 0 (no noise band) or at least 2")
        if self.window % self.stride or self.note_samples % self.stride:
            raise ConfigError(f"model config window {self.window} and note_samples "
                              f"{self.note_samples} must be multiples of stride {self.stride}")
        self._check_lengths()

    def _check_lengths(self) -> None:
        """ConfigError unless the length arithmetic gives whole notes: every size within
        LIMITS is not enough (stride 1 and window 1 passed and made 63,997-sample notes
        that crashed the engine at the first note)."""
        steps = samples_to_steps(self.note_samples, self)
        decoded = frames_to_samples(steps_to_frames(steps, self), self)
        # modules.Decoder trims 2 strides at each end (and its squared-Hann grains add up
        # to a constant at 4x overlap): that is trim_samples only when window = 4 x stride.
        if decoded - 4 * self.stride != self.note_samples or trim_samples(self) != 2 * self.stride:
            raise ConfigError(f"model config window {self.window} must be 4 x stride "
                              f"{self.stride} = {4 * self.stride} (grains overlap 4 times): as "
                              f"given the decoder makes {decoded - 4 * self.stride} samples, "
                              f"not note_samples {self.note_samples}")
        # The encoder pads each side by half of this; odd, its frames miss the steps by one.
        padded = context_steps(self) * self.stride - self.stride + self.window
        if padded % 2:
            raise ConfigError(f"model config kernel {self.kernel} with stride {self.stride}: "
                              f"the encoder would need {padded / 2} samples of padding on each "
                              "side; use an odd kernel (SING's is 9) or an even stride")


# Bounds on each size of a config read from a file: far beyond any model here, and tight
# enough that a hostile checkpoint header cannot make a model of many gigabytes (its
# tensors are compared with the model's shapes on torch's meta device before any memory
# is taken, see `checkpoint.load_checkpoint`; these bounds keep the rest, such as the note
# length every generated note is allocated at, sane too).
LIMITS = {
    "lstm_hidden": (1, 8192), "lstm_layers": (1, 16), "latent": (1, 4096),
    "channels": (1, 16384), "instrument_dim": (1, 1024), "pitch_dim": (1, 1024),
    "velocity_dim": (1, 1024), "time_dim": (1, 1024), "kernel": (1, 255),
    "window": (1, 65536), "stride": (1, 65536), "harmonics": (0, 4096),
    "sample_rate": (1000, 384_000), "note_samples": (1, 60 * 384_000),
    "upsample": (1, 8), "noise_bands": (0, 512), "noise_low_hz": (0, 192_000),
}

CONFIGS = {
    # The paper's model: about 243 MiB of float32 generator weights.
    "paper": SINGConfig(name="paper"),
    # For CPU training and live play: trains in about 2 hours on 2 cores.
    "small": SINGConfig(name="small", lstm_hidden=256, lstm_layers=3, latent=128, channels=256),
    # small's LSTM with a 512-channel decoder and encoder (more grains to place partials;
    # 2x the cost of small's decoder, still real time on a CPU). configs/wide.yaml.
    "wide": SINGConfig(name="wide", lstm_hidden=256, lstm_layers=3, latent=128, channels=512),
    # wide's decoder with a 3 x 512 LSTM: wide's LSTM stalls on the latents (MSE 0.0107
    # even on training notes, models/default.md). About 3.5x the LSTM cost; tried in
    # session 5, it learned no faster per epoch (configs/wide512.yaml).
    "wide512": SINGConfig(name="wide512", lstm_hidden=512, lstm_layers=3, latent=128, channels=512),
    # wide plus a bank of 64 harmonics of the requested pitch (modules.Harmonics): the
    # conv decoder alone left the default's pitch at 12/150. configs/harmonic.yaml.
    "harmonic": SINGConfig(name="harmonic", lstm_hidden=256, lstm_layers=3, latent=128,
                           channels=512, harmonics=64),
    # For tests: a few hundred kilobytes.
    # harmonic's 16 kHz core, upsampled to 48 kHz, plus 48 noise bands of 375 Hz from
    # 6 kHz up (model/fullband.py): the default model. configs/fullband.yaml.
    "fullband": SINGConfig(name="fullband", lstm_hidden=256, lstm_layers=3, latent=128,
                           channels=512, harmonics=64, upsample=3, noise_bands=48),
    # The other full-band design measured (models/default.md, "Full band"): SING itself at
    # 48 kHz, the same 265 steps with stride and grain 3x longer. Not trained.
    "harmonic48": SINGConfig(name="harmonic48", lstm_hidden=256, lstm_layers=3, latent=128,
                             channels=512, harmonics=64, window=3072, stride=768,
                             sample_rate=48000, note_samples=192000),
    "tiny": SINGConfig(name="tiny", lstm_hidden=32, lstm_layers=2, latent=16, channels=32),
    "tiny-harmonic": SINGConfig(name="tiny-harmonic", lstm_hidden=32, lstm_layers=2, latent=16,
                                channels=32, harmonics=8),
    "tiny-fullband": SINGConfig(name="tiny-fullband", lstm_hidden=32, lstm_layers=2, latent=16,
                                channels=32, harmonics=8, upsample=3, noise_bands=16),
}


def get_config(name: str) -> SINGConfig:
    """The named config; a ConfigError lists the names when it is unknown."""
    if name not in CONFIGS:
        raise ConfigError(f"unknown model config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name]


# --- length arithmetic --------------------------------------------------------------
# Steps [k, k + n) decode to note samples [k*stride, k*stride + (n - context)*stride),
# where context = kernel - 1 + (window // stride) + 3 = 15 steps for SING: 8 for the
# kernel-9 conv and 7 more for the grains that overlap the first and last samples.

def context_steps(config: SINGConfig) -> int:
    """Extra steps a decoded chunk needs beyond one per `stride` samples (15 for SING)."""
    return (config.kernel - 1) + 2 * (config.window // config.stride) - 1


def samples_to_steps(samples: int, config: SINGConfig) -> int:
    """LSTM steps needed to decode `samples` samples (a multiple of the stride): 64,000 -> 265."""
    if samples % config.stride:
        raise ValueError(f"{samples} samples is not a multiple of the stride {config.stride}")
    return samples // config.stride + context_steps(config)


def steps_to_samples(steps: int, config: SINGConfig) -> int:
    """Samples decoded from `steps` consecutive steps: 265 -> 64,000."""
    return max(0, steps - context_steps(config)) * config.stride


def steps_to_frames(steps: int, config: SINGConfig) -> int:
    """Frames after the decoder's unpadded first conv: 265 -> 257."""
    return steps - (config.kernel - 1)


def frames_to_samples(frames: int, config: SINGConfig) -> int:
    """Length of the transposed conv output (padding window - stride): 257 -> 65,024."""
    pad = config.window - config.stride
    return (frames - 1) * config.stride - 2 * pad + config.window


def trim_samples(config: SINGConfig) -> int:
    """Samples dropped at each end of the decoder output: 512."""
    steps = samples_to_steps(config.note_samples, config)
    return (frames_to_samples(steps_to_frames(steps, config), config) - config.note_samples) // 2


def encoder_padding(config: SINGConfig) -> int:
    """Zeros added on each side of a waveform so the encoder yields aligned steps: 2,304."""
    # The encoder maps L + 2P samples to (L + 2P - window) / stride + 1 frames, which must
    # equal the L / stride + context steps the decoder turns back into L samples.
    return (context_steps(config) * config.stride - config.stride + config.window) // 2


def first_chunk_steps(chunk: int, config: SINGConfig) -> int:
    """LSTM steps that must run before the first `chunk` samples can be emitted: 14 for 256.

    This is the decoder's receptive field: the first chunk needs the frames whose grains
    overlap it (its end + trim + padding) plus the kernel-9 context.
    """
    frames = -(-(chunk + trim_samples(config) + config.window - config.stride) // config.stride)
    return min(frames + config.kernel - 1, samples_to_steps(config.note_samples, config))


def receptive_field(config: SINGConfig) -> int:
    """Output samples influenced by one LSTM step: kernel * stride + window - stride."""
    return (config.kernel - 1) * config.stride + config.window
