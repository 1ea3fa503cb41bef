"""Offline render: disk cache, CLI bad input, exact-sample timing, pitch, determinism, end to end."""
import io
import os

import mido
import numpy as np
import pytest

from singsynth.cli import main as cli_main
from singsynth.diskcache import DiskCachedSource, key_name
from singsynth.engine.source import NoteKey, single

SR_IN = 16000


class SineSource:
    """A deterministic NoteSource: each note is a sine at the key's pitch, amplitude by velocity,
    with a 1-sample onset click of 1.0 so the start of every note can be found exactly."""

    sample_rate = SR_IN
    note_samples = 16000
    instruments = ["piano", "organ", "guitar", "strings"]

    def __init__(self):
        self.rendered = []

    def _note(self, key):
        t = np.arange(self.note_samples) / self.sample_rate
        freq = 440.0 * 2 ** ((key.pitch - 69) / 12)
        note = (0.1 + 0.05 * key.velocity) * np.sin(2 * np.pi * freq * t)
        return note.astype(np.float32)

    def render(self, keys):
        self.rendered.extend(keys)
        return np.stack([self._note(k) for k in keys]) if keys else \
            np.zeros((0, self.note_samples), np.float32)

    def stream(self, keys, chunk=256):
        whole = self.render(keys)
        for start in range(0, self.note_samples, chunk):
            yield whole[:, start:start + chunk]

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
    ("missing-folder/out.wav", "check that the folder exists"),
    ("out.mp3", "name the output .wav or .flac"),
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


def test_missing_input_file_is_one_line(tmp_path, capsys):
    code, err = run_cli([tmp_path / "nope.mid", "-F", tmp_path / "out.flac"], capsys)
    assert code == 1 and "cannot read" in err and "nope.mid" in err
    assert os.listdir(tmp_path) == []
