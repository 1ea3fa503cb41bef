"""`singsynth dataset build --samples DIR`: file names, shaping, problems, the layout.

The sample folders are single notes of TimGM6mb rendered by the real FluidSynth to
separately named files of different lengths and levels.
"""
import json
import shutil
import subprocess
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from singsynth.cli import dataset as cli
from singsynth.data import NSynthDataset
from singsynth.data.naming import note_to_midi, parse_name, parse_pitch
from singsynth.data.samples import (SamplesError, build_samples, nearest_level, shape_note)
from singsynth.data.soundfont import PEAK_MAX, TARGET_RMS
from singsynth.errors import DatasetError

SF2 = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
needs_fluidsynth = pytest.mark.skipif(not SF2.exists() or shutil.which("fluidsynth") is None,
                                      reason="needs fluidsynth and timgm6mb-soundfont")
CELLO = 42


@pytest.mark.parametrize("stem, pitch, velocity, prefix", [
    ("Cello_G3_v100", 55, 100, "Cello"),
    ("cello-55-100", 55, 100, "cello"),
    ("Piano C#4 mf", 61, 80, "Piano"),
    ("Pad_Db4", 61, None, "Pad"),
    ("strings_Cs4_127", 61, 127, "strings"),
    ("Harp-Bb2-vel64", 46, 64, "Harp"),
    ("Organ_C-1_v50", 0, 50, "Organ"),
    ("flute_a4_ff", 69, 112, "flute"),
    ("Bassoon E2 pp rr2", 40, 33, "Bassoon"),
    ("piano_1_C4", 60, None, "piano 1"),
    ("060", 60, None, ""),
    ("Bass4", None, None, "Bass4"),      # no note inside a word
    ("kick", None, None, "kick"),
])
def test_naming_conventions(stem, pitch, velocity, prefix):
    parsed = parse_name(stem)
    assert (parsed.pitch, parsed.velocity, parsed.prefix) == (pitch, velocity, prefix)


def test_note_names_and_levels():
    assert [note_to_midi(n) for n in ("C4", "A4", "C#4", "Db4", "Cs4", "B#3", "Cb4", "G9")] == \
        [60, 69, 61, 61, 61, 60, 59, 127]
    assert note_to_midi("G#9") is None and note_to_midi("H4") is None
    assert [parse_pitch(t) for t in ("55", "G3", "128", "x")] == [55, 55, None, None]
    assert [nearest_level(v) for v in (1, 37, 38, 64, 90, 113, 114, 127)] == \
        [25, 25, 50, 75, 100, 100, 127, 127]


def test_shape_note_trims_holds_fades_and_pads():
    rate = 16000
    long = np.concatenate([np.zeros(800), 0.5 * np.ones(6 * rate)]).astype(np.float32)
    note = shape_note(long, rate)
    assert note.shape == (64000,)
    assert note[int(0.005 * rate)] == 0.5 and note[0] == 0      # 5 ms kept before the onset
    assert note[3 * rate - 1] == 0.5 and abs(note[-1]) < 1e-6   # held 3 s, faded to zero
    assert 0.24 < note[int(3.5 * rate)] < 0.26                   # half way down the fade
    short = shape_note(0.5 * np.ones(rate, np.float32), rate)
    assert short[rate // 2] == 0.5 and short[rate - 1] == 0 and not short[rate:].any()


def render(path: Path, pitch: int, velocity: int, hold_s: float, gain: float = 0.5,
           program: int = CELLO, rate: int = 44100, subtype: str | None = None) -> Path:
    """One note of TimGM6mb by FluidSynth to `path`: 50 ms of silence, the key held
    `hold_s`, 0.5 s of release."""
    mid = mido.MidiFile(ticks_per_beat=1000)     # 1 tick = 1 ms at this tempo
    mid.tracks.append(mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=1_000_000, time=0),
        mido.Message("program_change", program=program, time=0),
        mido.Message("note_on", note=pitch, velocity=velocity, time=50),
        mido.Message("note_off", note=pitch, time=int(hold_s * 1000)),
        mido.MetaMessage("end_of_track", time=500)]))
    midi = path.with_name(path.name + ".mid")
    mid.save(midi)
    wav = path if path.suffix == ".wav" else path.with_suffix(".tmp.wav")
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", str(gain), "-r",
                    str(rate), "-F", str(wav), str(SF2), str(midi)], check=True,
                   capture_output=True)
    midi.unlink()
    if wav != path:  # FLAC/OGG/AIFF: re-encode with libsndfile
        x, r = sf.read(wav, dtype="float32")
        sf.write(path, x, r, subtype=subtype)
        wav.unlink()
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Cello notes in four naming conventions, lengths 0.4-5 s, gains 0.2-0.6; a
    subfolder with a second instrument (flute) whose names carry no pitch for one file."""
    root = tmp_path_factory.mktemp("samples") / "Cello"
    root.mkdir()
    render(root / "Cello_C3_v100.wav", 48, 100, 5.0, 0.5)
    render(root / "Cello_C3_v50.wav", 48, 50, 2.0, 0.5)
    render(root / "cello-52-127.flac", 52, 127, 0.4, 0.6)
    render(root / "Cello Eb3 mf.aiff", 51, 80, 1.0, 0.2)
    render(root / "Cello_Fs3_v25.ogg", 54, 25, 3.0, 0.4, subtype="VORBIS")
    render(root / "Cello_G3_v127.wav", 55, 127, 2.5, 0.3)
    render(root / "Cello_A3_v127.wav", 57, 127, 2.5, 0.5)
    (root / "notes.txt").write_text("recorded 2026\n")
    flute = root / "Flute"
    flute.mkdir()
    render(flute / "flute_G4_v100.wav", 67, 100, 1.0, 0.5, program=73)
    render(flute / "breathy take.wav", 72, 100, 1.0, 0.5, program=73)  # C5, no pitch in name
    return root


@pytest.fixture(scope="module")
def built(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples-out") / "ds"
    assert cli.main(["build", "--samples", str(folder), "--out", str(out)]) == 0
    return out


@needs_fluidsynth
def test_builds_pitches_velocities_and_lengths(built):
    examples = json.loads((built / "examples.json").read_text())
    got = {(e["instrument_str"], e["pitch"], e["velocity"]) for e in examples.values()}
    assert got == {("cello", 48, 100), ("cello", 48, 50), ("cello", 52, 127), ("cello", 51, 75),
                   ("cello", 54, 25), ("cello", 55, 127), ("cello", 57, 127),
                   ("flute", 67, 100), ("flute", 72, 127)}
    assert examples["flute-072-127"]["pitch_from"] == "heard"
    assert examples["cello-051-075"]["source_velocity"] == 80
    for key in examples:
        x, rate = sf.read(built / "audio" / f"{key}.wav", dtype="float32")
        assert rate == 16000 and x.shape == (64000,), key
        # Trimmed at its onset (the renders start with 50 ms of silence): the note
        # reaches -40 dB of its peak after the 5 ms kept before it.
        onset = int(np.argmax(np.abs(x) >= 0.01 * np.abs(x).max()))
        assert 60 <= onset <= 120, f"{key}: onset at sample {onset}"
        assert np.abs(x[-16:]).max() < 1e-3, f"{key}: does not end in silence"
    # The 5 s note is held for 3 s and faded; the 0.4 s note is padded with silence.
    held, _ = sf.read(built / "audio" / "cello-048-100.wav", dtype="float32")
    assert np.abs(held[44000:48000]).max() > 10 * np.abs(held[63000:]).max()
    short, _ = sf.read(built / "audio" / "cello-052-127.wav", dtype="float32")
    assert not short[30000:].any()
    # The reader serves it: both instruments, the pitch-completion split.
    ds = NSynthDataset(built, split="all")
    assert ds.instruments == ["cello", "flute"] and len(ds) == 9


@needs_fluidsynth
def test_loudness_is_per_instrument_not_per_note(built):
    def rms(key):
        x, _ = sf.read(built / "audio" / f"{key}.wav", dtype="float64")
        return np.sqrt(np.mean(x ** 2))

    loud = [rms(k) for k in ("cello-052-127", "cello-055-127", "cello-057-127")]
    x = np.concatenate([sf.read(p, dtype="float32")[0] for p in (built / "audio").glob("cello*")])
    # Median RMS of the loudest velocity at -20 dBFS unless a peak would pass PEAK_MAX.
    assert abs(np.median(loud) - TARGET_RMS) < 0.002 or np.abs(x).max() > PEAK_MAX - 0.01
    # Velocity differences survive: the v25 note stays far quieter than the v127 ones.
    assert rms("cello-054-025") < 0.5 * min(loud)


@needs_fluidsynth
def test_cli_says_what_it_estimated_and_ignored(folder, tmp_path, capsys):
    assert cli.main(["build", "--samples", str(folder), "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "Flute/breathy take.wav: no pitch in the name; pyin hears" in out
    assert "-> C5 (72)" in out and "not audio, ignored: notes.txt" in out


@needs_fluidsynth
def test_each_bad_file_gets_its_message(tmp_path, capsys):
    root = tmp_path / "bad"
    root.mkdir()
    render(root / "Cello_C3_v100.wav", 48, 100, 1.0)
    render(root / "Cello_D3_v100.wav", 50, 100, 1.0)
    render(root / "Cello_E3_v100.wav", 55, 100, 1.0)     # named E3, plays G3
    render(root / "Cello_C3_v90.wav", 48, 90, 1.0)       # v90 -> level 100, as v100
    (root / "Cello_F3_v100.wav").write_bytes(b"RIFF\x00\x00garbage")
    sf.write(root / "Cello_G3_v100.wav", np.zeros(16000, np.float32), 16000)
    t = np.arange(16000) / 16000
    sf.write(root / "Cello_A3_v100.wav", np.clip(2 * np.sin(2 * np.pi * 220 * t), -1, 1), 16000,
             subtype="PCM_16")
    out = tmp_path / "out"
    with pytest.raises(SamplesError, match="5 of 7 sample files have problems") as err:
        build_samples(root, out, progress=False)
    problems = dict(line.split(": ", 1) for line in err.value.problems)
    assert sorted(problems) == ["Cello_A3_v100.wav", "Cello_C3_v90.wav", "Cello_E3_v100.wav",
                                "Cello_F3_v100.wav", "Cello_G3_v100.wav"]
    assert problems["Cello_A3_v100.wav"].startswith("clipped (")
    assert problems["Cello_C3_v90.wav"].startswith("same key and velocity as Cello_C3_v100.wav")
    assert "name says E3 (52) but pyin hears" in problems["Cello_E3_v100.wav"]
    assert "(G3," in problems["Cello_E3_v100.wav"]
    assert problems["Cello_F3_v100.wav"].startswith("unreadable (")
    assert problems["Cello_G3_v100.wav"].startswith("silent (")
    assert not out.exists() and list(tmp_path.iterdir()) == [root]   # nothing left behind
    # The CLI prints each, then one error line; --skip-bad builds from the rest.
    with pytest.raises(DatasetError):
        cli.main(["build", "--samples", str(root), "--out", str(out)])
    assert "Cello_F3_v100.wav: unreadable" in capsys.readouterr().err
    assert cli.main(["build", "--samples", str(root), "--out", str(out), "--skip-bad"]) == 0
    assert "left out: Cello_G3_v100.wav: silent" in capsys.readouterr().out
    assert sorted(json.loads((out / "examples.json").read_text())) == \
        ["cello-048-100", "cello-050-100"]


@needs_fluidsynth
def test_map_and_instrument_and_sample_rate(tmp_path):
    root = tmp_path / "takes"
    root.mkdir()
    render(root / "take1.wav", 60, 100, 1.0)
    render(root / "take2.wav", 64, 50, 1.0)
    (tmp_path / "map.csv").write_text("file,pitch,velocity\ntake1.wav,C4,100\ntake2.wav,64,50\n")
    out = tmp_path / "ds"
    summary = build_samples(root, out, instrument="My Cello", map_file=tmp_path / "map.csv",
                            sample_rate=48000, progress=False)
    assert summary["notes"] == 2
    examples = json.loads((out / "examples.json").read_text())
    assert sorted(examples) == ["my_cello-060-100", "my_cello-064-050"]
    x, rate = sf.read(out / "audio" / "my_cello-064-050.wav")
    assert rate == 48000 and x.shape == (192000,) and examples["my_cello-064-050"]["sample_rate"] == 48000
    # -f replaces our own build; a folder of something else is refused.
    build_samples(root, out, map_file=tmp_path / "map.csv", force=True, progress=False,
                  check_pitch=False)
    with pytest.raises(DatasetError, match="not a dataset singsynth built"):
        build_samples(root, root, force=True, progress=False)
    (tmp_path / "bad.csv").write_text("file,pitch\ntake1.wav,H9\n")
    with pytest.raises(DatasetError, match="line 2: pitch 'H9'"):
        build_samples(root, tmp_path / "ds2", map_file=tmp_path / "bad.csv", progress=False)
    shutil.copy(root / "take1.wav", tmp_path / "outside.wav")
    (tmp_path / "out.csv").write_text("file,pitch\n../outside.wav,C4\n")
    with pytest.raises(DatasetError, match="is not in"):
        build_samples(root, tmp_path / "ds3", map_file=tmp_path / "out.csv", progress=False)
    # An --out inside the sample folder is not read back as samples by a rebuild.
    for force in (False, True):
        summary = build_samples(root, root / "built", map_file=tmp_path / "map.csv",
                                force=force, progress=False, check_pitch=False)
        assert summary["notes"] == 2


def test_sfz_instrument_renders_through_sfizz(tmp_path):
    pytest.importorskip("pysfizz")
    t = np.arange(2 * 48000) / 48000
    tone = 0.3 * np.exp(-1.5 * t) * sum(np.sin(2 * np.pi * 261.63 * h * t) / h for h in range(1, 6))
    sf.write(tmp_path / "c4.wav", tone.astype(np.float32), 48000)
    sfz = tmp_path / "Tone.sfz"
    sfz.write_text("<region> sample=c4.wav pitch_keycenter=60 lokey=48 hikey=72 ampeg_release=0.3\n")
    out = tmp_path / "ds"
    assert cli.main(["build", "--sfz", str(sfz), "--out", str(out), "--pitches", "44,60,72,76",
                     "--velocities", "25,127"]) == 0
    examples = json.loads((out / "examples.json").read_text())
    # 44 and 76 lie outside the region's keys: dropped as silent, as the SoundFont builder does.
    assert sorted(examples) == ["tone-060-025", "tone-060-127", "tone-072-025", "tone-072-127"]
    x, rate = sf.read(out / "audio" / "tone-072-127.wav", dtype="float32")
    assert rate == 16000 and x.shape == (64000,)
    spectrum = np.abs(np.fft.rfft(x[:32000]))
    assert abs(np.argmax(spectrum) * 16000 / 32000 - 523.25) < 2      # C5: played an octave up
    quiet, _ = sf.read(out / "audio" / "tone-072-025.wav", dtype="float32")
    assert np.abs(quiet).max() < 0.5 * np.abs(x).max()
    with pytest.raises(DatasetError, match="not an .sfz file"):
        cli.main(["build", "--sfz", str(tmp_path / "c4.wav"), "--out", str(tmp_path / "y")])
