"""Offline render: disk cache, CLI bad input, exact-sample timing, pitch, determinism, end to end."""
import io
import os

import mido
import numpy as np
import pytest

from singsynth.cli import main as cli_main
from singsynth.generation.diskcache import DiskCachedSource, key_name
from singsynth.notes import NoteKey, single

SR_IN = 16000


class SineSource:
    """A deterministic NoteSource: decaying cosines at the key's pitch (first sample = peak).

    Instrument i > 0 adds its (i + 2)-th harmonic, so program changes can be heard.
    Records every key it renders in `rendered`.
    """

    sample_rate = SR_IN
    note_samples = 16000
    instruments = ["piano", "organ", "guitar", "strings"]
    velocities = (25, 50, 75, 100, 127)

    def __init__(self):
        self.rendered = []

    def _note(self, key):
        t = np.arange(self.note_samples) / self.sample_rate
        freq = 440.0 * 2 ** ((key.pitch - 69) / 12)
        wave = np.zeros_like(t)
        for i, w in key.instrument:
            wave += w * np.cos(2 * np.pi * freq * t)
            if i:
                wave += w * 0.5 * np.cos(2 * np.pi * freq * (i + 2) * t)
        return ((0.1 + 0.05 * key.velocity) * np.exp(-t) * wave).astype(np.float32)

    def render(self, keys):
        self.rendered.extend(keys)
        return np.stack([self._note(k) for k in keys]) if keys else \
            np.zeros((0, self.note_samples), np.float32)

    def stream(self, keys, chunk=256):
        whole = self.render(keys)
        for start in range(0, self.note_samples, chunk):
            yield whole[:, start:start + chunk]

    def prepare(self):
        return self

    def identity(self):
        return "sine-v1"

def midi_bytes(*tracks, tpb=480, fmt=1):
    mid = mido.MidiFile(type=fmt, ticks_per_beat=tpb)
    for msgs in tracks:
        mid.tracks.append(mido.MidiTrack(msgs))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def simple_song():
    return midi_bytes([mido.Message("note_on", note=69, velocity=100, time=0),
                       mido.Message("note_off", note=69, time=480)])


# ---- disk cache ---------------------------------------------------------------------------

KEYS = [NoteKey(single(0), 60, 2.0), NoteKey(single(1), 61, 3.5),
        NoteKey(((0, 0.25), (2, 0.75)), 62, 0.0)]


def test_disk_cache_reads_back_exactly_what_the_source_made(tmp_path):
    inner = SineSource()
    first = DiskCachedSource(inner, tmp_path).render(KEYS)
    assert first.dtype == np.float32 and first.shape == (3, SR_IN)
    assert len(inner.rendered) == 3
    files = sorted(p.name for p in (tmp_path / "sine-v1").iterdir())
    assert files == sorted(key_name(k) + ".npy" for k in KEYS)  # no temporary files left
    again = DiskCachedSource(inner, tmp_path)
    second = again.render(KEYS[::-1] + [NoteKey(single(3), 70, 1.0)])
    assert again.hits == 3 and again.misses == 1 and len(inner.rendered) == 4
    assert np.array_equal(second[:3], first[::-1])  # bit-identical, in the asked order
    chunks = list(again.stream(KEYS, chunk=1000))
    assert np.array_equal(np.concatenate(chunks, axis=1), first)


def test_disk_cache_keys_differ_by_velocity_blend_and_identity(tmp_path):
    names = {key_name(k) for k in KEYS + [NoteKey(single(0), 60, 2.0000001)]}
    assert len(names) == 4

    class Other(SineSource):
        def identity(self):
            return "other/../../model"  # sanitised into one folder name
    DiskCachedSource(SineSource(), tmp_path).render(KEYS[:1])
    other = DiskCachedSource(Other(), tmp_path)
    other.render(KEYS[:1])
    assert other.misses == 1 and other.dir.parent == tmp_path


def test_disk_cache_regenerates_a_damaged_file_and_survives_a_read_only_root(tmp_path):
    inner = SineSource()
    cache = DiskCachedSource(inner, tmp_path)
    good = cache.render(KEYS[:1])
    path = cache.path(KEYS[0])
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    fresh = DiskCachedSource(inner, tmp_path)
    assert np.array_equal(fresh.render(KEYS[:1]), good) and fresh.misses == 1
    assert np.array_equal(DiskCachedSource(inner, tmp_path).render(KEYS[:1]), good)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    nowhere = DiskCachedSource(inner, blocked)  # mkdir fails: warn once, still render
    assert np.array_equal(nowhere.render(KEYS[:1]), good)


# ---- bad input through the CLI ------------------------------------------------------------

def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["render", *map(str, argv)])
    err = capsys.readouterr().err
    return info.value.code, err


EOT = b"\x00\xff\x2f\x00"


def smf(body, fmt=1, division=480):
    return (b"MThd\x00\x00\x00\x06" + fmt.to_bytes(2, "big") + b"\x00\x01"
            + division.to_bytes(2, "big") + b"MTrk" + len(body).to_bytes(4, "big") + body)


@pytest.mark.parametrize("data, words", [
    (b"", "is empty"),
    (b"hello, I am a text file\n", "not a MIDI file"),
    (smf(b"\x00\x90\x3c\x64" + EOT, fmt=2), "format 2"),
    (smf(b"\x00\x90\x3c\x64" + EOT, division=0), "division of 0"),
    (smf(b"\x00\x90\x3c\x64\x00\xf5\x00" + EOT), "illegal status byte 0xf5"),
    (smf(b"\x00\x90\x3c\x64" + b"\x00\x80")[:-3], "no notes"),  # truncated before any note
    # A delta of 0x0FFFFFFF ticks: 77 hours at 120 BPM, refused before any audio exists.
    (smf(b"\x00\x90\x3c\x64\xff\xff\xff\x7f\x80\x3c\x00" + EOT), "more than --max-duration"),
])
def test_bad_midi_gives_one_line_exit_1_and_no_output(tmp_path, capsys, data, words):
    song, out = tmp_path / "in.mid", tmp_path / "out.wav"
    song.write_bytes(data)
    code, err = run_cli([song, "-o", out, "--no-cache"], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("singsynth render: error:") and words in lines[0]
    assert os.listdir(tmp_path) == ["in.mid"]  # no output, no temporary file


@pytest.mark.parametrize("output, words", [
    ("in.mid/out.wav", "check that the folder exists"),  # a file where the folder should be
    ("out.mp3", "name the output .wav, .flac or .ogg"),
    ("exists.wav", "already exists; pass -f"),
])
def test_bad_output_paths_are_refused_before_rendering(tmp_path, capsys, output, words):
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    (tmp_path / "exists.wav").write_bytes(b"keep me")
    code, err = run_cli([song, "-o", tmp_path / output], capsys)
    assert code == 1 and words in err and len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["exists.wav", "in.mid"]
    assert (tmp_path / "exists.wav").read_bytes() == b"keep me"


def test_missing_output_folder_is_made(tmp_path):
    from singsynth.hosts.render import render_file
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    umask = os.umask(0o022)
    try:
        render_file(song, tmp_path / "out" / "x.wav", source=SineSource(), use_cache=False,
                    preset="default", progress=False, tail=0.1)
    finally:
        os.umask(umask)
    assert os.listdir(tmp_path / "out") == ["x.wav"]
    # Renamed from a private temporary file, it still gets a new file's permissions.
    assert (tmp_path / "out" / "x.wav").stat().st_mode & 0o777 == 0o644


def test_missing_input_file_is_one_line(tmp_path, capsys):
    code, err = run_cli([tmp_path / "nope.mid", "-F", tmp_path / "out.flac"], capsys)
    assert code == 1 and "cannot read" in err and "nope.mid" in err
    assert os.listdir(tmp_path) == []


# ---- rendering through the real Synth with the sine source ---------------------------------

def song_of(*tracks, tpb=480):
    from singsynth.hosts.midifile import read_midi
    return read_midi(midi_bytes(*tracks, tpb=tpb))


def synth_for(sample_rate, preset=None, source=None):
    from singsynth.engine import Synth
    return Synth(source or SineSource(), sample_rate=sample_rate, preset=preset, offline=True)


def render(song, sample_rate=SR_IN, preset=None, tail=1.0, source=None):
    from singsynth.hosts.render import render_song
    synth = synth_for(sample_rate, preset, source)
    audio = render_song(song, synth, tail=tail)
    return audio, synth


def on(note, time=0, ch=0, vel=100):
    return mido.Message("note_on", channel=ch, note=note, velocity=vel, time=time)


def off(note, time=0, ch=0):
    return mido.Message("note_off", channel=ch, note=note, time=time)


def cc(control, value, time=0, ch=0):
    return mido.Message("control_change", channel=ch, control=control, value=value, time=time)


def freq_of(x, sr):
    """Frequency of the strongest partial of x (Hann, zero padding, parabolic peak)."""
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n), 16 * n))
    k = int(np.argmax(spec[1:])) + 1
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (16 * n)


def test_events_land_on_their_exact_sample_through_tempo_changes():
    from fractions import Fraction
    tpb, gap = 97, 131  # odd numbers so that samples fall between ticks
    tempos = [(0, 500_000), (3 * gap, 437_501), (5 * gap, 611_111)]
    conductor = [mido.MetaMessage("set_tempo", tempo=t, time=(tick - prev))
                 for (tick, t), prev in zip(tempos, [0] + [tk for tk, _ in tempos[:-1]])]
    notes = []
    for i in range(7):
        notes += [on(64, time=gap - 25 if i else 0), off(64, time=25)]
    audio, _ = render(song_of(conductor, notes, tpb=tpb))

    def exact_sample(tick):
        sec, marks = Fraction(0), tempos + [(tick, None)]
        for (start, tempo), (stop, _) in zip(marks, marks[1:]):
            if start < tick:
                sec += Fraction((min(stop, tick) - start) * tempo, tpb * 1_000_000)
        return int(sec * SR_IN + Fraction(1, 2))
    starts = [exact_sample(i * gap) for i in range(7)]
    stops = [exact_sample(i * gap + 25) for i in range(7)]
    assert len(set(np.diff(starts))) > 1  # the tempo changes moved the notes
    held, _ = render(song_of([on(64), off(64, time=4800)]))  # the same note, never released
    for s, e in zip(starts, stops):
        assert s == 0 or not audio[s - 1].any()  # silence right before the onset
        # Sample-exact up to and including the note-off's sample (the release's gain 1.0),
        # and the release changes the very next one.
        assert np.array_equal(audio[s:e + 1], held[:e + 1 - s])
        assert not np.array_equal(audio[e + 1], held[e + 1 - s])
    assert np.abs(held[:1000]).max() > 0.05


def test_pitch_by_frequency_estimate_and_pitch_bend():
    sr = 48000
    track = [on(57), off(57, time=480),        # A3, 220 Hz
             on(76, time=480), off(76, time=480),  # E5, 659.26 Hz
             mido.Message("pitchwheel", pitch=8191, time=480), on(69), off(69, time=480)]
    audio, _ = render(song_of(track), sample_rate=sr)
    mono = audio[:, 0]
    bent = 440 * 2 ** (2 * 8191 / 8192 / 12)  # +2 semitones, the default bend range
    for start, want in [(0.05, 220.0), (1.05, 659.255), (2.05, bent)]:
        got = freq_of(mono[int(start * sr):int((start + 0.4) * sr)], sr)
        assert abs(got / want - 1) < 0.002, (start, got, want)


def test_program_change_mid_song_switches_instrument(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("programs:\n  0: {instrument: piano}\n  40: {instrument: organ}\n")
    track = [on(60), off(60, time=400),
             mido.Message("program_change", program=40, time=80), on(60), off(60, time=400)]
    source = SineSource()
    audio, _ = render(song_of(track), preset=str(preset), source=source)
    assert [k.instrument for k in source.rendered] == [((0, 1.0),), ((1, 1.0),)]
    f0 = 440 * 2 ** (-9 / 12)

    def third_harmonic(seg):
        spec = np.abs(np.fft.rfft(seg[:, 0] * np.hanning(len(seg))))
        bins = np.fft.rfftfreq(len(seg), 1 / SR_IN)
        return spec[np.argmin(abs(bins - 3 * f0))] / spec[np.argmin(abs(bins - f0))]
    assert third_harmonic(audio[1000:5000]) < 0.01 < 0.3 < third_harmonic(audio[9000:13000])


def test_sustain_pedal_and_a_note_longer_than_the_generated_one():
    # The source's notes last 1 s; the held notes must sound on (sustain loop) until released.
    pedal = [cc(64, 127), on(60), off(60, time=240), cc(64, 0, time=2400 - 240)]  # up at 2.5 s
    held = [on(60), off(60, time=2880)]                                            # 3 s note
    plain = [on(60), off(60, time=240)]
    rms = lambda a, t0, t1: float(np.sqrt(np.mean(a[int(t0 * SR_IN):int(t1 * SR_IN)] ** 2)))
    a_pedal, _ = render(song_of(pedal))
    a_held, _ = render(song_of(held))
    a_plain, _ = render(song_of(plain))
    assert rms(a_pedal, 2.0, 2.4) > 0.005 and rms(a_held, 2.0, 2.9) > 0.005
    assert rms(a_plain, 1.0, 1.5) == 0.0          # released at 0.25 s, gone 0.3 s later
    assert rms(a_pedal, 2.9, 3.4) == 0.0          # pedal up at 2.5 s + 0.3 s release
    assert rms(a_held, 3.4, 3.9) == 0.0


def test_zero_length_and_overlapping_same_key_notes():
    track = [on(67), off(67),                     # zero length, at 0
             on(60, time=960), on(60, time=480), off(60, time=240), off(60, time=240)]
    audio, synth = render(song_of(track))
    assert audio[0].any() and not audio[int(0.4 * SR_IN):SR_IN].any()  # released at once
    first, second = SR_IN, int(1.5 * SR_IN)
    assert not audio[first - 1].any() and audio[first].any()
    # After the old voice's 5 ms steal fade, only the re-struck note sounds: a fresh note.
    fresh, _ = render(song_of([on(60), off(60, time=240)]))
    assert np.array_equal(audio[second + 200:second + 3000], fresh[200:3000])


def test_chord_of_8_and_24_full_velocity_voices_stay_inside_the_bus():
    pitches = [48, 52, 55, 60, 64, 67, 72, 76]
    chord = [on(p, vel=127) for p in pitches] + [off(pitches[0], time=960)] + \
        [off(p) for p in pitches[1:]]
    audio, synth = render(song_of(chord), sample_rate=48000)
    assert np.abs(audio).max() < 1.0
    spec = np.abs(np.fft.rfft(audio[2400:2400 + 24000, 0]))
    bins = np.fft.rfftfreq(24000, 1 / 48000)
    floor = np.median(spec)
    for p in pitches:
        k = np.argmin(abs(bins - 440 * 2 ** ((p - 69) / 12)))
        assert spec[k - 1:k + 2].max() > 100 * floor, p
    dense = [on(p, vel=127, ch=c) for c in range(3) for p in pitches] + [off(48, time=960)]
    audio, synth = render(song_of(dense), sample_rate=48000, tail=0.5)
    assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.5
    assert synth.stats()["limiter_blocks"] > 0


def busy_song():
    """Two channels, pedal, bends, a program change and two tempos: 24 notes each, seeded."""
    rng = np.random.default_rng(3)
    melody, bass = [mido.Message("program_change", program=40)], [cc(64, 127, ch=1)]
    for _ in range(24):
        pitch, low = int(rng.integers(60, 80)), int(rng.integers(36, 48))
        melody += [on(pitch, time=int(rng.integers(0, 90)), vel=int(rng.integers(30, 90))),
                   mido.Message("pitchwheel", pitch=int(rng.integers(-3000, 3000)), time=7),
                   off(pitch, time=int(rng.integers(10, 200)))]
        bass += [on(low, ch=1, vel=40, time=int(rng.integers(0, 150))),
                 off(low, ch=1, time=int(rng.integers(3, 300)))]
    return song_of([mido.MetaMessage("set_tempo", tempo=400_000, time=0),
                    mido.MetaMessage("set_tempo", tempo=650_000, time=1500)], melody, bass)


def test_render_is_deterministic_and_equals_driving_the_synth_block_by_block():
    from singsynth.hosts.render import BLOCK, RenderReport, playable_events
    song = busy_song()
    first, synth = render(song, sample_rate=44100, tail=0.5)
    again, _ = render(song, sample_rate=44100, tail=0.5)
    assert np.array_equal(first, again) and np.abs(first).max() > 0.01
    assert synth.stats()["limiter_blocks"] == 0  # so block size must not matter either
    for block in (BLOCK, 300):
        live = synth_for(44100)
        events = playable_events(song, 44100, live.preset, RenderReport("x", "y"))
        out, start, i = [], 0, 0
        total = len(first) + live.latency  # render drops the limiter's look-ahead lead-in
        while start < total:
            n = min(block, total - start)
            while i < len(events) and events[i].sample < start + n:
                live.handle(events[i].message, offset=events[i].sample - start)
                i += 1
            out.append(live.process(n))
            start += n
        played = np.concatenate(out)[live.latency:]
        if block == BLOCK:  # the very same calls: bit-identical
            assert np.array_equal(played, first)
        else:  # other blocks: the same events on the same samples, float rounding apart
            assert np.allclose(played, first, rtol=0, atol=1e-6)


def test_channel_10_is_skipped_with_a_warning_unless_the_preset_maps_it(tmp_path):
    from singsynth.hosts.render import RenderReport, render_song
    track = [on(60), on(36, ch=9), off(60, time=240), off(36, ch=9)]
    report = RenderReport("x", "y")
    source = SineSource()
    render_song(song_of(track), synth_for(SR_IN, source=source), tail=0.5, report=report)
    assert {k.pitch for k in source.rendered} == {60}
    assert len(report.warnings) == 1 and "channel 10 (drums)" in report.warnings[0] \
        and "skipped its 1 notes" in report.warnings[0]
    preset = tmp_path / "drums.yaml"
    preset.write_text("channels:\n  9: {instrument: strings}\n")
    report, source = RenderReport("x", "y"), SineSource()
    render_song(song_of(track), synth_for(SR_IN, str(preset), source), tail=0.5, report=report)
    assert sorted((k.pitch, k.instrument) for k in source.rendered) == [
        (36, ((3, 1.0),)), (60, ((0, 1.0),))]
    assert report.warnings == []


def test_render_file_is_bit_identical_twice_and_reuses_the_disk_cache(tmp_path):
    import soundfile

    from singsynth.hosts.audiofile import NORMALIZE_PEAK
    from singsynth.hosts.render import render_file
    song = tmp_path / "busy.mid"
    song.write_bytes(midi_bytes([on(60), on(64), off(60, time=480), off(64)]))
    kwargs = dict(preset="default", cache_dir=tmp_path / "cache", progress=False, tail=0.5)
    one = render_file(song, tmp_path / "a.wav", source=SineSource(), **kwargs)
    two = render_file(song, tmp_path / "b.wav", source=SineSource(), **kwargs)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert one.notes_from_disk == 0 and two.notes_from_disk == two.distinct_notes == 2
    assert "x real time" in two.summary()
    data, sr = soundfile.read(tmp_path / "a.wav")
    assert sr == 48000 and data.shape == (24000 + 24000 + 1, 2)
    render_file(song, tmp_path / "m.flac", source=SineSource(), channels=1, normalize=True,
                **kwargs)
    mono, sr = soundfile.read(tmp_path / "m.flac")
    assert mono.ndim == 1 and abs(np.abs(mono).max() - NORMALIZE_PEAK) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.wav", "b.wav", "busy.mid", "cache", "m.flac"]


# ---- end to end through the CLI with the real tiny checkpoint -------------------------------

def test_cli_renders_with_the_tiny_checkpoint_and_damaged_file_warns(tmp_path, tiny_checkpoint,
                                                                    capsys):
    import soundfile
    body = (b"\x00\xc0\x00" + b"\x00\x90\x3c\x64" + b"\x00\x90\xbe\x64"  # 2nd note damaged
            + b"\x83\x60\x80\x3c\x00" + EOT)
    song = tmp_path / "damaged.mid"
    song.write_bytes(smf(body))
    out = tmp_path / "out.wav"
    argv = ["render", str(song), "-F", str(out), "--model", str(tiny_checkpoint), "--preset",
            "default", "--cache-dir", str(tmp_path / "cache"), "--tail", "0.25", "-q"]
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 0
    assert "data byte over 127" in captured.err and "warning" in captured.err
    assert "x real time" in captured.out and "1 distinct notes, 0 from the disk cache" in captured.out
    audio, sr = soundfile.read(out)
    assert sr == 48000 and audio.shape == (24000 + 12000 + 1, 2)
    assert np.abs(audio[:24000]).max() > 1e-4 and np.abs(audio).max() <= 1.0
    first = out.read_bytes()
    with pytest.raises(SystemExit) as info:
        cli_main(argv + ["-f"])
    assert info.value.code == 0 and out.read_bytes() == first
    assert "1 from the disk cache" in capsys.readouterr().out


def test_lazy_model_source_reads_the_header_and_loads_only_to_generate(tiny_checkpoint):
    from singsynth.model.checkpoint import load_model
    from singsynth.model.files import LazySource, open_source
    from singsynth.model.source import ModelSource
    lazy = open_source(str(tiny_checkpoint))
    eager = ModelSource(load_model(tiny_checkpoint))
    assert isinstance(lazy, LazySource) and lazy._source is None
    assert lazy.instruments == ["piano", "organ", "guitar", "strings"]
    assert (lazy.sample_rate, lazy.note_samples) == (eager.sample_rate, eager.note_samples)
    assert lazy.identity() == eager.identity()  # the same disk-cache folder either way
    key = [NoteKey(single(1), 60, 2.0)]
    assert np.array_equal(lazy.render(key), eager.render(key)) and lazy._source is not None


# ---- nothing half-done: refusals and interruptions leave no trace ---------------------------

def test_a_song_with_no_playable_note_is_refused_not_rendered_silent(tmp_path, capsys,
                                                                     tiny_checkpoint):
    """Drums only, with a preset that gives channel 10 nothing (the GM default has a kit)."""
    song = tmp_path / "drums.mid"
    song.write_bytes(midi_bytes([on(36, ch=9), off(36, ch=9, time=480)]))
    code, err = run_cli([song, "-o", tmp_path / "out.wav", "--no-cache", "--model",
                         tiny_checkpoint, "--preset", "default"], capsys)
    assert code == 1 and "none of its 1 notes can be played" in err and "channel 10" in err
    assert os.listdir(tmp_path) == ["drums.mid"]


def test_folders_made_for_the_output_are_removed_when_the_render_fails(tmp_path, capsys):
    song = tmp_path / "in.mid"
    song.write_bytes(b"not midi at all")
    code, err = run_cli([song, "-o", tmp_path / "new" / "deeper" / "out.wav"], capsys)
    assert code == 1 and "not a MIDI file" in err
    assert os.listdir(tmp_path) == ["in.mid"]


def test_the_default_preset_with_another_model_says_which_preset_to_pass(tmp_path,
                                                                        tiny_checkpoint, capsys):
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    code, err = run_cli([song, "-o", tmp_path / "out.wav", "--model", tiny_checkpoint], capsys)
    assert code == 1 and "unknown instrument" in err and "--preset default to play" in err
    assert len(err.strip().splitlines()) == 1 and os.listdir(tmp_path) == ["in.mid"]


def test_sigterm_mid_render_exits_143_and_leaves_no_partial_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    song = tmp_path / "in.mid"
    song.write_bytes(midi_bytes([on(60), off(60, time=4800)]))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "singsynth", "render", str(song), "-o",
                             str(out / "song.wav"), "--no-cache", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob(".song.wav.*.part")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "singsynth render: terminated" in err, err
    assert os.listdir(tmp_path) == ["in.mid"]


# ---- pipelines: stdin/stdout, several inputs, gain, format and bits, --json -----------------

def tiny_args(tmp_path, tiny_checkpoint):
    return ["--model", str(tiny_checkpoint), "--preset", "default", "--cache-dir",
            str(tmp_path / "cache"), "--tail", "0.25", "-q"]


def two_note_song(path, first=60):
    path.write_bytes(midi_bytes([on(first), off(first, time=240), on(first + 7),
                                 off(first + 7, time=240)]))
    return path


def test_stdin_to_stdout_is_the_file_render_and_stdout_carries_only_audio(tmp_path,
                                                                          tiny_checkpoint):
    import subprocess
    import sys
    song = two_note_song(tmp_path / "song.mid")
    args = tiny_args(tmp_path, tiny_checkpoint)
    with pytest.raises(SystemExit) as info:
        cli_main(["render", str(song), "-o", str(tmp_path / "file.wav"), *args])
    assert info.value.code == 0
    done = subprocess.run([sys.executable, "-m", "singsynth", "render", "-", "-o", "-", *args],
                          input=song.read_bytes(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (tmp_path / "file.wav").read_bytes()  # not one byte of text
    assert b"rendered stdin -> stdout" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["cache", "file.wav", "song.mid"]
    # Not a MIDI file on stdin: one line naming stdin, and not one byte on stdout.
    bad = subprocess.run([sys.executable, "-m", "singsynth", "render", "-", "-o", "-", *args],
                         input=b"hello", capture_output=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout == b""
    assert bad.stderr.decode().startswith("singsynth render: error: stdin")
    assert len(bad.stderr.splitlines()) == 1


def test_stdout_takes_the_format_and_bits_asked_for(tmp_path, tiny_checkpoint, capfdbinary,
                                                   monkeypatch):
    import soundfile
    song = two_note_song(tmp_path / "song.mid")
    args = tiny_args(tmp_path, tiny_checkpoint)
    with pytest.raises(SystemExit):
        cli_main(["render", str(song), "-o", str(tmp_path / "ref.flac"), "--bits", "16", *args])
    capfdbinary.readouterr()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(song.read_bytes())))
    with pytest.raises(SystemExit) as info:
        cli_main(["render", "-", "-o", "-", "--format", "flac", "--bits", "16", *args])
    out, err = capfdbinary.readouterr()
    assert info.value.code == 0 and out[:4] == b"fLaC" and b"-> stdout" in err
    assert out == (tmp_path / "ref.flac").read_bytes()
    assert soundfile.info(io.BytesIO(out)).subtype == "PCM_16"


def test_several_inputs_render_into_a_folder_with_one_json_report_each(tmp_path,
                                                                       tiny_checkpoint, capsys):
    import json
    a, b = two_note_song(tmp_path / "a.mid", 60), two_note_song(tmp_path / "b.mid", 72)
    args = tiny_args(tmp_path, tiny_checkpoint)
    with pytest.raises(SystemExit) as info:
        # Options may sit between the inputs.
        cli_main(["render", str(a), "--out-dir", str(tmp_path / "out"), str(b), "--json", *args])
    assert info.value.code == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["input"], r["output"]) for r in reports] == [
        (str(a), str(tmp_path / "out" / "a.wav")), (str(b), str(tmp_path / "out" / "b.wav"))]
    assert all(r["distinct_notes"] == 2 and r["audio_seconds"] > 0.5 for r in reports)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.wav", "b.wav"]
    # The same audio as one render of each; -o FOLDER/ means --out-dir.
    with pytest.raises(SystemExit):
        cli_main(["render", str(b), "-o", str(tmp_path / "one") + "/", *args])
    assert (tmp_path / "one" / "b.wav").read_bytes() == (tmp_path / "out" / "b.wav").read_bytes()


def test_gain_in_db_scales_the_samples_and_says_when_it_clips(tmp_path, tiny_checkpoint,
                                                              capsys):
    import soundfile
    song = two_note_song(tmp_path / "song.mid")
    args = tiny_args(tmp_path, tiny_checkpoint)
    for name, gain in (("plain.wav", "0"), ("half.wav", "-6.0206"), ("loud.wav", "40")):
        with pytest.raises(SystemExit) as info:
            cli_main(["render", str(song), "-o", str(tmp_path / name), "--bits", "32f",
                      "--gain", gain, "--normalize", *args])
        assert info.value.code == 0
    err = capsys.readouterr().err
    assert "--gain +40 dB clipped" in err and err.count("clipped") == 1
    plain, _ = soundfile.read(tmp_path / "plain.wav", dtype="float32")
    half, _ = soundfile.read(tmp_path / "half.wav", dtype="float32")
    loud, _ = soundfile.read(tmp_path / "loud.wav", dtype="float32")
    assert soundfile.info(tmp_path / "half.wav").subtype == "FLOAT"
    assert np.allclose(half, plain * 0.5, atol=1e-6)
    assert np.abs(plain).max() == pytest.approx(10 ** (-1 / 20), abs=1e-4)  # --normalize
    assert np.abs(loud).max() == 1.0


@pytest.mark.parametrize("bits, ext, subtype", [
    ("16", ".wav", "PCM_16"), ("24", ".flac", "PCM_24"), (None, ".ogg", "VORBIS")])
def test_bits_and_formats_reach_the_file(tmp_path, tiny_checkpoint, bits, ext, subtype):
    import soundfile
    song = two_note_song(tmp_path / "song.mid")
    out = tmp_path / f"out{ext}"
    with pytest.raises(SystemExit) as info:
        cli_main(["render", str(song), "-o", str(out), *(["--bits", bits] if bits else []),
                  *tiny_args(tmp_path, tiny_checkpoint)])
    assert info.value.code == 0 and soundfile.info(out).subtype == subtype


@pytest.mark.parametrize("argv, words", [
    (["{a}", "-o", "{t}/x.wav", "--format", "flac"], "--format flac does not match"),
    (["{a}", "-o", "{t}/x.flac", "--bits", "32f"], "FLAC stores integer samples only"),
    (["{a}", "-o", "{t}/x.ogg", "--bits", "24"], "no bit depth"),
    (["{a}", "{b}", "-o", "{t}/x.wav"], "give a folder with --out-dir"),
    (["{a}", "{b}", "-o", "-"], "cannot all go to standard output"),
    (["{a}", "{t}/sub/a.mid", "--out-dir", "{t}/o"], "would both be written"),
    (["-", "-", "--out-dir", "{t}/o"], "only once"),
    (["{a}", "-o", "-", "--json"], "--json prints to standard output"),
    (["{a}", "{b}", "--out-dir", "{t}/o", "--bits", "32f", "--format", "flac"], "FLAC stores"),
    (["{a}", "{t}/bad.mid", "--out-dir", "{t}/o"], "not a MIDI file"),  # checked up front
    (["{a}", "{b}", "--out-dir", "{t}"], "a.wav already exists; pass -f"),
])
def test_output_conflicts_are_one_line_before_anything_is_written(tmp_path, capsys, argv, words):
    two_note_song(tmp_path / "a.mid")
    two_note_song(tmp_path / "b.mid")
    (tmp_path / "sub").mkdir()
    two_note_song(tmp_path / "sub" / "a.mid")
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    (tmp_path / "a.wav").write_bytes(b"keep me")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [x.format(a=tmp_path / "a.mid", b=tmp_path / "b.mid", t=tmp_path) for x in argv]
    code, err = run_cli([*argv, "--no-cache"], capsys)
    assert code == 1 and words in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "a.wav").read_bytes() == b"keep me"
