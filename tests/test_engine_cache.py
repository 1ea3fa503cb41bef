"""NoteCache budget and LRU order, and the Synth's use of it (hits, misses, prepare)."""
import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.engine.cache import NoteCache
from singsynth.generation.note import DONE, Note
from singsynth.generation.testing import SineSource
from singsynth.notes import NoteKey, single


def note(pitch, samples=1000):
    return Note.complete(NoteKey(single(0), pitch, 2.0), np.full(samples, pitch, np.float32))


def test_cache_evicts_least_recently_used_within_its_byte_budget():
    size = note(9).nbytes
    cache = NoteCache(budget_bytes=3 * size + size // 2)
    for p in (1, 2, 3):
        assert cache.put(note(p))
    assert cache.get(note(1).key) is not None  # 1 is now the most recently used
    cache.put(note(4))
    assert [k.pitch for k in cache.keys()] == [3, 1, 4]
    assert cache.evictions == 1
    assert cache.bytes == 3 * size <= cache.budget_bytes
    assert cache.get(note(2).key) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_cache_refuses_a_note_larger_than_the_budget():
    cache = NoteCache(budget_bytes=100)
    assert not cache.put(note(1))
    assert len(cache) == 0 and cache.bytes == 0


def test_cached_note_keeps_its_samples_and_a_seamless_loop():
    data = np.sin(np.arange(48000) * 0.05).astype(np.float32)
    n = Note.complete(NoteKey(single(0), 60, 1.0), data)
    assert n.state == DONE and n.length == 48000
    # The loop's last sample is the one just before loop_start: jumping back is seamless.
    tail = n.tail
    assert tail[n.loop_end - n.xfade_start - 1] == data[n.loop_start - 1]
    assert tail[n.loop_end - n.xfade_start] == data[n.loop_start]
    assert 0 < n.loop_start < n.loop_end < n.length


def test_synth_counts_hits_and_misses_and_keeps_within_budget():
    src = SineSource(note_samples=8000)
    probe = Synth(src, 48000, offline=True)
    probe.note_on(0, 60, 100)
    probe.process(256)
    one = probe.stats()["cache_bytes"]  # one note at 48 kHz with its loop tail
    assert one > 8000 * 3 * 4
    synth = Synth(src, 48000, offline=True, cache_bytes=int(one * 4.5))
    for p in range(60, 66):
        synth.note_on(0, p, 100)
        synth.process(256)
    synth.note_on(0, 65, 100)
    synth.process(256)
    stats = synth.stats()
    assert stats["cache_misses"] == 6 and stats["cache_hits"] == 1
    assert stats["cache_evictions"] == 2
    assert stats["cache_bytes"] <= int(one * 4.5)
    assert [k.pitch for k in synth.cache.keys()] == [62, 63, 64, 65]


def test_prepare_renders_uncached_keys_in_batches_and_then_plays_from_cache():
    src = SineSource(note_samples=4000)
    synth = Synth(src, 48000, offline=True, batch_size=4)
    keys = [synth.note_key(0, p, 100) for p in range(60, 70)]
    assert synth.prepare(keys + keys[:3], progress=False) == 10
    assert src.calls == [("render", 4), ("render", 4), ("render", 2)]
    assert synth.prepare(keys, progress=False) == 0
    synth.note_on(0, 61, 100)
    synth.process(256)
    assert synth.stats()["cache_hits"] == 1 and synth.stats()["cache_misses"] == 0
    assert len(src.calls) == 3


@pytest.mark.parametrize("samples,margin", [(192001, 16386), (48000, 2100), (100, 2100)])
def test_note_nbytes_is_what_a_finished_note_holds(samples, margin):
    from singsynth.generation.note import note_nbytes
    note = Note.complete(NoteKey(single(0), 60, 1.0), np.ones(samples, np.float32), margin)
    assert note_nbytes(samples, margin) == note.nbytes


def test_a_note_that_ends_in_silence_is_a_one_shot_and_its_voice_ends_there():
    """A gated note (model/gate.py: exact zeros once it has died away) gets no sustain
    loop, and a held voice playing it finishes at its last sound, not at 4 s or never."""
    from singsynth.engine.voice import Voice
    data = np.zeros(48000, np.float32)
    data[:9000] = np.linspace(1, 0.01, 9000)         # over at 19 % of the note
    hit = Note.complete(NoteKey(single(0), 36, 2.0), data)
    assert hit.length == 9000 and hit.loop_end == 0 and len(hit.tail) == 0
    voice = Voice(hit, channel=9, pitch=36, amp=1.0, release=480)
    blocks = 0
    while not voice.finished and blocks < 1000:
        voice.read(256)
        blocks += 1
    assert blocks == -(-9000 // 256)                  # held, never released
    held = Note.complete(NoteKey(single(0), 60, 2.0), np.full(48000, 0.5, np.float32))
    assert held.length == 48000 and held.loop_end > 0
    data[40000] = 0.001                                 # sounds again inside the loop
    assert Note.complete(NoteKey(single(0), 37, 2.0), data).loop_end > 0
