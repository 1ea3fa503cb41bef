"""A sine source whose chunks take time in proportion to their size, as a model's do.

`SineSource.chunk_delay` costs the same for any chunk; here a prewarm chunk (16 notes x
16,000 samples) costs 1,000 times a played one (1 x 256), which is what makes a played
note wait when it is queued behind a prewarm chunk. Sleeping stands in for the model's
work (a child process's CPU time is not what these tests look at). Picklable, so the
process generator's children can import it (`tests` is on their path).
"""
import time
from typing import Iterator, Sequence

import numpy as np

from singsynth.generation.testing import SineSource
from singsynth.notes import NoteKey


class WorkSineSource(SineSource):
    """`SineSource` whose `stream` sleeps `cost` seconds per note-sample before each chunk.

    Args:
        cost: seconds per (note x sample) of a chunk; 2e-6 makes a 16 x 16,000 chunk
            0.5 s and a 1 x 256 chunk 0.5 ms.
        **kwargs: `SineSource`'s.
    """

    def __init__(self, cost: float = 2e-6, **kwargs):
        super().__init__(**kwargs)
        self.cost = cost

    def stream(self, keys: Sequence[NoteKey], chunk: int = 256) -> Iterator[np.ndarray]:
        for part in super().stream(keys, chunk):
            time.sleep(self.cost * part.shape[0] * part.shape[1])
            yield part


class SlowLoadingSource:
    """A lazy source (as `model.files.LazySource`): the generator child calls `prepare()`,
    which takes `seconds` (a model loading on a busy machine) and gives a `SineSource`."""

    def __init__(self, seconds: float, **kwargs):
        self.seconds = seconds
        self.kwargs = kwargs
        probe = SineSource(**kwargs)
        self.instruments = probe.instruments
        self.sample_rate = probe.sample_rate
        self.note_samples = probe.note_samples
        self.velocities = probe.velocities

    def prepare(self) -> SineSource:
        time.sleep(self.seconds)
        return SineSource(**self.kwargs)
