"""Pitch bends over the whole RPN 0 range (0-127 semitones) never crash the audio path."""
import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.engine.voice import MAX_RATE
from singsynth.generation.testing import SineSource
from tests.engine_fixtures import wait_until

SR = 16000  # the source's rate: no resampling, so the test stays fast


def set_bend_range(synth, channel, semitones, cents=0):
    for cc, v in ((101, 0), (100, 0), (6, semitones), (38, cents)):
        synth.control_change(channel, cc, v)


def play(synth, seconds, block):
    """`seconds` of audio in `block`-sample calls -> float32 (samples, 2)."""
    return np.concatenate([synth.process(block) for _ in range(int(seconds * SR) // block + 1)])


def bend_rounds(synth, block):
    """Every bend range 0..127 (16 channels at a time) at both wheel extremes: the wheel
    moved while the note sounds (`_rebend`), then a note struck with the wheel held
    (note-on), held through the sustain loop, released. Returns the peak output."""
    peak = 0.0
    for wheel in (-8192, 8191):
        for first in range(0, 128, 16):
            for c in range(16):
                set_bend_range(synth, c, first + c, cents=127 if c == 15 else 0)
                synth.note_on(c, 60, 127)
            out = [synth.process(block)]
            for c in range(16):
                synth.pitch_bend(c, wheel)
            out.append(play(synth, 0.15, block))  # the 0.25 s note loops after 0.125 s
            for c in range(16):
                synth.note_on(c, 64, 127)         # the wheel held: a bent note-on
            out.append(play(synth, 0.15, block))
            assert all(v.rate <= MAX_RATE for v in synth.voices)
            for c in range(16):
                synth.note_off(c, 60)
                synth.note_off(c, 64)
                synth.pitch_bend(c, 0)
                synth.control_change(c, 120, 0)
            out.append(play(synth, 0.02, block))
            out = np.concatenate(out)
            assert np.isfinite(out).all()
            peak = max(peak, float(np.abs(out).max()))
    return peak


@pytest.mark.parametrize("block", [64, 1024, 8192])
def test_every_bend_range_at_the_wheel_extremes_plays_offline(block):
    synth = Synth(SineSource(sample_rate=SR, note_samples=4000), SR, offline=True)
    assert bend_rounds(synth, block) > 0.05


@pytest.mark.parametrize("block", [64, 256, 1024])
def test_every_bend_range_at_the_wheel_extremes_plays_live(block):
    with Synth(SineSource(sample_rate=SR, note_samples=4000), SR) as synth:
        keys = [synth.note_key(c, p, 127) for c in range(16) for p in (60, 64)]
        synth.prepare(keys, progress=False)

        def cached():
            synth.process(64)  # the audio thread moves finished notes into the cache
            return all(k in synth.cache for k in keys)
        assert wait_until(cached)
        assert bend_rounds(synth, block) > 0.05


def test_a_bend_beyond_24_semitones_plays_at_24():
    synth = Synth(SineSource(sample_rate=SR, note_samples=4000), SR, offline=True)
    set_bend_range(synth, 0, 25)
    synth.note_on(0, 60, 127)
    synth.pitch_bend(0, 8191)  # the campaign's case: +25 semitones, held until note-off
    play(synth, 0.3, 256)
    assert synth.voices[0].looping and synth.voices[0].rate == MAX_RATE
    synth.note_off(0, 60)
    assert np.isfinite(play(synth, 0.3, 256)).all()
