"""Standard MIDI files -> timed engine events at exact sample positions (no ports).

We read the bytes ourselves instead of with `mido.MidiFile` so that a damaged file
can be rendered as far as it can be read (mido stops at the first bad byte), and so
that every problem can be named in one line. Channel messages become `mido.Message`
objects, exactly what `Synth.handle` takes.

Time is kept exact: a tick's time in seconds is the integer fraction N / D (tempo
segments summed in microseconds), and its sample is round(N * sample_rate / D), so no
rounding error accumulates over a long song and a render never depends on block size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import mido

from singsynth.errors import MidiFileError
from singsynth.files import read_bytes, shown

DEFAULT_TEMPO = 500_000  # microseconds per quarter note (120 BPM)
# The largest MIDI files (piano-roll "black MIDI") run to tens of MB; beyond this it is
# not a song.
MAX_FILE_BYTES = 256 << 20
SMPTE_RATES = {24: (24, 1), 25: (25, 1), 29: (30000, 1001), 30: (30, 1)}  # fps as a fraction
# Bytes of data after the status byte, by the status byte's high nibble.
DATA_LENGTH = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}


@dataclass(frozen=True)
class TimedEvent:
    """One channel message at its sample position (at the render's output rate)."""

    sample: int
    message: mido.Message


@dataclass
class Song:
    """A MIDI file, tracks merged, with its tempo map.

    Attributes:
        format: SMF format, 0 or 1.
        ticks_per_beat: PPQ division, or None for SMPTE timing.
        smpte: (frames per second as in the file: 24, 25, 29 or 30, ticks per frame) or None.
        events: (tick, message) for every channel message, in play order.
        tempos: (tick, microseconds per beat) for every tempo change, in order.
        end_tick: tick of the last event of any kind (end-of-track included).
        warnings: one line per thing that was skipped while reading a damaged file.
    """

    format: int
    ticks_per_beat: Optional[int]
    smpte: Optional[Tuple[int, int]]
    events: List[Tuple[int, mido.Message]]
    tempos: List[Tuple[int, int]]
    end_tick: int
    warnings: List[str] = field(default_factory=list)

    def _clock(self):
        """-> function tick -> (N, D) with time in seconds = N / D, exactly."""
        if self.smpte is not None:
            fps, ticks_per_frame = self.smpte
            num, den = SMPTE_RATES[fps]
            return lambda tick: (tick * den, num * ticks_per_frame)
        d = self.ticks_per_beat * 1_000_000
        starts, sums, tempos = [0], [0], [DEFAULT_TEMPO]  # tick, N at that tick, tempo after it
        for tick, tempo in self.tempos:
            sums.append(sums[-1] + (tick - starts[-1]) * tempos[-1])
            starts.append(tick)
            tempos.append(tempo)

        def clock(tick):
            i = _bisect_right(starts, tick) - 1
            return sums[i] + (tick - starts[i]) * tempos[i], d
        return clock

    def seconds(self, tick: int) -> float:
        """Time of `tick` in seconds from the start of the song."""
        n, d = self._clock()(tick)
        return n / d

    @property
    def duration(self) -> float:
        """Length in seconds up to the last event (release tails not included)."""
        return self.seconds(self.end_tick)

    @property
    def note_count(self) -> int:
        return sum(1 for _, m in self.events if m.type == "note_on")

    def sample_at(self, tick: int, sample_rate: int) -> int:
        """The sample of `tick`: round(seconds * sample_rate), exactly (half rounds up)."""
        n, d = self._clock()(tick)
        return (2 * n * sample_rate + d) // (2 * d)

    def timed_events(self, sample_rate: int) -> List[TimedEvent]:
        """Every channel message at round(seconds * sample_rate), in play order."""
        clock = self._clock()
        out = []
        for tick, msg in self.events:
            n, d = clock(tick)
            out.append(TimedEvent((2 * n * sample_rate + d) // (2 * d), msg))  # round half up
        return out


def _bisect_right(values, x):
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < values[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def read_midi(source: Union[str, os.PathLike, bytes, mido.MidiFile]) -> Song:
    """Read a format 0 or 1 standard MIDI file (PPQ or SMPTE timing).

    Args:
        source: a path, the file's bytes, or an in-memory `mido.MidiFile`.
    Raises:
        MidiFileError: not a MIDI file, empty, format 2, illegal status byte, corrupt
            timing, no notes. Damage that can be skipped is reported in `Song.warnings`.
    """
    name = "MIDI data"
    if isinstance(source, mido.MidiFile):
        import io
        buf = io.BytesIO()
        source.save(file=buf)
        data = buf.getvalue()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        name = shown(os.fspath(source))
        # A regular file of bounded size: /dev/zero or a FIFO given as the song would
        # otherwise be read until memory runs out, or forever.
        data = read_bytes(source, "a standard MIDI file (.mid)", MAX_FILE_BYTES, MidiFileError)
    return _parse(data, name)


def _parse(data: bytes, name: str) -> Song:
    if not data:
        raise MidiFileError(f"{name} is empty (0 bytes); give a standard MIDI file (.mid)")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":  # RIFF-wrapped MIDI (.rmi)
        at = data.find(b"MThd", 12)
        data = data[at:] if at >= 0 else data
    if data[:4] != b"MThd":
        raise MidiFileError(f"{name} is not a MIDI file (it starts with {data[:4]!r}, "
                            "not b'MThd'); give a standard MIDI file (.mid)")
    header_len = int.from_bytes(data[4:8], "big")
    if len(data) < 14 or header_len < 6:
        raise MidiFileError(f"{name} is truncated inside its header; the file is damaged")
    fmt = int.from_bytes(data[8:10], "big")
    ntracks = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")
    if fmt == 2:
        raise MidiFileError(f"{name} is format 2 (independent sequences), which singsynth does "
                            "not play; save it as format 0 or 1")
    if fmt > 2:
        raise MidiFileError(f"{name} has unknown MIDI format {fmt}; expected 0 or 1")
    ticks_per_beat = smpte = None
    if division & 0x8000:
        fps, per_frame = 256 - (division >> 8), division & 0xFF
        if fps not in SMPTE_RATES or per_frame == 0:
            raise MidiFileError(f"{name} has corrupt SMPTE timing ({fps} frames/s, {per_frame} "
                                "ticks/frame); expected 24, 25, 29 or 30 frames/s and ticks > 0")
        smpte = (fps, per_frame)
    elif division == 0:
        raise MidiFileError(f"{name} has a time division of 0 ticks per beat; the file is corrupt")
    else:
        ticks_per_beat = division
    if ntracks == 0:
        raise MidiFileError(f"{name} contains no tracks; nothing to render")

    warnings: List[str] = []
    tracks = []
    pos = 8 + header_len
    for index in range(ntracks):
        pos = _find_track(data, pos, index, warnings)
        if pos is None:
            warnings.append(f"the file declares {ntracks} tracks but only {index} could be "
                            f"found; skipped the missing {ntracks - index}")
            break
        size = int.from_bytes(data[pos + 4:pos + 8], "big")
        start, end = pos + 8, pos + 8 + size
        if end > len(data):
            warnings.append(f"track {index} is cut off: it declares {size} bytes but only "
                            f"{len(data) - start} are in the file; rendered what was there")
        events, stop = _read_track(data, start, min(end, len(data)), index, name, warnings)
        tracks.append(events)
        # The next chunk normally starts at `end`; `stop` lets `_find_track` resynchronise
        # when the declared length is off by a few bytes.
        pos = min(end, stop)

    merged, tempos, end_tick = [], [], 0
    for index, events in enumerate(tracks):
        for seq, (tick, kind, value) in enumerate(events):
            end_tick = max(end_tick, tick)
            if kind == "tempo":
                tempos.append((tick, index, seq, value))
            elif kind == "msg":
                merged.append((tick, index, seq, value))
    merged.sort(key=lambda e: e[:3])
    tempos.sort(key=lambda e: e[:3])
    song = Song(fmt, ticks_per_beat, smpte, [(t, m) for t, _, _, m in merged],
                [(t, v) for t, _, _, v in tempos], end_tick, warnings)
    if song.note_count == 0:
        damage = f" (damaged: {warnings[0]})" if warnings else ""
        raise MidiFileError(f"{name} contains no notes{damage}; nothing to render")
    return song


def _find_track(data: bytes, pos: int, index: int, warnings: List[str]) -> Optional[int]:
    """Position of the next MTrk chunk at or after `pos`, skipping unknown chunks."""
    while pos + 8 <= len(data):
        chunk = data[pos:pos + 4]
        if chunk == b"MTrk":
            return pos
        if chunk.isalpha() and chunk.isascii():  # an alien chunk: the standard says skip it
            pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "big")
            continue
        found = data.find(b"MTrk", pos)
        if found < 0 or found + 8 > len(data):
            return None
        warnings.append(f"track {index} starts {found - pos:+d} bytes from where the previous "
                        "chunk's length says; the length was wrong, resynchronised")
        return found
    return None


def _varint(data: bytes, pos: int, end: int) -> Tuple[int, int]:
    """Read a variable-length quantity (at most 4 bytes) -> (value, new pos)."""
    value = 0
    for i in range(4):
        if pos >= end:
            raise EOFError
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    raise ValueError("variable-length number longer than 4 bytes")


def _read_track(data, pos, end, index, name, warnings):
    """Parse one MTrk body; see `_read_events`."""
    skipped = []
    result = _read_events(data, pos, end, index, name, warnings, skipped)
    if skipped:
        warnings.append(f"track {index}: skipped {len(skipped)} event(s) with a data byte over "
                        f"127 (damaged bytes, first at tick {skipped[0]})")
    return result


def _read_events(data, pos, end, index, name, warnings, skipped):
    """Parse one MTrk body -> ([(tick, kind, value)], position where reading stopped).

    kind is "msg" (a mido.Message), "tempo" (microseconds per beat) or "meta" (only
    its tick matters). Raises MidiFileError for bytes that make the rest unreadable.
    """
    events, tick, status = [], 0, None
    while pos < end:
        event_start = pos
        try:
            delta, pos = _varint(data, pos, end)
            tick += delta
            if pos >= end:
                raise EOFError
            byte = data[pos]
            if byte >= 0x80:
                pos += 1
                if byte < 0xF0:
                    status = byte
            elif status is None:
                raise MidiFileError(f"{name}: track {index} has data byte 0x{byte:02x} at "
                                    f"byte {pos} where a status byte was expected; the file "
                                    "is corrupt")
            else:
                byte = status  # running status: `data[pos]` is the first data byte
            if byte == 0xFF:
                kind, pos = data[pos] if pos < end else None, pos + 1
                length, pos = _varint(data, pos, end)
                if kind is None or pos + length > end:
                    raise EOFError
                body, pos = data[pos:pos + length], pos + length
                if kind == 0x51 and length == 3 and int.from_bytes(body, "big") > 0:
                    events.append((tick, "tempo", int.from_bytes(body, "big")))
                elif kind == 0x51:
                    warnings.append(f"track {index}: skipped a corrupt tempo change at tick {tick}")
                else:
                    events.append((tick, "meta", kind))
                if kind == 0x2F:  # end of track
                    return events, pos
            elif byte in (0xF0, 0xF7):  # sysex: the engine has no use for it
                length, pos = _varint(data, pos, end)
                if pos + length > end:
                    raise EOFError
                pos += length
            elif byte >= 0xF0:
                raise MidiFileError(f"{name}: track {index} has illegal status byte 0x{byte:02x} "
                                    f"at byte {pos - 1}; the file is corrupt")
            else:
                n = DATA_LENGTH[byte >> 4]
                if pos + n > end:
                    raise EOFError
                body, pos = data[pos:pos + n], pos + n
                if max(body) > 127:
                    skipped.append(tick)  # mido would clip it to 127: a wrong note, so skip it
                    continue
                msg = mido.Message.from_bytes([byte, *body])
                if msg.type == "note_on" and msg.velocity == 0:
                    msg = mido.Message("note_off", channel=msg.channel, note=msg.note)
                events.append((tick, "msg", msg))
        except EOFError:
            warnings.append(f"track {index}: the last event is cut off (the chunk ends inside "
                            f"it, at byte {end}); skipped it")
            return events, event_start
        except ValueError:
            raise MidiFileError(f"{name}: track {index} has a corrupt delta time at byte "
                                f"{event_start}; the file is damaged") from None
    return events, pos
