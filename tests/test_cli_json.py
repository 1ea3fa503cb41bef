"""`--json` for scripts: `info`, `ports` and `dataset info` print one JSON object on
stdout that says what their text says (`render --json` is tested in test_render.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from singsynth.cli import main as cli_main
from tests.test_data_nsynth import make_nsynth

ROOT = Path(__file__).resolve().parents[1]


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    return out


def test_info_json_describes_the_checkpoint(tiny_checkpoint, capsys):
    data = json.loads(run_main(["info", str(tiny_checkpoint), "--json"], capsys))
    assert data["path"] == str(tiny_checkpoint)
    assert data["instruments"] == ["piano", "organ", "guitar", "strings"]
    assert data["velocities"] == [25, 50, 75, 100, 127]
    assert data["config"]["name"] == "tiny" and data["config"]["lstm_hidden"] == 32
    assert data["provenance"]["stage"] == "init"
    text = run_main(["info", str(tiny_checkpoint)], capsys)
    assert f"{data['generator_parameters']:,} parameters" in text
    assert f"{data['encoder_parameters']:,} parameters" in text


def test_info_json_of_a_named_config_has_no_path(capsys):
    data = json.loads(run_main(["info", "--config", "small", "--instruments", "3", "--json"],
                               capsys))
    assert data["path"] is None and data["config"]["name"] == "small"
    assert data["instruments"] == ["instrument_0", "instrument_1", "instrument_2"]


def test_info_json_of_the_shipped_model_names_its_file(capsys):
    data = json.loads(run_main(["info", "--json"], capsys))
    assert Path(data["path"]).name == "default.safetensors" and Path(data["path"]).is_file()
    assert len(data["instruments"]) > 1


def test_dataset_info_json_matches_the_text(tmp_path, capsys):
    root = tmp_path / "nsynth-train"
    make_nsynth(root)
    data = json.loads(run_main(["dataset", "info", str(root), "--json"], capsys))
    assert data["notes"] == 16 and data["velocities"] == [25, 127]
    assert data["pitches"] == [36, 72]
    assert data["split"] == {"train_notes": 12, "test_notes": 4, "test_pairs": 2}
    bass = [i for i in data["instruments"] if i["name"] == "bass_synthetic_033"]
    assert bass == [{"id": 33, "name": "bass_synthetic_033", "family": "x", "notes": 4,
                     "pitches": [36, 40], "pitch_count": 2}]
    assert [i["id"] for i in data["instruments"]] == [2, 4, 33]
    text = run_main(["dataset", "info", str(root)], capsys)
    assert "3 instruments, 16 notes, 0.02 hours" in text and f"{data['hours']:.2f}" == "0.02"


def test_ports_json_is_one_object_even_without_a_midi_system():
    # Windows MultiMedia is not in Linux rtmidi: the MIDI part carries the reason, the
    # audio part is still listed, and the exit status is 0 as for the text.
    done = subprocess.run([sys.executable, "-m", "singsynth", "ports", "--json", "--midi-api",
                           "windows_mm"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["midi"]["inputs"] == [] and data["midi"]["default"] is None
    assert "windows_mm" in data["midi"]["error"] or "WINDOWS_MM" in data["midi"]["error"]
    assert set(data["audio"]) == {"outputs", "error"}
    for device in data["audio"]["outputs"]:
        assert set(device) == {"index", "name", "hostapi", "default_samplerate", "channels",
                               "default"}
