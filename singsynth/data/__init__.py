"""Datasets: read NSynth as published, build NSynth-style datasets from SoundFonts.

`NSynthDataset` (torch) is imported lazily so that `singsynth dataset build` and
the split/SoundFont helpers start without importing torch.
"""

__all__ = ["NSynthDataset", "VELOCITIES"]

from singsynth.notes import TRAINED_VELOCITIES as VELOCITIES  # noqa: E402


def __getattr__(name):
    if name == "NSynthDataset":
        from singsynth.data.nsynth import NSynthDataset
        return NSynthDataset
    raise AttributeError(f"module 'singsynth.data' has no attribute {name!r}")
