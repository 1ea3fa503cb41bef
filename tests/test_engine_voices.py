"""Synth voices with the deterministic sine source: timing to the sample, envelopes, controllers."""
import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.engine.mixer import pan_gains
from singsynth.generation.testing import SineSource, pitch_hz

SR = 16000  # same rate as the source: no resampling, so samples can be compared exactly


def make(sr=SR, **kw):
    src = SineSource(sample_rate=16000, note_samples=16000, decay=1.0)
    return Synth(src, sample_rate=sr, offline=True, **kw), src


def run(synth, seconds, block=256):
    n = int(seconds * synth.sample_rate) // block
    return np.concatenate([synth.process(block) for _ in range(n)])


def dominant_hz(x, sr):
    """Frequency of the strongest partial, refined by parabolic interpolation."""
    w = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * w))
    k = int(np.argmax(mag[1:])) + 1
    a, b, c = np.log(mag[k - 1:k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(x)


def max_jump(x):
    return float(np.max(np.abs(np.diff(x[:, 0]))))


def test_note_starts_exactly_at_its_offset_with_the_sources_samples():
    synth, src = make()
    synth.note_on(0, 60, 100, offset=37)
    out = synth.process(256)
    at = 37 + synth.latency  # the limiter's look-ahead delays the whole output
    assert np.all(out[:at] == 0)
    assert out[at, 0] != 0
    key = synth.note_key(0, 60, 100)
    left, right = pan_gains(0.0)
    level = (100 / 127) ** 2  # channel volume 100 (GM default), squared
    expect = src.note(key)[:256 - at] * np.float32(level * left)
    np.testing.assert_allclose(out[at:, 0], expect, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])  # centre pan


def test_offsets_beyond_the_block_carry_over_to_later_blocks():
    synth, _ = make()
    synth.note_on(0, 60, 100, offset=256 * 2 + 5)
    out = run(synth, 0.05)
    assert np.flatnonzero(out[:, 0])[0] == 256 * 2 + 5 + synth.latency


def test_note_off_releases_within_release_time_without_clicks():
    synth, _ = make()
    synth.note_on(0, 69, 127)
    synth.note_off(0, 69, offset=100)
    out = run(synth, 0.5)
    release = synth.preset.defaults.release
    end = 100 + int(release * SR) + synth.latency
    assert np.any(out[end - 200:end - 100] != 0)
    assert np.all(out[end + 1:] == 0)
    assert synth.stats()["voices"] == 0
    natural = 0.5 * 2 * np.pi * pitch_hz(69) / SR  # steepest slope of the sine itself
    assert max_jump(out[synth.latency:]) <= natural * 1.05  # from the note's first sample


def test_velocity_zero_is_note_off():
    synth, _ = make()
    synth.note_on(0, 60, 100)
    synth.note_on(0, 60, 0, offset=10)
    run(synth, 0.5)
    assert synth.stats()["voices"] == 0


def steal_scenario(polyphony):
    synth, _ = make(polyphony=polyphony)
    synth.note_on(0, 60, 127)
    synth.note_on(0, 64, 127)
    synth.note_off(0, 60, offset=10)  # 60 is released: it goes first
    out = [synth.process(256)]
    synth.note_on(0, 67, 127)
    out.append(synth.process(256))
    first = sorted(v.pitch for v in synth.voices if not v.stolen)
    synth.note_on(0, 72, 127)  # none released now: the oldest (64) goes
    out.append(run(synth, 0.05))
    return synth, first, np.concatenate(out)


def test_stealing_takes_released_voices_first_then_the_oldest_and_fades():
    synth, first, stolen = steal_scenario(2)
    assert first == [64, 67]
    assert sorted(v.pitch for v in synth.voices) == [67, 72]
    _, _, kept = steal_scenario(16)
    # What stealing removed is the stolen voices times (1 - fade): it must start from
    # zero and grow smoothly over 5 ms; a cut would jump by the voice's amplitude (~0.3).
    removed = kept - stolen
    assert np.abs(removed).max() > 0.1
    assert max_jump(removed) < 0.5 * 2 * np.pi * pitch_hz(64) / SR + 0.02


def test_same_key_struck_again_retriggers_with_a_fade():
    synth, _ = make()
    synth.note_on(0, 69, 127)
    synth.process(256)
    synth.note_on(0, 69, 127, offset=200)  # the 5 ms (80 samples) fade runs past the block
    out = synth.process(256)
    assert len(synth.voices) == 2 and synth.voices[0].stolen
    out = np.concatenate([out, run(synth, 0.05)])
    assert len(synth.voices) == 1
    # The same notes on two channels (no retrigger) minus the retriggered render: the
    # old voice's fade, which must be smooth.
    other, _ = make()
    other.note_on(0, 69, 127)
    other.process(256)
    other.note_on(1, 69, 127, offset=200)
    both = np.concatenate([other.process(256), run(other, 0.05)])
    removed = both - out
    assert np.abs(removed).max() > 0.1
    assert max_jump(removed) < 0.5 * 2 * np.pi * 440 / SR + 0.02


def test_sustain_pedal_holds_released_notes_until_it_goes_up():
    synth, _ = make()
    synth.control_change(0, 64, 127)
    synth.note_on(0, 60, 100)
    synth.note_off(0, 60, offset=50)
    held = run(synth, 0.5)
    assert synth.stats()["voices"] == 1 and np.abs(held[-256:]).max() > 0.05
    synth.control_change(0, 64, 0)
    run(synth, 0.5)
    assert synth.stats()["voices"] == 0


def test_notes_held_beyond_the_recording_keep_sounding_in_a_smooth_loop():
    synth, _ = make()
    synth.note_on(0, 69, 127)
    out = run(synth, 3.0)  # the note is 1 s long
    assert synth.stats()["voices"] == 1
    tail = out[-SR // 2:, 0]
    assert np.sqrt(np.mean(tail ** 2)) > 0.05
    assert abs(dominant_hz(tail, SR) - 440) < 2
    assert max_jump(out[synth.latency:]) <= 1.05 * 0.5 * 2 * np.pi * 440 / SR
    synth.note_off(0, 69)
    run(synth, 0.5)
    assert synth.stats()["voices"] == 0



def test_offline_reads_of_4096_samples_loop_and_bend_like_live_sized_ones():
    """An offline synth reads up to OFFLINE_BLOCK samples at once, at up to 4x speed
    through the sustain loop (a 3,200-sample loop here): the same sound as 256-sample reads."""
    from singsynth.engine.voice import MAX_RATE, OFFLINE_BLOCK

    outs = []
    for block in (256, 2 * OFFLINE_BLOCK):
        synth, _ = make()
        assert synth.max_block == OFFLINE_BLOCK
        for cc, v in ((101, 0), (100, 0), (6, 24), (38, 0)):  # bend range +-24 semitones
            synth.control_change(0, cc, v)
        synth.note_on(0, 45, 127)
        synth.pitch_bend(0, 8191)
        outs.append(run(synth, 3.0, block=block))
        assert synth.voices[0].looping and synth.voices[0].rate > 0.99 * MAX_RATE
    n = min(len(o) for o in outs)
    assert np.sqrt(np.mean(outs[0][n // 2:n, 0] ** 2)) > 0.05  # still sounding, in the loop
    assert np.allclose(outs[0][:n], outs[1][:n], rtol=0, atol=1e-5)

@pytest.mark.parametrize("bend,semitones,rpn", [(4096, 1.0, None), (-8192, -2.0, None), (8191, 12 * 8191 / 8192, 12)])
def test_pitch_bend_shifts_the_measured_frequency(bend, semitones, rpn):
    synth, _ = make()
    if rpn is not None:  # RPN 0: pitch bend sensitivity
        for cc, v in ((101, 0), (100, 0), (6, rpn), (38, 0)):
            synth.control_change(0, cc, v)
    synth.note_on(0, 57, 127)
    synth.pitch_bend(0, bend)
    out = run(synth, 0.6)[1000:1000 + 8192, 0]
    expect = pitch_hz(57) * 2 ** (semitones / 12)
    assert abs(dominant_hz(out, SR) / expect - 1) < 0.002


def test_volume_expression_and_pan_scale_the_channels():
    synth, src = make()
    synth.control_change(0, 7, 127)
    synth.control_change(0, 11, 64)
    synth.control_change(0, 10, 127)  # hard right
    synth.note_on(0, 60, 100)
    out = synth.process(256)[synth.latency:]
    note = src.note(synth.note_key(0, 60, 100))[:len(out)]
    assert np.abs(out[:, 0]).max() < 1e-6
    np.testing.assert_allclose(out[:, 1], note * (64 / 127) ** 2, rtol=1e-5, atol=1e-7)


def test_all_sound_off_and_all_notes_off():
    synth, _ = make()
    synth.note_on(0, 60, 100)
    synth.note_on(1, 62, 100)
    synth.process(256)
    synth.control_change(0, 120, 0)  # channel 0 only, a 5 ms fade
    run(synth, 0.02)
    assert [v.channel for v in synth.voices] == [1]
    synth.control_change(1, 123, 0)
    synth.process(256)
    assert all(v.released for v in synth.voices)


def test_same_events_render_identical_audio_twice():
    def render():
        synth, _ = make(sr=48000)
        events = [(0, 60, 100, 0), (0, 64, 80, 17), (1, 67, 30, 200)]
        for ch, p, v, off in events:
            synth.note_on(ch, p, v, offset=off)
        synth.pitch_bend(0, 1000, offset=900)
        synth.note_off(0, 60, offset=3000)
        return run(synth, 0.3)
    a, b = render(), render()
    assert np.abs(a).max() > 0.01
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sr", [44100, 48000])
def test_output_rates_keep_pitch_and_timing(sr):
    synth, _ = make(sr=sr)
    synth.note_on(0, 69, 127, offset=123)
    out = run(synth, 0.5)
    assert np.flatnonzero(out[:, 0])[0] == 123 + synth.latency
    assert abs(dominant_hz(out[1000:1000 + 16384, 0], sr) - 440) < 1.0


def test_limiter_keeps_64_loud_voices_inside_minus_one_one():
    synth, _ = make(sr=48000)
    for i in range(64):
        synth.note_on(i % 16, 36 + i, 127)
        synth.control_change(i % 16, 7, 127)
    out = run(synth, 0.3)
    assert np.abs(out).max() <= 1.0
    assert np.abs(out).max() > 0.5
    assert synth.stats()["limiter_blocks"] > 0


def test_velocity_maps_to_levels_between_trained_velocities():
    synth, _ = make()
    assert synth.note_key(0, 60, 127).velocity == 4.0
    assert synth.note_key(0, 60, 1).velocity == 0.0
    indices = {synth.note_key(0, 60, v).velocity for v in range(1, 128)}
    # 16 levels; the 3 below velocity 25 share the softest note and differ by gain.
    assert len(indices) == 14
    assert synth.note_key(0, 60, 64).velocity == pytest.approx(1.5, abs=0.3)


def test_levels_below_the_softest_trained_velocity_play_quieter():
    peaks = []
    for velocity in (5, 15, 30):
        synth, _ = make()
        synth.note_on(0, 60, velocity)
        peaks.append(np.abs(synth.process(256)).max())
    assert peaks[0] < peaks[1] < peaks[2]


def test_handle_dispatches_mido_messages_like_the_methods():
    import mido

    a, _ = make()
    b, _ = make()
    msgs = [mido.Message("program_change", channel=2, program=5),
            mido.Message("control_change", channel=2, control=10, value=20),
            mido.Message("note_on", channel=2, note=64, velocity=90),
            mido.Message("pitchwheel", channel=2, pitch=3000),
            mido.Message("note_off", channel=2, note=64, velocity=0),
            mido.Message("sysex", data=[1, 2, 3])]  # ignored
    for m in msgs:
        a.handle(m, offset=7)
    b.program_change(2, 5, offset=7)
    b.control_change(2, 10, 20, offset=7)
    b.note_on(2, 64, 90, offset=7)
    b.pitch_bend(2, 3000, offset=7)
    b.note_off(2, 64, offset=7)
    out_a, out_b = run(a, 0.1), run(b, 0.1)
    np.testing.assert_array_equal(out_a, out_b)
    assert np.all(out_a[:7] == 0) and np.abs(out_a).max() > 0


def test_events_from_another_thread_all_arrive():
    import threading

    synth, _ = make()

    def press():
        for i in range(200):
            synth.note_on(i % 16, 40 + i % 40, 100)
            synth.note_off(i % 16, 40 + i % 40)

    thread = threading.Thread(target=press)
    thread.start()
    while thread.is_alive():
        synth.process(64)
    thread.join()
    synth.process(64)
    assert synth.stats()["cache_misses"] + synth.stats()["cache_hits"] == 200
    assert synth.stats()["dropped_events"] == 0
