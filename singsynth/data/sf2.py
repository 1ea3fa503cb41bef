"""Read the preset table (name, bank, program) of a SoundFont 2 file.

Only the `phdr` chunk of the `pdta` list is parsed: FluidSynth does the rendering,
we only need the names to label instruments.
"""
import struct
from dataclasses import dataclass
from pathlib import Path

from singsynth.errors import DatasetError
from singsynth.files import read_bytes

MAX_BYTES = 4 << 30  # the largest General MIDI SoundFonts are about 1-2 GB


@dataclass(frozen=True)
class Preset:
    name: str
    bank: int
    program: int


def _chunks(data: bytes, start: int, end: int):
    """Yield (id, body_start, body_end) for the RIFF sub-chunks in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        cid, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        yield cid, body, min(body + size, end)
        pos = body + size + (size & 1)  # RIFF chunks are word aligned


def read_presets(path) -> list[Preset]:
    """Presets of an .sf2 file, sorted by (bank, program).

    Raises DatasetError if the file is not a readable SoundFont 2.
    """
    path = Path(path)
    data = read_bytes(path, "a SoundFont (.sf2)", MAX_BYTES, DatasetError)
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise DatasetError(f"{path} is not a SoundFont 2 file (no RIFF sfbk header); pass a .sf2 file")
    presets = []
    for cid, start, end in _chunks(data, 12, len(data)):
        if cid != b"LIST" or data[start:start + 4] != b"pdta":
            continue
        for sub, s, e in _chunks(data, start + 4, end):
            if sub != b"phdr":
                continue
            # 38-byte records; the last one is the terminal "EOP" record.
            for off in range(s, e - 38 + 1, 38)[:-1]:
                raw, program, bank = struct.unpack_from("<20sHH", data, off)
                name = raw.split(b"\0", 1)[0].decode("latin-1").strip()
                presets.append(Preset(name, bank, program))
    if not presets:
        raise DatasetError(f"{path} has no preset headers (phdr); the SoundFont looks corrupt")
    return sorted(set(presets), key=lambda p: (p.bank, p.program, p.name))
