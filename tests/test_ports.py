"""`singsynth ports` against a real JACK server, and MIDI port name matching."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from singsynth.errors import DeviceError
from singsynth.hosts.midi_in import MIDI_APIS, backend_label, get_backend, match_port
from tests.jack_fixtures import JackProbe, jack_server  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["Launchkey 49:Launchkey 49 MIDI 1 20:0", "Launchkey 49:Launchkey 49 DAW 20:1",
         "Digital Piano:Digital Piano MIDI 1 24:0"]


def test_match_port_substring_case_insensitive():
    assert match_port("digital", NAMES) == NAMES[2]
    assert match_port("DAW", NAMES) == NAMES[1]
    assert match_port(NAMES[0], NAMES) == NAMES[0]


def test_match_port_none_or_several_list_the_choices():
    with pytest.raises(DeviceError, match="no MIDI input matches 'organ'.*Digital Piano"):
        match_port("organ", NAMES)
    with pytest.raises(DeviceError, match="matches 2 ports.*DAW"):
        match_port("launchkey", NAMES)
    with pytest.raises(DeviceError, match="--virtual"):
        match_port("x", [])


def test_midi_api_names_map_to_mido_rtmidi_backends(monkeypatch):
    assert MIDI_APIS["jack"] == "mido.backends.rtmidi/UNIX_JACK"
    assert backend_label(get_backend("jack")) == "mido.backends.rtmidi/UNIX_JACK"
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    assert backend_label(get_backend(None)) == "mido.backends.rtmidi/UNIX_JACK"
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.nosuch")
    with pytest.raises(DeviceError, match="--midi-api"):
        get_backend(None)


def run_ports(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "singsynth", "ports", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_ports_lists_jack_midi_inputs_and_audio_outputs(jack_server):
    keyboard = JackProbe("test-keyboard", channels=0)
    try:
        result = run_ports("--midi-api", "jack")
    finally:
        keyboard.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    midi = lines[:lines.index("")]
    assert midi[0] == "MIDI inputs (mido.backends.rtmidi/UNIX_JACK):"
    assert any(line.strip("* ") == "test-keyboard:midi_out" for line in midi[1:]), midi
    audio = lines[lines.index("") + 1:]
    jack_lines = [l for l in audio if "[JACK Audio Connection Kit]" in l]
    assert len(jack_lines) == 1, audio
    # The JACK device runs at the server's rate and is PortAudio's default output here.
    assert jack_lines[0].lstrip().startswith("*") and "48000 Hz" in jack_lines[0]
    assert "2 ch" in jack_lines[0]


def test_ports_with_mido_backend_env_and_unavailable_api(jack_server):
    os.environ["MIDO_BACKEND"] = "mido.backends.rtmidi/UNIX_JACK"
    try:
        result = run_ports()
    finally:
        del os.environ["MIDO_BACKEND"]
    assert result.returncode == 0
    assert "MIDI inputs (mido.backends.rtmidi/UNIX_JACK):" in result.stdout
    # Windows MultiMedia is not compiled into Linux rtmidi: one line, audio still listed.
    result = run_ports("--midi-api", "windows_mm")
    assert result.returncode == 0
    assert result.stdout.startswith("MIDI inputs: unavailable:")
    assert "[JACK Audio Connection Kit]" in result.stdout
