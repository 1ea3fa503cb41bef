"""singsynth.hosts.midifile: timing to the sample, merging, and every damaged or bad file we decide on."""
import io
from fractions import Fraction

import mido
import pytest

from singsynth.errors import MidiFileError
from singsynth.hosts.midifile import read_midi


def smf(*bodies, fmt=1, division=480, ntracks=None, sizes=None):
    """Bytes of a MIDI file from raw track bodies (sizes: override declared chunk lengths)."""
    ntracks = len(bodies) if ntracks is None else ntracks
    out = b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + ntracks.to_bytes(2, "big")
    out += (division & 0xFFFF).to_bytes(2, "big")
    for i, body in enumerate(bodies):
        size = len(body) if sizes is None else sizes[i]
        out += b"MTrk" + size.to_bytes(4, "big") + body
    return out


EOT = b"\x00\xff\x2f\x00"
NOTE = b"\x00\x90\x3c\x64" + b"\x83\x60\x80\x3c\x00"  # C4 on at 0, off 480 ticks later


def save(mid):
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def test_tempo_changes_place_events_at_the_exact_sample():
    mid = mido.MidiFile(ticks_per_beat=96)
    conductor, notes = mid.add_track(), mid.add_track()
    conductor.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=333_333, time=192))   # at 1.0 s
    conductor.append(mido.MetaMessage("set_tempo", tempo=1_234_567, time=96))
    for _ in range(12):
        notes.append(mido.Message("note_on", note=60, velocity=90, time=0))
        notes.append(mido.Message("note_off", note=60, time=37))
    song = read_midi(mid)
    # Reference: exact fractions, rounded half up.
    tempo_at = [(0, 500_000), (192, 333_333), (288, 1_234_567)]

    def exact(tick):
        sec = Fraction(0)
        for i, (start, tempo) in enumerate(tempo_at):
            stop = tempo_at[i + 1][0] if i + 1 < len(tempo_at) else None
            span = (min(tick, stop) if stop is not None else tick) - start
            if span > 0:
                sec += Fraction(span * tempo, 96 * 1_000_000)
        return sec
    events = song.timed_events(44100)
    ticks = [37 * ((i + 1) // 2) for i in range(24)]
    for event, tick in zip(events, ticks):
        assert event.sample == int(exact(tick) * 44100 + Fraction(1, 2))
    assert [e.message.type for e in events[:4]] == ["note_on", "note_off", "note_on", "note_off"]
    # mido's own float clock agrees to well under a sample.
    assert abs(song.duration - mid.length) < 1e-9
    assert song.timed_events(48000)[2].sample == 48000 * 37 // 192  # 37 ticks at 120 BPM, 96 tpb


def test_format_0_and_1_give_the_same_events_and_running_status_is_read():
    msgs = [mido.Message("note_on", note=60 + i, velocity=80, time=10) for i in range(8)]
    msgs += [mido.Message("note_off", note=60 + i, time=5 if i else 100) for i in range(8)]
    one = mido.MidiFile(type=0, ticks_per_beat=480)
    one.tracks.append(mido.MidiTrack(m.copy() for m in msgs))
    data = save(one)
    assert data.count(b"\x90") == 1  # mido wrote running status: one status byte for 8 notes
    two = mido.MidiFile(type=1, ticks_per_beat=480)
    two.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)]))
    two.tracks.append(mido.MidiTrack(m.copy() for m in msgs))
    a, b = read_midi(data).timed_events(48000), read_midi(two).timed_events(48000)
    assert [(e.sample, e.message) for e in a] == [(e.sample, e.message) for e in b]
    assert [e.message.note for e in a[:8]] == list(range(60, 68))
    assert a[7].sample == 80 * 50  # 80 ticks at 480 tpb, 120 BPM = 1/12 s


def test_tracks_merge_in_time_order_and_zero_length_notes_keep_their_order():
    mid = mido.MidiFile(ticks_per_beat=480)
    t1, t2 = mid.add_track(), mid.add_track()
    t1.append(mido.Message("note_on", channel=0, note=60, velocity=100, time=480))
    t1.append(mido.Message("note_off", channel=0, note=60, time=0))             # zero length
    t2.append(mido.Message("program_change", channel=5, program=40, time=240))
    t2.append(mido.Message("note_on", channel=5, note=70, velocity=1, time=0))
    t2.append(mido.Message("note_on", channel=5, note=70, velocity=0, time=720))  # = note_off
    got = [(e.sample, e.message.type, e.message.channel) for e in read_midi(mid).timed_events(1000)]
    assert got == [(250, "program_change", 5), (250, "note_on", 5), (500, "note_on", 0),
                   (500, "note_off", 0), (1000, "note_off", 5)]


def test_smpte_timing_is_supported():
    # -25 frames/s, 40 ticks per frame: 1000 ticks per second, tempo ignored.
    body = b"\x00\xff\x51\x03\x0f\x42\x40" + b"\x00\x90\x3c\x64\x87\x68\x80\x3c\x00" + EOT
    song = read_midi(smf(body, division=(0x100 - 25) << 8 | 40))
    assert song.smpte == (25, 40)
    assert [e.sample for e in song.timed_events(48000)] == [0, 48000]


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not a MIDI file"),
    (b"MThd\x00\x00\x00\x06\x00", "truncated inside its header"),
    (smf(NOTE + EOT, fmt=2), "format 2"),
    (smf(NOTE + EOT, fmt=7), "unknown MIDI format 7"),
    (smf(NOTE + EOT, division=0), "division of 0"),
    (smf(NOTE + EOT, division=(0x100 - 23) << 8 | 4), "corrupt SMPTE timing"),
    (smf(NOTE + EOT, division=(0x100 - 25) << 8 | 0), "corrupt SMPTE timing"),
    (smf(ntracks=0), "no tracks"),
    (smf(b"\x00\xff\x03\x01A" + EOT), "no notes"),
    (smf(b"\x00\x90\x3c\x64\x00\xf4\x01\x02" + EOT), "illegal status byte 0xf4"),
    (smf(b"\x00\x3c\x64" + EOT), "where a status byte was expected"),
    (smf(b"\x00\x90\x3c\x64\x81\x81\x81\x81\x01\x80\x3c\x00" + EOT), "corrupt delta time"),
])
def test_bad_files_are_refused_with_one_line(data, words):
    with pytest.raises(MidiFileError) as info:
        read_midi(data)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_data_byte_over_127_skips_only_that_event():
    body = (b"\x00\x90\x3c\x64" + b"\x00\x90\xbe\x64" + b"\x00\x90\x40\x50"
            + b"\x83\x60\x80\x3c\x00\x00\x80\x40\x00" + EOT)
    song = read_midi(smf(body))
    assert [(m.type, m.note) for _, m in song.events] == [
        ("note_on", 60), ("note_on", 64), ("note_off", 60), ("note_off", 64)]
    assert len(song.warnings) == 1 and "data byte over 127" in song.warnings[0]


@pytest.mark.parametrize("delta", [-1, +1])
def test_chunk_length_off_by_one_resynchronises_to_the_next_track(delta):
    first, second = NOTE + EOT, b"\x00\x91\x40\x64\x83\x60\x81\x40\x00" + EOT
    song = read_midi(smf(first, second, sizes=[len(first) + delta, len(second)]))
    assert [(m.channel, m.type) for _, m in song.events] == [
        (0, "note_on"), (1, "note_on"), (0, "note_off"), (1, "note_off")]
    # One byte too long: the end-of-track ends the track, nothing is lost or said.
    # One byte too short: the end-of-track is cut off and the next chunk found by search.
    assert (delta == 1) == (not any("resynchronised" in w for w in song.warnings))


def test_file_one_byte_short_keeps_every_note():
    song = read_midi(smf(NOTE + NOTE + EOT)[:-1])
    assert [m.type for _, m in song.events] == ["note_on", "note_off"] * 2
    assert any("cut off" in w for w in song.warnings)


def test_truncated_track_renders_what_was_read_and_says_so():
    data = smf(NOTE * 10 + EOT, NOTE + EOT)
    cut = data[:14 + 8 + len(NOTE) * 4 + 6]  # inside the 5th note-off of the first track
    song = read_midi(cut)
    assert sum(1 for _, m in song.events if m.type == "note_on") == 5
    assert any("track 0 is cut off" in w for w in song.warnings)
    assert any("declares 2 tracks but only 1" in w for w in song.warnings)


def test_unknown_chunks_are_skipped_and_rmid_is_unwrapped():
    data = smf(NOTE + EOT)
    alien = data[:14] + b"XFIH" + (3).to_bytes(4, "big") + b"abc" + data[14:]
    assert len(read_midi(alien).events) == 2 and read_midi(alien).warnings == []
    rmid = b"RIFF" + (len(data) + 12).to_bytes(4, "little") + b"RMIDdata" + \
        len(data).to_bytes(4, "little") + data
    assert len(read_midi(rmid).events) == 2


def test_demo_file_is_a_clean_multi_instrument_song():
    song = read_midi("examples/demo.mid")
    channels = {m.channel for _, m in song.events if m.type == "note_on"}
    types = {m.type for _, m in song.events}
    assert song.warnings == [] and 30 <= song.duration <= 60
    assert {0, 9} <= channels and len(channels) >= 5
    assert {"program_change", "pitchwheel", "control_change"} <= types
    assert len({tempo for _, tempo in song.tempos}) > 1
    programs = [m.program for _, m in song.events if m.type == "program_change" and m.channel == 0]
    assert len(programs) == 2
