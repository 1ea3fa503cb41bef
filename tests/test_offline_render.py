"""OfflineRender, the render as one library object: the song is planned once, and its
steps used one by one from Python give the very samples `render_file` writes."""
import io

import mido
import numpy as np
import soundfile

from singsynth.generation.testing import SineSource
from singsynth.hosts import render
from singsynth.hosts.midifile import Song, read_midi

TAIL = 0.3  # seconds after the last event


def song_bytes() -> bytes:
    """Three notes on channel 1 over one second (480 ticks a beat at 120 bpm), a program
    change, and a drum hit on channel 10 that the default preset skips."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([
        mido.Message("program_change", program=40, time=0),
        mido.Message("note_on", note=60, velocity=100, time=0),
        mido.Message("note_on", note=64, velocity=100, time=0),
        mido.Message("note_off", note=60, time=480),
        mido.Message("note_on", note=67, velocity=100, time=0),
        mido.Message("note_off", note=64, time=480),
        mido.Message("note_off", note=67, time=0)]))
    mid.tracks.append(mido.MidiTrack([
        mido.Message("note_on", channel=9, note=36, velocity=100, time=240),
        mido.Message("note_off", channel=9, note=36, time=10)]))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def counted(monkeypatch, owner, name) -> list:
    """Replace owner.name by a wrapper that records each call -> the list of calls."""
    calls, real = [], getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_the_song_is_read_and_planned_once(tmp_path, monkeypatch):
    song = tmp_path / "in.mid"
    song.write_bytes(song_bytes())
    reads = counted(monkeypatch, render, "read_midi")
    timings = counted(monkeypatch, Song, "timed_events")  # ticks -> samples, the whole song
    events = counted(monkeypatch, render, "playable_events")
    plans = counted(monkeypatch, render, "plan_keys")
    report = render.render_file(song, tmp_path / "out.wav", source=SineSource(),
                                preset="default", use_cache=False, progress=False, tail=TAIL,
                                warn=lambda line: None)
    assert (len(reads), len(timings), len(events), len(plans)) == (1, 1, 1, 1)
    assert report.distinct_notes == 3

    # The object's steps ask for the plan again: they get the same one, not a new pass.
    with render.OfflineRender(read_midi(song), SineSource(), "default", tail=TAIL) as job:
        plan = job.plan()
        job.prepare()
        job.mix()
        assert job.plan() is plan
    assert (len(timings), len(events), len(plans)) == (2, 2, 2)


def test_the_object_step_by_step_gives_the_samples_render_file_writes(tmp_path):
    song = tmp_path / "in.mid"
    song.write_bytes(song_bytes())
    options = dict(preset="default", use_cache=False, progress=False, tail=TAIL, bits="32f")
    report = render.render_file(song, tmp_path / "file.wav", source=SineSource(),
                                warn=lambda line: None, **options)

    source = SineSource()
    with render.OfflineRender(read_midi(song), source, "default", sample_rate=48000,
                              tail=TAIL) as job:
        plan = job.plan()
        assert sorted(k.pitch for k in plan.keys) == [60, 64, 67]  # the drum hit is skipped
        assert plan.samples == 48000 + 1  # the last event on the sample of 1.000 s
        assert "channel 10 (drums)" in job.report.warnings[0]
        assert source.calls == []  # planning makes no note
        job.prepare()
        assert sum(n for kind, n in source.calls if kind == "render") == 3
        mixed = job.mix()
        assert mixed.dtype == np.float32 and mixed.shape == (48001 + int(TAIL * 48000), 2)
        written = job.write(tmp_path / "object.wav", bits="32f")

    from_file, sr = soundfile.read(tmp_path / "file.wav", dtype="float32", always_2d=True)
    from_object, _ = soundfile.read(tmp_path / "object.wav", dtype="float32", always_2d=True)
    assert sr == 48000 and np.abs(from_file).max() > 0.05
    assert np.array_equal(from_object, from_file)  # 32-bit float files: exact samples
    assert np.array_equal(written, mixed) and np.array_equal(written, from_file)
    assert job.report.distinct_notes == report.distinct_notes == 3
    assert job.report.audio_seconds == report.audio_seconds == len(from_file) / 48000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.wav", "in.mid", "object.wav"]
