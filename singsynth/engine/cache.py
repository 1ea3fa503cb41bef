"""The byte-bounded, least-recently-used cache of finished notes.

No torch here: the audio thread reads these arrays while mixing.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

from singsynth.generation.note import Note
from singsynth.notes import NoteKey


class NoteCache:
    """Finished notes by key, within a byte budget, evicting the least recently used.

    Only the audio thread mutates it (finished notes reach it through a queue), so no lock
    is needed; other threads may read `__contains__` and the counters.

    Args:
        budget_bytes: most bytes of note data kept (default 1 GiB).
    """

    def __init__(self, budget_bytes: int = 1 << 30):
        self.budget_bytes = int(budget_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._notes: "OrderedDict[NoteKey, Note]" = OrderedDict()

    def get(self, key: NoteKey) -> Optional[Note]:
        """The cached note for `key`, marked most recently used, or None (counts hit/miss)."""
        note = self._notes.get(key)
        if note is None:
            self.misses += 1
            return None
        self.hits += 1
        self._notes.move_to_end(key)
        return note

    def put(self, note: Note) -> bool:
        """Keep a finished note, evicting least recently used notes to stay in budget.

        Returns False (and keeps nothing) when the note alone exceeds the budget.
        """
        size = note.nbytes
        if size > self.budget_bytes:
            return False
        old = self._notes.pop(note.key, None)
        if old is not None:
            self.bytes -= old.nbytes
        while self._notes and self.bytes + size > self.budget_bytes:
            _, evicted = self._notes.popitem(last=False)
            self.bytes -= evicted.nbytes
            self.evictions += 1
        self._notes[note.key] = note
        self.bytes += size
        return True

    def keys(self):
        """Cached keys, least recently used first."""
        return list(self._notes.keys())

    def __contains__(self, key) -> bool:
        return key in self._notes

    def __len__(self) -> int:
        return len(self._notes)
