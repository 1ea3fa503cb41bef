"""Presets: YAML into typed patches, per program and channel; errors name file, key and allowed values."""
import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.errors import ConfigError
from singsynth.generation.testing import SineSource
from singsynth.presets import load_preset

INSTRUMENTS = ["piano", "organ", "guitar", "strings"]


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_preset_plays_the_first_instrument_and_prewarms_a_range():
    preset = load_preset("default", INSTRUMENTS)
    patch = preset.patch(3, 40)
    assert patch.instrument == ((0, 1.0),)
    assert patch.prewarm == (36, 96) and patch.release == pytest.approx(0.3)


def test_programs_and_channels_override_defaults(tmp_path):
    path = write(tmp_path, """
defaults: {instrument: piano, gain: 0.5}
programs:
  16: {instrument: organ, transpose: -12}
  48: {instrument: {strings: 3, guitar: 1}}
channels:
  9: {pan: -1.0, velocity_curve: soft}
""")
    preset = load_preset(str(path), INSTRUMENTS)
    assert preset.patch(0, 0).instrument == ((0, 1.0),)
    organ = preset.patch(0, 16)
    assert organ.instrument == ((1, 1.0),) and organ.transpose == -12 and organ.gain == 0.5
    assert preset.patch(0, 48).instrument == ((2, 0.25), (3, 0.75))
    drums = preset.patch(9, 16)
    assert drums.instrument == ((1, 1.0),) and drums.pan == -1.0 and drums.velocity_curve == 0.6


def test_synth_uses_program_changes_transpose_and_blends(tmp_path):
    path = write(tmp_path, "programs:\n  16: {instrument: organ, transpose: 12}\n"
                           "  48: {instrument: {strings: 1, guitar: 1}}\n")
    synth = Synth(SineSource(instruments=INSTRUMENTS), 16000, str(path), offline=True)
    assert synth.note_key(0, 60, 100).instrument == ((0, 1.0),)
    synth.program_change(0, 16)
    synth.program_change(1, 48)
    synth.process(16)
    key = synth.note_key(0, 60, 100)
    assert key.instrument == ((1, 1.0),) and key.pitch == 72
    assert synth.note_key(1, 60, 100).instrument == ((2, 0.5), (3, 0.5))
    assert synth.note_key(2, 60, 100).instrument == ((0, 1.0),)  # channels are independent
    synth.note_on(0, 60, 100)
    out = synth.process(4096)
    spectrum = np.abs(np.fft.rfft(out[:, 0] * np.hanning(4096)))
    assert abs(np.argmax(spectrum) * 16000 / 4096 - 523.25) < 8  # C5: transposed up an octave


@pytest.mark.parametrize("text,key,allowed", [
    ("defaults: {instrument: trumpet}", "defaults.instrument", "piano, organ, guitar, strings"),
    ("programs:\n  3: {gain: loud}", "programs.3.gain", "a number from 0.0 to 4.0"),
    ("channels:\n  16: {gain: 1}", "channels.16", "an integer from 0 to 15"),
    ("defaults: {volume: 3}", "defaults.volume", "instrument, gain, pan, release"),
    ("defaults: {velocity_curve: steep}", "defaults.velocity_curve", "linear, soft, hard"),
    ("defaults: {prewarm: [90, 30]}", "defaults.prewarm", "an integer from 90 to 127"),
    ("instruments: {}", "instruments", "name, description, defaults, programs, channels"),
    ("programs:\n  1: {instrument: {piano: 0}}", "programs.1.instrument", "positive weights"),
])
def test_bad_presets_name_the_file_the_key_and_the_allowed_values(tmp_path, text, key, allowed):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_preset(str(path), INSTRUMENTS)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and allowed in message
    assert "\n" not in message


def test_missing_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found.*default"):
        load_preset("no-such-preset", INSTRUMENTS)
    path = write(tmp_path, "defaults: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_preset(str(path), INSTRUMENTS)


def test_a_binary_file_given_as_a_preset_is_refused_in_one_line(tmp_path):
    path = tmp_path / "song.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0\xff\xfe")
    with pytest.raises(ConfigError, match="song.mid: not a text file"):
        load_preset(str(path), INSTRUMENTS)


def test_a_bare_name_is_the_shipped_preset_whatever_the_current_folder_holds(
        tmp_path, monkeypatch):
    (tmp_path / "default").write_text("defaults: {instrument: organ}\n")
    monkeypatch.chdir(tmp_path)
    assert load_preset("default", INSTRUMENTS).patch(0, 0).instrument == ((0, 1.0),)
    assert load_preset("./default", INSTRUMENTS).patch(0, 0).instrument == ((1, 1.0),)
