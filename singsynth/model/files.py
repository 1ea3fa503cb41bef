"""`open_source`: a checkpoint as a NoteSource, lazily, without torch.

`render` reads a checkpoint's header and hash before deciding whether it needs the model
at all (see `singsynth.generation.diskcache`), and `play`'s audio process never loads the
model (its generator process does), so this module stays free of torch. The one place
it reaches the torch side is `LazySource.prepare`, which imports `singsynth.model.source`
when a note must really be generated: in the generator's child process for `play`, in
render's own process for `render` (`tests/test_layers.py` allows exactly that edge).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from singsynth.model.header import file_hash, read_header, resolve, usable_velocities
from singsynth.notes import TRAINED_VELOCITIES

if TYPE_CHECKING:
    from singsynth.notes import NoteKey


def load(path):
    """The loaded `ModelSource` of checkpoint `path` (imports torch; CheckpointError for a
    bad file). The one place this module reaches the torch side (tests/test_layers.py)."""
    from singsynth.model.source import load_source
    return load_source(path)


class LazySource:
    """A checkpoint's NoteSource that imports torch and loads the weights only when a note
    has to be generated: a render whose notes are all in the disk cache never pays for it.

    Built by `open_source`, from the checkpoint's safetensors JSON header (read as
    JSON, never unpickled); the full load, with all its checks, happens on first use.
    """

    def __init__(self, path: Path, instruments, sample_rate: int, note_samples: int,
                 velocities=TRAINED_VELOCITIES):
        self.path = path
        self.instruments = list(instruments)
        self.velocities = tuple(velocities)
        self.sample_rate = int(sample_rate)
        self.note_samples = int(note_samples)
        self._source = None
        self._identity = None

    def prepare(self):
        """Load the model now (imports torch; CheckpointError for a bad file) and return
        the loaded `ModelSource`."""
        if self._source is None:
            self._source = load(self.path)
        return self._source

    def render(self, keys: Sequence[NoteKey]) -> np.ndarray:
        return self.prepare().render(keys)

    def stream(self, keys: Sequence[NoteKey], chunk: int = 256) -> Iterator[np.ndarray]:
        return self.prepare().stream(keys, chunk)

    def identity(self) -> str:
        if self._identity is None:
            self._identity = file_hash(self.path)
        return self._identity


def open_source(name_or_path=None, lazy: bool = True):
    """The NoteSource of a model name ('default', or another file in models/) or a
    checkpoint path: the one way a checkpoint becomes something the engine plays (as
    demucs's `get_model`).

    lazy=True: a `LazySource` built from the header, which loads the weights on first use
    (when its header reads cleanly; else loaded now, so that a bad file raises the loader's
    own `CheckpointError` at once). lazy=False: the loaded `ModelSource` (imports torch).
    """
    path = resolve(name_or_path)
    if not lazy:
        return load(path)
    try:
        meta = read_header(path)["__metadata__"]
        config = json.loads(meta["config"])
        if not isinstance(config, dict):      # the full loader names the problem
            raise ValueError("the config is not a JSON object")
        instruments = json.loads(meta["instruments"])
        velocities = json.loads(meta["velocities"])
        # The notes it plays: the core's rate and length times the full-band upsampling.
        up = config.get("upsample", 1)
        rate, length = config["sample_rate"], config["note_samples"]
        if type(up) is int and 1 <= up <= 8 and type(rate) is int and type(length) is int:
            rate, length = rate * up, length * up
        # Only what the lazy source needs is looked at here; anything odd goes to the
        # full loader, whose checks name the problem.
        if (meta.get("format") != "singsynth" or not isinstance(instruments, list)
                or not instruments or not all(isinstance(i, str) for i in instruments)
                or type(rate) is not int or type(length) is not int
                or not 1000 <= rate <= 384_000 or not 0 < length <= 60 * rate
                or not usable_velocities(velocities)):
            raise ValueError("not a usable singsynth checkpoint header")
        return LazySource(path, instruments, rate, length, velocities)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return load(path)
