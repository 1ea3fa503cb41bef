"""Live mode: the background generator, cold notes streaming, batching and priorities."""
import threading
import time

import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.generation.testing import SineSource
from tests.engine_fixtures import pump, wait_until


@pytest.fixture
def gated():
    gate = threading.Event()
    src = SineSource(note_samples=16000, gate=gate, gate_after=16)  # 16 chunks of 256
    synth = Synth(src, 48000)
    yield synth, src, gate
    gate.set()
    synth.close()


def test_cold_note_sounds_before_it_finishes_generating_then_is_cached(gated):
    synth, src, gate = gated
    synth.note_on(0, 60, 100)
    key = synth.note_key(0, 60, 100)
    out = pump(synth, lambda out: np.abs(out).max() > 0)[-1]
    # The source is held after its first chunks: the note is audible mid-generation.
    assert src.streams_finished == 0
    assert key not in synth.cache
    assert synth.stats()["generating"] == 1
    # The first samples equal those the finished note will have.
    first = out[:, 0][np.flatnonzero(out[:, 0])[0]]
    gate.set()
    pump(synth, lambda out: key in synth.cache)
    note = synth.cache.get(key)
    level = (100 / 127) ** 2 * np.cos(np.pi / 4)
    assert first == pytest.approx(note.data[0] * level, rel=1e-5)
    assert synth.stats()["generating"] == 0


def test_the_generator_warms_the_source_up_both_ways_before_any_note_and_keeps_nothing():
    src = SineSource(note_samples=8000)
    with Synth(src, 48000) as synth:
        wait_until(lambda: len(src.warm_ups) == 2)
        assert src.warm_ups == [("stream", 1), ("render", 1)]  # the cold paths, each once
        assert src.calls == [] and len(synth.cache) == 0
        assert synth.stats()["generated"] == 0 and synth.generator.latency["stream"] is None
        synth.note_on(0, 60, 100)
        key = synth.note_key(0, 60, 100)
        pump(synth, lambda out: key in synth.cache)
        assert src.calls == [("stream", 1)] and len(src.warm_ups) == 2
        assert len(synth.cache) == 1 and synth.stats()["generated"] == 1


def test_prefetch_starts_generating_before_the_note_on_and_the_note_on_reuses_it(gated):
    synth, src, gate = gated
    synth.prefetch(0, 60, 100)  # as play's MIDI thread does, before any process() call
    wait_until(lambda: src.calls)
    assert src.calls == [("stream", 1)]
    synth.prefetch(0, 60, 100)  # twice: still one request
    synth.note_on(0, 60, 100)
    pump(synth, lambda out: np.abs(out).max() > 0)
    gate.set()
    key = synth.note_key(0, 60, 100)
    pump(synth, lambda out: key in synth.cache)
    assert src.calls == [("stream", 1)]  # the note-on played the prefetched note
    assert synth.stats()["generated"] == 1 and synth.notes.prefetched == {}
    synth.prefetch(0, 60, 100)  # cached now, and velocity 0 is a note-off: nothing asked
    synth.prefetch(0, 62, 0)
    time.sleep(0.05)
    assert src.calls == [("stream", 1)]


def test_an_unclaimed_prefetch_ends_in_the_cache():
    src = SineSource(note_samples=8000)
    with Synth(src, 48000) as synth:
        synth.prefetch(3, 70, 64)
        key = synth.note_key(3, 70, 64)
        pump(synth, lambda out: key in synth.cache)
        assert synth.notes.prefetched == {} and synth.stats()["voices"] == 0


def test_warm_note_starts_in_the_very_next_block_at_its_offset():
    src = SineSource(note_samples=8000)
    with Synth(src, 48000) as synth:
        key = synth.note_key(0, 64, 90)
        synth.prepare([key], progress=False)
        synth.process(256)  # the audio thread takes the prepared note into the cache
        synth.note_on(0, 64, 90, offset=50)
        out = synth.process(256)
        assert np.flatnonzero(out[:, 0])[0] == 50 + synth.latency  # the limiter's look-ahead
        assert synth.stats()["cache_hits"] == 1


def test_a_chord_is_generated_in_one_batch():
    src = SineSource(note_samples=8000)
    with Synth(src, 48000) as synth:  # struck in one block: one request, no wait window
        for p in (60, 64, 67, 72):
            synth.note_on(0, p, 100)
        pump(synth, lambda out: len(synth.cache) == 4)
        assert src.calls == [("stream", 4)]


def test_a_note_on_from_another_thread_starts_generating_before_the_next_block(gated):
    synth, src, gate = gated
    audio = threading.Thread(target=synth.process, args=(256,))
    audio.start()  # one block from an "audio thread": the synth learns which thread that is
    audio.join()
    synth.note_on(0, 60, 100)  # from this (MIDI) thread; no process() call follows
    wait_until(lambda: src.calls)
    assert src.calls == [("stream", 1)]
    gate.set()
    key = synth.note_key(0, 60, 100)
    pump(synth, lambda out: key in synth.cache)  # the note-on plays that same note
    assert src.calls == [("stream", 1)] and synth.stats()["voices"] == 1


def test_a_chord_struck_from_the_audio_thread_is_still_one_batch():
    src = SineSource(note_samples=8000)
    with Synth(src, 48000) as synth:
        synth.process(256)  # this thread is now the audio thread
        for p in (60, 64, 67):
            synth.note_on(0, p, 100)
        time.sleep(0.05)
        assert src.calls == []  # nothing asked before the block that applies them
        pump(synth, lambda out: len(synth.cache) == 3)
        assert src.calls == [("stream", 3)]


def test_played_notes_go_before_prewarm():
    src = SineSource(note_samples=4000, chunk_delay=0.002)
    with Synth(src, 48000, batch_size=4) as synth:
        queued = synth.prewarm()
        assert len(queued) == 61 * 14  # the 3 levels below velocity 25 share a note
        synth.note_on(0, 20, 100)  # outside the prewarm range [36, 96]
        key = synth.note_key(0, 20, 100)
        pump(synth, lambda out: key in synth.cache)
        # Prewarm had barely started when the played note was done.
        assert synth.stats()["generating"] > len(queued) // 2
        assert ("stream", 1) in src.calls


def test_prewarm_fills_the_cache_and_played_notes_then_hit():
    src = SineSource(note_samples=2000)
    with Synth(src, 48000, batch_size=16) as synth:
        queued = synth.prewarm()
        pump(synth, lambda out: synth.stats()["generating"] == 0 and len(synth.cache) == len(queued),
             limit=60)
        synth.note_on(0, 60, 100)
        synth.process(256)
        stats = synth.stats()
        assert stats["cache_misses"] == 0 and stats["cache_hits"] == 1
        assert stats["generated"] == len(queued)


def test_a_stream_slower_than_real_time_starts_late_but_never_gaps():
    src = SineSource(note_samples=8000, chunk_delay=0.03)  # 0.5 s of audio in ~1 s
    with Synth(src, 48000, cold="stream") as synth:
        synth.note_on(0, 60, 100)
        key = synth.note_key(0, 60, 100)
        blocks = []
        pump(synth, lambda out: blocks.append(np.abs(out).max()) or key in synth.cache)
        assert synth.stats()["generating"] == 0
        synth.note_off(0, 60)
        pump(synth, lambda out: blocks.append(np.abs(out).max()) or not synth.voices)
        sounding = np.flatnonzero(np.array(blocks) > 0)
        assert len(sounding) > 10
        # From its first sample to its end the note never paused for generation.
        assert np.all(np.array(blocks[sounding[0]:sounding[-1]]) > 0)
        assert synth.stats()["stalls"] == 0


def test_auto_mode_measures_stream_and_render_then_keeps_the_faster():
    src = SineSource(note_samples=8000, chunk_delay=0.03)  # streaming is slow, render instant
    with Synth(src, 48000, cold="auto") as synth:
        for pitch in (60, 62, 64):
            synth.note_on(0, pitch, 100)
            key = synth.note_key(0, pitch, 100)
            pump(synth, lambda out: key in synth.cache)
        assert src.calls == [("stream", 1), ("render", 1), ("render", 1)]
        latency = synth.generator.latency
        assert latency["render"] < latency["stream"]


def test_auto_mode_keeps_streaming_when_it_is_fast():
    src = SineSource(note_samples=8000)
    with Synth(src, 48000, cold="auto") as synth:
        for pitch in (60, 62, 64):
            synth.note_on(0, pitch, 100)
            key = synth.note_key(0, pitch, 100)
            pump(synth, lambda out: key in synth.cache)
        assert src.calls == [("stream", 1)] * 3
