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


# ---- the whole file: read back an exported SoundFont (singsynth.export) ----------------

# Record sizes of the pdta sub-chunks, in the order the spec lays them out (section 7).
PDTA_RECORDS = {b"phdr": 38, b"pbag": 4, b"pmod": 10, b"pgen": 4, b"inst": 22,
                b"ibag": 4, b"imod": 10, b"igen": 4, b"shdr": 46}
RANGE_GENERATORS = (43, 44)  # keyRange, velRange: two bytes (lo, hi), not a signed word


@dataclass
class Zone:
    """One preset or instrument zone: generators by operator, modulators as 5-tuples
    (source, destination, amount, amount source, transform)."""

    generators: dict
    modulators: list


@dataclass
class SampleHeader:
    name: str
    start: int
    end: int
    loop_start: int
    loop_end: int
    sample_rate: int
    key: int
    correction: int
    link: int
    kind: int


@dataclass
class SoundFont:
    """A parsed SoundFont 2: INFO strings, presets and instruments as (name, zones) with
    presets also carrying (bank, program), sample headers and the 16-bit sample data."""

    info: dict
    presets: list          # [(name, bank, program, [Zone])]
    instruments: list      # [(name, [Zone])]
    samples: list          # [SampleHeader]
    data: "object"         # numpy int16 array: the smpl chunk


def _records(body: bytes, size: int, cid: bytes, path):
    if len(body) % size or len(body) < size:
        raise DatasetError(f"{path}: pdta chunk {cid.decode()} is {len(body)} bytes, not a "
                           f"whole number (>= 1) of {size}-byte records; the SoundFont is corrupt")
    return [body[i:i + size] for i in range(0, len(body), size)]


def _zones(bags, gens, mods, first: int, last: int, path, what: str) -> list:
    """Zones first..last-1 of a bag list, with their generators and modulators."""
    zones = []
    for b in range(first, last):
        g0, m0 = struct.unpack("<HH", bags[b])
        g1, m1 = struct.unpack("<HH", bags[b + 1])
        if not (g0 <= g1 <= len(gens) - 1 and m0 <= m1 <= len(mods) - 1):
            raise DatasetError(f"{path}: {what} zone {b} has out-of-order or out-of-range "
                               "generator/modulator indices; the SoundFont is corrupt")
        generators = {}
        for raw in gens[g0:g1]:
            op = struct.unpack_from("<H", raw)[0]
            generators[op] = (struct.unpack_from("<BB", raw, 2) if op in RANGE_GENERATORS
                              else struct.unpack_from("<h", raw, 2)[0])
        zones.append(Zone(generators, [struct.unpack("<HHhHH", raw) for raw in mods[m0:m1]]))
    return zones


def read_soundfont(path) -> SoundFont:
    """Parse a whole .sf2 file, checking its structure: the RIFF lists, every pdta
    sub-chunk present with whole records and its terminal record, bag and sample indices
    in range and in order, sample bounds and loops inside the smpl chunk.

    Raises DatasetError with one line naming the first problem.
    """
    import numpy as np

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read SoundFont {path}: {exc.strerror}; check the path") from exc
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise DatasetError(f"{path} is not a SoundFont 2 file (no RIFF sfbk header); "
                           "pass a .sf2 file")
    if struct.unpack_from("<I", data, 4)[0] + 8 != len(data):
        raise DatasetError(f"{path}: the RIFF size does not match the file's length; "
                           "the SoundFont is truncated or padded")
    lists = {}
    for cid, start, end in _chunks(data, 12, len(data)):
        if cid == b"LIST":
            lists[data[start:start + 4]] = {sub: data[s:e] for sub, s, e in
                                            _chunks(data, start + 4, end)}
    for kind in (b"INFO", b"sdta", b"pdta"):
        if kind not in lists:
            raise DatasetError(f"{path}: no {kind.decode()} list; the SoundFont is corrupt")
    if b"ifil" not in lists[b"INFO"] or b"INAM" not in lists[b"INFO"]:
        raise DatasetError(f"{path}: INFO lacks ifil or INAM (both required); "
                           "the SoundFont is corrupt")
    info = {k.decode(): (struct.unpack("<HH", v) if k == b"ifil"
                         else v.split(b"\0", 1)[0].decode("latin-1"))
            for k, v in lists[b"INFO"].items()}
    smpl = np.frombuffer(lists[b"sdta"].get(b"smpl", b""), dtype="<i2")
    pdta = lists[b"pdta"]
    rec = {}
    for cid, size in PDTA_RECORDS.items():
        if cid not in pdta:
            raise DatasetError(f"{path}: pdta lacks its {cid.decode()} chunk; "
                               "the SoundFont is corrupt")
        rec[cid] = _records(pdta[cid], size, cid, path)
    names = {b"phdr": b"EOP", b"inst": b"EOI", b"shdr": b"EOS"}
    for cid, terminal in names.items():
        if rec[cid][-1][:20].split(b"\0", 1)[0] != terminal:
            raise DatasetError(f"{path}: {cid.decode()} does not end in its terminal "
                               f"{terminal.decode()} record; the SoundFont is corrupt")

    samples = []
    for raw in rec[b"shdr"][:-1]:
        h = SampleHeader(raw[:20].split(b"\0", 1)[0].decode("latin-1"),
                         *struct.unpack_from("<IIIIIBbHH", raw, 20))
        if not (h.start < h.end <= len(smpl) and h.start <= h.loop_start <= h.loop_end <= h.end):
            raise DatasetError(f"{path}: sample {h.name!r} has bounds or loop points outside "
                               "its data; the SoundFont is corrupt")
        samples.append(h)

    instruments = []
    ibag, igen, imod = rec[b"ibag"], rec[b"igen"], rec[b"imod"]
    for i, raw in enumerate(rec[b"inst"][:-1]):
        first = struct.unpack_from("<H", raw, 20)[0]
        last = struct.unpack_from("<H", rec[b"inst"][i + 1], 20)[0]
        if not first <= last <= len(ibag) - 1:
            raise DatasetError(f"{path}: instrument {i} has bad zone indices; "
                               "the SoundFont is corrupt")
        zones = _zones(ibag, igen, imod, first, last, path, "instrument")
        for z in zones:
            if 53 in z.generators and not 0 <= z.generators[53] < len(samples):
                raise DatasetError(f"{path}: instrument {i} names sample {z.generators[53]}, "
                                   f"but there are {len(samples)}; the SoundFont is corrupt")
        instruments.append((raw[:20].split(b"\0", 1)[0].decode("latin-1"), zones))

    presets = []
    pbag, pgen, pmod = rec[b"pbag"], rec[b"pgen"], rec[b"pmod"]
    for i, raw in enumerate(rec[b"phdr"][:-1]):
        program, bank, first = struct.unpack_from("<HHH", raw, 20)
        last = struct.unpack_from("<H", rec[b"phdr"][i + 1], 24)[0]
        if not first <= last <= len(pbag) - 1:
            raise DatasetError(f"{path}: preset {i} has bad zone indices; the SoundFont is corrupt")
        zones = _zones(pbag, pgen, pmod, first, last, path, "preset")
        for z in zones:
            if 41 in z.generators and not 0 <= z.generators[41] < len(instruments):
                raise DatasetError(f"{path}: preset {i} names instrument {z.generators[41]}, "
                                   f"but there are {len(instruments)}; the SoundFont is corrupt")
        presets.append((raw[:20].split(b"\0", 1)[0].decode("latin-1"), bank, program, zones))
    return SoundFont(info, presets, instruments, samples, smpl)
