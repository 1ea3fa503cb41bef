"""SING: configs and length arithmetic, the three networks, and the generator wrapper."""
from typing import Sequence

from singsynth.model.config import (CONFIGS, NOTE_SAMPLES, SAMPLE_RATE, VELOCITIES,  # noqa: F401
                                    SINGConfig, context_steps, encoder_padding,
                                    first_chunk_steps, frames_to_samples, get_config,
                                    receptive_field, samples_to_steps, steps_to_frames,
                                    steps_to_samples, trim_samples)
from singsynth.model.sing import SING  # noqa: F401


def build(config: "str | SINGConfig", instruments: Sequence[str],
          velocities: Sequence[int] = VELOCITIES, with_encoder: bool = True) -> SING:
    """A randomly initialised SING of a named size ('paper', 'small', 'tiny') or config."""
    cfg = get_config(config) if isinstance(config, str) else config
    return SING(cfg, instruments, velocities, with_encoder=with_encoder)
