"""`singsynth dataset build` with the real FluidSynth on TimGM6mb, read back by the reader."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from singsynth.cli import dataset as cli
from singsynth.data.build import build
from singsynth.data import NSynthDataset
from singsynth.data.soundfont import PEAK_MAX, TARGET_RMS, plan_instruments
from singsynth.errors import DatasetError

SF2 = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
pytestmark = pytest.mark.skipif(not SF2.exists() or shutil.which("fluidsynth") is None,
                                reason="needs fluidsynth and timgm6mb-soundfont (make setup)")
PITCHES = [20, 36, 48, 60, 72, 84, 120]
ARGS = ["--programs", "0,40", "--drums", "--pitches", ",".join(map(str, PITCHES)),
        "--velocities", "25,127"]


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("timgm") / "ds"
    assert cli.main(["build", "--soundfont", str(SF2), "--out", str(out), *ARGS]) == 0
    return out


@pytest.fixture(scope="module")
def examples(built):
    return json.loads((built / "examples.json").read_text())


def wave(built, key):
    x, rate = sf.read(built / "audio" / f"{key}.wav", dtype="float32")
    assert rate == 16000
    return x


def test_layout_and_fields(built, examples):
    assert sorted(p.name for p in (built / "audio").iterdir()) == sorted(f"{k}.wav" for k in examples)
    names = {e["instrument_str"] for e in examples.values()}
    assert names == {"piano_1_000", "violin_040", "drums_standard_000"}
    e = examples["violin_040-060-127"]
    assert (e["instrument"], e["pitch"], e["velocity"], e["sample_rate"]) == (40, 60, 127, 16000)
    assert (e["instrument_family_str"], e["instrument_source_str"]) == ("strings", "acoustic")
    assert e["note_str"] == "violin_040-060-127" and len(e["qualities"]) == 10
    assert examples["drums_standard_000-036-127"]["instrument"] == 128
    assert sorted(e["note"] for e in examples.values()) == list(range(len(examples)))


def test_out_of_range_notes_are_dropped(built, examples):
    # Pitch 120 has no sample zone in TimGM6mb; drum kits are silent at 20 and 120.
    for key in ("piano_1_000-120-127", "violin_040-120-025", "drums_standard_000-020-127",
                "drums_standard_000-120-025"):
        assert key not in examples
    for pitch in (20, 36, 60, 84):
        assert f"piano_1_000-{pitch:03d}-025" in examples
    assert not list(built.rglob("*.tmp"))
    part = json.loads((built / ".parts" / "drums_standard_000.json").read_text())
    assert part["dropped"]["silent"] >= 4 and len(part["examples"]) == sum(
        k.startswith("drums_") for k in examples)


def test_reader_reads_the_build_back(built, examples):
    ds = NSynthDataset(built, split="all")
    assert len(ds) == len(examples)
    assert ds.instruments == ["piano_1_000", "violin_040", "drums_standard_000"]
    inst, pitch, vel, audio = ds.arrays()
    assert audio.shape == (len(examples), 64000)
    assert set(vel.tolist()) == {0, 4}
    assert float(audio.abs().max()) <= PEAK_MAX + 1e-4
    assert float(audio.abs().amax(dim=1).min()) > 1e-3   # no silent note kept


def test_note_timing(built):
    """Onset at the start, key held 3 s, then the release decays in the last second."""
    for key in ("violin_040-060-127", "piano_1_000-060-127", "violin_040-072-025"):
        x = wave(built, key)
        assert len(x) == 64000
        first = int(np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())[0])
        assert first < 160, key                                    # within 10 ms
        held, last = rms(x[16000:48000]), rms(x[56000:])
        assert last < 0.3 * held, key
    # a sustained instrument keeps sounding while the key is held
    v = wave(built, "violin_040-060-127")
    assert rms(v[40000:48000]) > 0.3 * rms(v[8000:16000])


def test_per_instrument_loudness_keeps_velocity(built, examples):
    for name in ("piano_1_000", "violin_040"):
        loud = [wave(built, f"{name}-{p:03d}-127") for p in (36, 48, 60, 72, 84)]
        soft = [wave(built, f"{name}-{p:03d}-025") for p in (36, 48, 60, 72, 84)]
        for lo, hi in zip(soft, loud):
            assert rms(lo) < 0.5 * rms(hi)
        peak = max(float(np.abs(x).max()) for x in loud + soft)
        median = float(np.median([rms(x) for x in loud + [wave(built, f"{name}-020-127")]]))
        # one gain: the loud notes' median RMS at -20 dBFS, unless the peak limit bound first
        assert abs(median - TARGET_RMS) < 0.005 or abs(peak - PEAK_MAX) < 0.005, name


def test_split_written_at_build_and_disjoint(built, examples):
    split = json.loads((built / "split.json").read_text())
    for name in ("piano_1_000", "violin_040"):
        train, test = set(split["train"][name]), set(split["test"][name])
        assert not train & test and len(test) == (0 if name.startswith("drums_") else 1)
        assert train | test == {e["pitch"] for e in examples.values() if e["instrument_str"] == name}
    train, test = NSynthDataset(built, "train"), NSynthDataset(built, "test")
    assert len(train) + len(test) == len(examples)
    assert not set(train.keys) & set(test.keys)


def test_rebuild_resumes_and_refuses_other_settings(built, capsys):
    stamp = {p: p.stat().st_mtime_ns for p in (built / "audio").iterdir()}
    assert cli.main(["build", "--soundfont", str(SF2), "--out", str(built), *ARGS]) == 0
    assert "resuming: 3 of 3 instruments already rendered" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (built / "audio").iterdir()} == stamp
    with pytest.raises(DatasetError, match="was built with other settings"):
        cli.main(["build", "--soundfont", str(SF2), "--out", str(built), "--programs", "0"])


def test_bad_build_arguments(tmp_path):
    with pytest.raises(DatasetError, match="no bank-0 preset for program 200|outside 0-127"):
        plan_instruments(SF2, [200])
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(DatasetError, match="is not a SoundFont 2 file"):
        plan_instruments(bad)
    with pytest.raises(DatasetError, match="cannot read --pitches"):
        cli.parse_list("21-x", "--pitches")
    assert cli.parse_list("0-3,24,2", "--programs") == [0, 1, 2, 3, 24]
    for rate in ("8000", "192000"):
        with pytest.raises(DatasetError, match=f"render-rate {rate} is out of range; use 16000-96000"):
            cli.main(["build", "--soundfont", str(SF2), "--out", str(tmp_path / "r"),
                      "--render-rate", rate])
    with pytest.raises(DatasetError, match=r"velocities must be among NSynth's \[25, 50"):
        cli.main(["build", "--soundfont", str(SF2), "--out", str(tmp_path / "r"),
                  "--velocities", "64"])
    assert not (tmp_path / "r").exists()


def test_a_folder_singsynth_did_not_build_is_never_deleted_even_with_force(tmp_path):
    full = tmp_path / "full"
    (full / "audio").mkdir(parents=True)
    (full / "notes.txt").write_text("mine")
    (full / "audio" / "take.wav").write_bytes(b"RIFF")
    (full / "examples.json").write_text("{}")
    for force in ([], ["-f"]):
        with pytest.raises(DatasetError, match="is not a dataset singsynth is building or built"):
            cli.main(["build", "--soundfont", str(SF2), "--out", str(full), "--programs", "0",
                      *force])
    assert sorted(p.relative_to(full).as_posix() for p in full.rglob("*")) == [
        "audio", "audio/take.wav", "examples.json", "notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file; give a folder"):
        cli.main(["build", "--soundfont", str(SF2), "--out", str(tmp_path / "file")])


def test_a_build_that_fails_before_any_instrument_leaves_nothing_behind(tmp_path):
    """FluidSynth failing (here a program that exits 1 in its place) must not leave a
    half-made dataset whose settings would refuse the retry."""
    out = tmp_path / "new"
    with pytest.raises(DatasetError, match="fluidsynth failed"):
        build(SF2, out, programs=[0], pitches=[60], velocities=[100], progress=False,
              fluidsynth="false")
    assert not out.exists()
    build(SF2, out, programs=[0], pitches=[60], velocities=[100], progress=False)
    assert json.loads((out / "examples.json").read_text())
