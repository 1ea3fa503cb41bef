"""Cutting notes out of FluidSynth's stream, loudness and drop rules (no FluidSynth needed)."""
import numpy as np
import pytest

from singsynth.data import soundfont as sfr


def fake_render(rate, onsets_ms, late, seed=0):
    """A mono 'render': noise from each onset (+late samples) for 4.01 s, silence between."""
    rng = np.random.default_rng(seed)
    total = (onsets_ms[-1] + sfr.PERIOD_MS) * rate // 1000
    x = np.zeros(total, np.float32)
    for k, ms in enumerate(onsets_ms):
        if k == 2:
            continue                   # one silent note
        s = ms * rate // 1000 + late
        x[s:s + 4010 * rate // 1000] = rng.uniform(-0.5, 0.5, 4010 * rate // 1000)
    return x


@pytest.mark.parametrize("rate", [16000, 32000])
@pytest.mark.parametrize("block", [1000, 77777])
def test_streamed_cut_matches_whole_and_finds_onsets(rate, block):
    onsets = [sfr.LEAD_MS + k * sfr.PERIOD_MS for k in range(6)]
    x = fake_render(rate, onsets, late=65)
    whole = sfr.cut_notes([x], rate, onsets)
    streamed = sfr.cut_notes([x[i:i + block] for i in range(0, len(x), block)], rate, onsets)
    for a, b in zip(whole, streamed):
        np.testing.assert_array_equal(a, b)
    audio, raw_rms, found = streamed
    assert found.tolist() == [True, True, False, True, True, True]
    assert audio.shape == (6, 64000)
    if rate == 16000:  # no resampling: the window starts exactly at the onset
        s = onsets[3] * rate // 1000 + 65
        np.testing.assert_array_equal(audio[3], x[s:s + 64000])
    assert np.all(np.abs(audio[[0, 1, 3, 4, 5], :100]).max(axis=1) > 0.1)


def test_classify_drops_silent_and_out_of_band_notes():
    audio = np.zeros((4, 64000), np.float32)
    audio[0] = 0.1
    audio[1] = 1e-6            # 100 dB below note 0: silent
    audio[2] = 0.1
    audio[3] = 0.1
    raw = np.array([0.1, 1e-6, 0.1, 1.0])     # note 3 lost 90% of its level to the resampler
    found = np.array([True, True, False, True])
    assert sfr.classify(audio, raw, found, resampled=True) == [None, "silent", "silent", "above 8 kHz"]
    assert sfr.classify(audio, raw, found, resampled=False)[3] is None


def test_instrument_gain_is_one_gain_bounded_by_peak():
    quiet = np.full((2, 64000), 0.01, np.float32)
    loud = np.full((2, 64000), 0.05, np.float32)
    gain = sfr.instrument_gain(np.concatenate([quiet, loud]), [25, 25, 127, 127])
    assert gain == pytest.approx(sfr.TARGET_RMS / 0.05)
    spiky = loud.copy()
    spiky[0, 0] = 0.9
    assert sfr.instrument_gain(spiky, [127, 127]) == pytest.approx(sfr.PEAK_MAX / 0.9)


def test_sanitise_and_midi_timing(tmp_path):
    import mido
    assert sfr.sanitise("Nylon-Str. Guitar!") == "nylon_str_guitar"
    inst = sfr.Instrument("x", "X", 0, 40)
    onsets = sfr.write_midi(tmp_path / "a.mid", inst, [(60, 25), (61, 127)])
    assert onsets == [sfr.LEAD_MS, sfr.LEAD_MS + sfr.PERIOD_MS]
    t, events = 0.0, []
    for msg in mido.MidiFile(tmp_path / "a.mid"):
        t += msg.time
        if not msg.is_meta:
            events.append((round(t * 1000), msg.type, getattr(msg, "note", getattr(msg, "control", None))))
    assert events[:4] == [(0, "program_change", None), (100, "note_on", 60),
                          (100 + sfr.HOLD_MS, "note_off", 60), (100 + sfr.KILL_MS, "control_change", 120)]
