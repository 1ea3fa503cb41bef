"""Where the note for a key is: the one question the engine asks before a voice starts.

A key's note is cached (whole), in flight (a voice or an early `prefetch` already asked
for it and it is being made), or not asked for yet. `NoteLookup.find` answers for all
three places at once; `Synth` asks nothing else. Finished notes come back through
`collect`, which moves them from in flight to the cache.

Threads: `find` and `collect` run on the audio thread, which alone mutates the cache and
the in-flight table; `prefetch` runs on the MIDI thread and only reads them and writes
its own table (dict operations are atomic under the GIL).
"""
from __future__ import annotations

from collections import deque
from typing import Dict, Optional, Tuple

from singsynth.engine.cache import NoteCache
from singsynth.generation.generator import NoteGenerator
from singsynth.generation.note import DONE, Note
from singsynth.notes import NoteKey

CACHED = "cached"        # whole, in the cache
IN_FLIGHT = "in flight"  # being made for a voice or a prefetch: play it as it streams
REQUEST = "request"      # not asked for as a played note yet: the caller requests it


class NoteLookup:
    """The cache, the notes in flight and the generator, behind one question.

    Args:
        cache: the engine's `NoteCache`.
        generator: the `NoteGenerator`, or None offline (notes are rendered in place).
    """

    def __init__(self, cache: NoteCache, generator: Optional[NoteGenerator]):
        self.cache = cache
        self.generator = generator
        self.inflight: Dict[NoteKey, Note] = {}    # asked for by a voice (audio thread)
        self.prefetched: Dict[NoteKey, Note] = {}  # asked for by `prefetch` (MIDI thread)
        self.made: deque = deque()  # whole notes made outside the generator (`Synth.prepare`)

    def find(self, key: NoteKey) -> Tuple[Optional[Note], str]:
        """The note for `key` and where it is: (note, CACHED), (note, IN_FLIGHT), or
        (note, REQUEST) for a note now in flight that the caller must request (a new
        one, or one queued for prewarm, which a request moves up). Offline (no
        generator) a note not cached is (None, REQUEST). Audio thread."""
        note = self.cache.get(key)
        if note is not None:
            return note, CACHED
        note = self.inflight.get(key)
        if note is not None:
            return note, IN_FLIGHT
        if self.generator is None:
            return None, REQUEST
        note = self.prefetched.get(key)
        if note is not None:  # already requested by `prefetch`
            self.inflight[key] = note
            return note, IN_FLIGHT
        note = self.generator.queued(key) or Note(key)
        self.inflight[key] = note
        return note, REQUEST

    def prefetch(self, key: NoteKey) -> None:
        """Request `key` now, before a note-on asks for it (any thread; never blocks)."""
        if self.generator is None:
            return
        if key in self.cache or key in self.inflight or key in self.prefetched:
            return
        note = self.generator.queued(key) or Note(key)  # a queued prewarm note moves up
        self.prefetched[key] = note
        self.generator.request([note])

    def collect(self) -> None:
        """Move the notes that ended into the cache (a failed one is dropped: a later
        note-on asks again). Audio thread, once per block."""
        if self.generator is None:
            return
        made = self.made
        ended = self.generator.collect()
        while made:
            ended.append(made.popleft())
        for note in ended:
            if self.inflight.get(note.key) is note:
                del self.inflight[note.key]
            if self.prefetched.get(note.key) is note:
                del self.prefetched[note.key]
            if note.state == DONE:
                self.cache.put(note)
