"""What an export writes, in sampler terms: samples with loops, and instruments made of
key x velocity regions. Both writers (`sf2.py`, `sfz.py`) take a `Bank`; `notes.py` builds it.

No torch here, and no file formats.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np

# singsynth releases a voice with the envelope (1 - t / R) ** 2 over the preset's release
# time R (engine/voice.py). Samplers release linearly in dB instead: a SoundFont's
# releaseVolEnv is the time to fall 96 dB (FluidSynth's volume envelope), sfizz's
# ampeg_release the time to fall by e ** -9 (78 dB). Both are set so that the note is
# 20 dB down when singsynth's is: (1 - 0.684) ** 2 = 0.1 at t = 0.684 R.
SF2_RELEASE_PER_SECOND = 0.684 * 96 / 20   # 3.28 R
SFZ_RELEASE_PER_SECOND = 0.684 * 78.2 / 20  # 2.67 R
# Samples of the loop's start repeated after its end (SoundFont asks for 8 at least).
GUARD = 64


@dataclass
class Sample:
    """One mono sample with a sustain loop, at the bank's sample rate.

    Attributes:
        name: unique within the bank, at most 20 ASCII characters (SoundFont's limit).
        data: float32 (samples,) in [-1, 1]: the note up to `loop_end`, then the loop's
            start again for `GUARD` samples so that an interpolating player reads past
            the loop end into what follows it when looping.
        loop_start, loop_end: the loop [loop_start, loop_end) in samples.
        key: the MIDI pitch the sample sounds at (its root key).
    """

    name: str
    data: np.ndarray
    loop_start: int
    loop_end: int
    key: int


@dataclass
class Region:
    """One zone of an instrument: which keys and velocities play which sample.

    Attributes:
        lokey, hikey, lovel, hivel: inclusive MIDI ranges.
        sample: index into `Bank.samples`.
        attenuation: dB (>= 0) the region plays below its sample: singsynth fades notes
            softer than its softest trained velocity instead of changing their timbre.
    """

    lokey: int
    hikey: int
    lovel: int
    hivel: int
    sample: int
    attenuation: float = 0.0


@dataclass
class Instrument:
    """One playable instrument (an SF2 preset and its instrument; an SFZ file).

    Attributes:
        name: at most 20 ASCII characters. bank, program: where the SF2 preset sits.
        release: singsynth's release time in seconds (the preset's `release`).
        pan: -1 (left) .. 1 (right), the preset's pan.
    """

    name: str
    bank: int
    program: int
    release: float
    pan: float
    regions: List[Region] = field(default_factory=list)


@dataclass
class Bank:
    """Samples and the instruments playing them, at one sample rate (Hz)."""

    name: str
    sample_rate: int
    samples: List[Sample] = field(default_factory=list)
    instruments: List[Instrument] = field(default_factory=list)
    comment: str = ""
    notes: int = 0  # distinct notes generated for it (several samples may share one)


def velocity_ranges(velocities) -> list:
    """Layer velocities -> inclusive (lovel, hivel) per layer, in the same order.

    Each layer answers the velocities nearest to it (boundaries half-way between
    neighbours), the softest down to 1 and the loudest up to 127. Layers must be
    distinct, 1-127 and ascending.
    """
    v = [int(x) for x in velocities]
    out = []
    for i, vel in enumerate(v):
        lo = 1 if i == 0 else (v[i - 1] + vel) // 2 + 1
        hi = 127 if i == len(v) - 1 else (vel + v[i + 1]) // 2
        out.append((lo, hi))
    return out


def key_ranges(pitches) -> list:
    """Exported pitches (ascending) -> inclusive (lokey, hikey) per pitch: each key plays
    its own sample; keys below the lowest and above the highest play the nearest one,
    transposed by the sampler."""
    p = [int(x) for x in pitches]
    return [(0 if i == 0 else key, 127 if i == len(p) - 1 else key)
            for i, key in enumerate(p)]
