"""Pitch, velocity and instrument from a sample's file name, in the usual conventions.

Sample libraries and synths' multisample exports name their files like
`Cello_G3_v100.wav`, `cello-55-100.flac`, `Piano C#4 mf.aif`, `Pad_Db4.wav` or
`strings_Cs4_127.ogg` (`s` for sharp, as in file systems that dislike `#`).
Scientific pitch: C4 = MIDI 60, A4 = 440 Hz = MIDI 69, C-1 = MIDI 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Semitones above C of each letter.
LETTERS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
ACCIDENTALS = {"": 0, "#": 1, "s": 1, "♯": 1, "b": -1, "♭": -1}
# Dynamics markings as MIDI velocities (the usual MIDI mapping of score dynamics).
DYNAMICS = {"ppp": 16, "pp": 33, "p": 49, "mp": 64, "mf": 80, "f": 96, "ff": 112, "fff": 127}

# A note name: letter, optional accidental, octave -1..9; not inside a word or a number
# ("Bass4" is no B, "C44" no C4). The octave's "-" is only read as a minus sign when
# another separator or the start precedes the letter ("cello-C-1", "C-1_v50").
_NOTE = re.compile(r"(?<![A-Za-z0-9])([A-Ga-g])(#|♯|♭|s|b)?(-1|[0-9])(?![0-9A-Za-z#])")
_VELOCITY = re.compile(r"^(?:v|vel|velocity)(\d{1,3})$", re.IGNORECASE)
_NUMBER = re.compile(r"^\d{1,3}$")
_SEPARATORS = re.compile(r"[\s_\-.,()\[\]]+")


@dataclass(frozen=True)
class Parsed:
    """What a file name says. pitch: MIDI 0-127 or None; velocity: MIDI 1-127 or None;
    prefix: the name's text before the pitch (the instrument, when one folder holds
    several), "" if none."""
    pitch: int | None
    velocity: int | None
    prefix: str


def note_to_midi(text: str) -> int | None:
    """'C4' -> 60, 'C#4'/'Cs4'/'Db4' -> 61, 'A-1' -> 9; None if `text` is no note name
    or the note lies outside MIDI 0-127."""
    m = _NOTE.fullmatch(text.strip())
    if not m:
        return None
    return _midi(*m.groups())


def _midi(letter: str, accidental: str | None, octave: str) -> int | None:
    midi = 12 * (int(octave) + 1) + LETTERS[letter.lower()] + ACCIDENTALS[accidental or ""]
    return midi if 0 <= midi <= 127 else None


def parse_pitch(text: str) -> int | None:
    """A pitch as a user writes it in a map: a MIDI number 0-127 or a note name."""
    text = text.strip()
    if _NUMBER.match(text):
        value = int(text)
        return value if value <= 127 else None
    return note_to_midi(text)


def parse_name(stem: str) -> Parsed:
    """Read pitch, velocity and instrument prefix from a file name without its extension.

    The pitch is the first note name (`G3`, `C#4`, `Db4`, `Cs4`), else the first
    standalone number 0-127 (`cello-55-100`). The velocity is a `v100`/`vel100` token,
    else a dynamics marking (`pp`..`fff`), else the first standalone number after the
    pitch (`cello-55-100`, `Cello_G3_100`). The prefix is the text before the pitch.
    """
    pitch, at = None, None
    for m in _NOTE.finditer(stem):
        pitch = _midi(*m.groups())
        if pitch is not None:
            at = (m.start(), m.end())
            break
    tokens = [(t.start(), t.end(), t.group()) for t in re.finditer(r"[^\s_\-.,()\[\]]+", stem)]
    if pitch is None:
        for start, end, tok in tokens:
            if _NUMBER.match(tok) and int(tok) <= 127:
                pitch, at = int(tok), (start, end)
                break
    velocity = None
    for _, _, tok in tokens:
        m = _VELOCITY.match(tok)
        if m and 1 <= int(m.group(1)) <= 127:
            velocity = int(m.group(1))
            break
    if velocity is None:
        for _, _, tok in tokens:
            if tok.lower() in DYNAMICS:
                velocity = DYNAMICS[tok.lower()]
                break
    if velocity is None and at is not None:
        for start, _, tok in tokens:
            if start >= at[1] and _NUMBER.match(tok) and 1 <= int(tok) <= 127:
                velocity = int(tok)
                break
    prefix = stem[:at[0]] if at is not None else stem
    return Parsed(pitch, velocity, _SEPARATORS.sub(" ", prefix).strip())


def midi_to_note(pitch: int) -> str:
    """60 -> 'C4' (sharps), for messages."""
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[pitch % 12]}{pitch // 12 - 1}"
