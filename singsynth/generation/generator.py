"""The contract between the engine and a note generator, and the way to make one.

The engine (`engine.synth.Synth`, through `engine.lookup.NoteLookup`) talks to a generator
only through `NoteGenerator`: it asks for notes, looks up a note already asked for, and
collects the notes that have ended. Two implementations keep it:
- `thread.ThreadGenerator`: a background thread of this process (renders, tests, and
  `play --generator thread`);
- `process.ProcessGenerator`: child processes (live play), so that torch never holds
  the audio thread's GIL.
Both make the same notes from the same `NoteSource`.
"""
from __future__ import annotations

from typing import List, Optional, Protocol, Sequence, runtime_checkable

from singsynth.generation.note import Note
from singsynth.generation.source import NoteSource
from singsynth.notes import NoteKey

KINDS = ("thread", "process")


@runtime_checkable
class NoteGenerator(Protocol):
    """Makes notes in the background. Every method returns at once (the audio thread
    calls `request`, `queued` and `collect` in its block).

    Attributes:
        sample_rate: rate of the notes it writes (the engine's output rate), Hz.
        generated: notes made so far.
        busy: notes queued or being made.
    """

    sample_rate: int
    generated: int

    def request(self, notes: Sequence[Note]) -> None:
        """Make `notes` (played notes, QUEUED, one batch) as soon as possible; a note
        already queued for prewarm moves up."""

    def request_prewarm(self, keys: Sequence[NoteKey]) -> None:
        """Make `keys` when nothing played is waiting (keys already cached, queued or being
        made are skipped)."""

    def queued(self, key: NoteKey) -> Optional[Note]:
        """The note a request for `key` made, while it is queued or being made; else None."""

    def collect(self) -> List[Note]:
        """The notes that ended (DONE or FAILED) since the last call, oldest first."""

    @property
    def busy(self) -> int:
        """Notes queued or being made."""

    def close(self) -> None:
        """Stop; a note being made is abandoned."""


def make_generator(kind: str, source: NoteSource, sample_rate: int, **options) -> NoteGenerator:
    """A `NoteGenerator` of `kind` ("thread" or "process") making `source`'s notes at
    `sample_rate`; `options` are the generator's own (see `ThreadGenerator`,
    `ProcessGenerator`)."""
    if kind == "thread":
        from singsynth.generation.thread import ThreadGenerator
        options.pop("helper_priority", None)
        return ThreadGenerator(source, sample_rate, **options)
    if kind == "process":
        from singsynth.generation.process import ProcessGenerator
        return ProcessGenerator(source, sample_rate, **options)
    raise ValueError(f"generator must be 'thread' or 'process', not {kind!r}")
