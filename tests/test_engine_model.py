"""The engine driven by a real (random-init) tiny SING checkpoint through ModelSource."""

import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.model.source import ModelSource
from tests.engine_fixtures import pump


@pytest.fixture(scope="module")
def source(tiny_model):
    return ModelSource(tiny_model, device="cpu")


def play(synth):
    synth.program_change(0, 0)
    synth.note_on(0, 60, 100, offset=100)
    synth.note_on(0, 64, 70, offset=300)
    synth.note_on(1, 67, 127, offset=300)
    synth.pitch_bend(1, 2000, offset=2000)
    synth.note_off(0, 60, offset=6000)
    return np.concatenate([synth.process(512) for _ in range(30)])


def test_offline_render_from_the_tiny_model_is_audible_bounded_and_reproducible(source):
    a = play(Synth(source, 48000, offline=True))
    b = play(Synth(source, 48000, offline=True))
    assert np.all(np.isfinite(a)) and np.abs(a).max() <= 1.0
    assert np.all(a[:100] == 0)
    assert np.sqrt(np.mean(a[100:] ** 2)) > 1e-4
    np.testing.assert_array_equal(a, b)


def test_offline_note_is_the_models_note_resampled(source):
    synth = Synth(source, 16000, offline=True)  # no resampling: compare samples
    synth.control_change(0, 7, 127)
    synth.control_change(0, 10, 127)  # hard right: right gain 1
    synth.note_on(0, 62, 100, offset=10)
    out = synth.process(2048)[10 + synth.latency:]  # the limiter's look-ahead delays it
    note = source.render([synth.note_key(0, 62, 100)])[0]
    assert np.abs(note).max() < synth.limiter.ceiling  # so the limiter leaves it alone
    np.testing.assert_allclose(out[:, 1], note[:len(out)], atol=1e-6)


def test_live_cold_note_streams_from_the_model_then_is_cached(source):
    with Synth(source, 16000, cold="stream", chunk=4000) as synth:
        synth.note_on(0, 65, 90)
        key = synth.note_key(0, 65, 90)
        pump(synth, lambda out: key in synth.cache, limit=60)
        assert synth.stats()["cache_misses"] == 1
        streamed = synth.cache.get(key).data[:source.note_samples]
        rendered = source.render([key])[0]
        np.testing.assert_allclose(streamed, rendered, atol=1e-4)


def test_prewarmed_keys_play_as_cache_hits(source):
    with Synth(source, 48000, batch_size=8) as synth:
        keys = [synth.note_key(0, p, 100) for p in (48, 52, 55)]
        assert synth.prepare(keys, progress=False) == 3
        for p in (48, 52, 55):
            synth.note_on(0, p, 100)
        out = synth.process(256)
        assert synth.stats()["cache_hits"] == 3 and synth.stats()["cache_misses"] == 0
        assert np.abs(out).max() > 0


def test_resampling_notes_on_threads_gives_the_same_samples():
    from singsynth.generation.thread import resample_notes
    notes = np.random.default_rng(0).standard_normal((5, 16000)).astype(np.float32) * 0.1
    one = resample_notes(notes, 16000, 48000, threads=1)
    assert one.shape == (5, 48000) and one.dtype == np.float32
    assert np.array_equal(resample_notes(notes, 16000, 48000, threads=2), one)
