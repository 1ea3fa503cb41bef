"""Write a `Bank` as a SoundFont 2.04 file (RIFF `sfbk`), directly from the format's spec.

Layout: INFO (ifil, isng, INAM, ISFT, ICMT), sdta (smpl: 16-bit samples, each followed
by 46 zero samples), pdta (phdr pbag pmod pgen inst ibag imod igen shdr, each ending in
its terminal record). One preset per instrument, with one zone naming its SoundFont
instrument (presets playing the same regions share one), which has a global zone (loop
mode, release, pan, and modulators that turn off two of SoundFont's default modulators)
and one zone per region (keyRange, velRange, overridingRootKey, initialAttenuation where
singsynth fades a soft velocity, sampleID: in the order the spec requires).

SoundFont players scale every note by its velocity (default modulator: velocity to
initial attenuation, up to 96 dB) and close a low-pass filter on soft notes (velocity to
filter cutoff, -2400 cents). singsynth's notes already carry their dynamics and timbre
per velocity, so both are overridden with zero-amount modulators of the same identity.
"""
from __future__ import annotations

import struct
from typing import List, Tuple

import numpy as np

from singsynth.export.bank import SF2_RELEASE_PER_SECOND, Bank

# Generator operators (SoundFont 2.04, section 8.1.2).
GEN_PAN = 17
GEN_RELEASE_VOL_ENV = 38
GEN_INSTRUMENT = 41
GEN_KEY_RANGE = 43
GEN_VEL_RANGE = 44
GEN_SAMPLE_ID = 53
GEN_SAMPLE_MODES = 54
GEN_OVERRIDING_ROOT_KEY = 58
GEN_INITIAL_FILTER_FC = 8
GEN_INITIAL_ATTENUATION = 48

# Zero-amount modulators that replace the default ones (section 8.4): (source,
# destination, amount, amount source, transform). The filter one twice: the spec gives
# its amount source as none (0), FluidSynth as a velocity switch (0x0C02); a modulator
# overrides only one of exactly its identity, and the other one adds 0.
NEUTRAL_MODULATORS = (
    (0x0502, GEN_INITIAL_ATTENUATION, 0, 0x0000, 0),
    (0x0102, GEN_INITIAL_FILTER_FC, 0, 0x0000, 0),
    (0x0102, GEN_INITIAL_FILTER_FC, 0, 0x0C02, 0),
)
# FluidSynth, like the EMU hardware it copies, applies 0.4 x a SoundFont's
# initialAttenuation (measured: 100 cB sounds as 4 dB); a SoundFont for it says 2.5x.
ATTENUATION_SCALE = 0.4
ZERO_PAD = 46  # zero samples after every sample (section 6.1)
MONO_SAMPLE = 1
LOOP_CONTINUOUSLY = 1


def timecents(seconds: float) -> int:
    """Seconds -> SoundFont timecents (1200 * log2(s)), within the spec's -12000..8000."""
    return int(round(min(max(1200 * np.log2(max(seconds, 1e-3)), -12000), 8000)))


def chunk(cid: bytes, body: bytes) -> bytes:
    """One RIFF chunk: id, little-endian size, body, pad byte to an even length."""
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def riff_list(kind: bytes, chunks: List[bytes]) -> bytes:
    return chunk(b"LIST", kind + b"".join(chunks))


def zstr(text: str) -> bytes:
    """An INFO string: ASCII, zero-terminated, even length (section 5)."""
    raw = text.encode("ascii", "replace")[:254] + b"\0"
    return raw + (b"\0" if len(raw) & 1 else b"")


def name20(text: str) -> bytes:
    """A 20-byte name field, zero-padded (section 7)."""
    return text.encode("ascii", "replace")[:20].ljust(20, b"\0")


def to_int16(data: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, rounded, clipped."""
    return np.clip(np.round(data * 32767.0), -32768, 32767).astype("<i2")


def gen(op: int, amount: int) -> bytes:
    return struct.pack("<Hh", op, amount)


def gen_range(op: int, lo: int, hi: int) -> bytes:
    return struct.pack("<HBB", op, lo, hi)


def sf2_bytes(bank: Bank) -> bytes:
    """The whole .sf2 file for `bank` (samples and instruments as described above)."""
    # sdta: samples back to back, each followed by its zero pad.
    pieces, headers, pos = [], [], 0
    for s in bank.samples:
        pcm = to_int16(s.data)
        pieces += [pcm.tobytes(), bytes(2 * ZERO_PAD)]
        headers.append(struct.pack("<20sIIIIIBbHH", name20(s.name), pos, pos + len(pcm),
                                   pos + s.loop_start, pos + s.loop_end, bank.sample_rate,
                                   s.key, 0, 0, MONO_SAMPLE))
        pos += len(pcm) + ZERO_PAD
    headers.append(struct.pack("<20sIIIIIBbHH", name20("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0))

    phdr, pbag, pgen, inst, ibag, imod, igen = [], [], [], [], [], [], []
    # Presets that play the same regions the same way share one SoundFont instrument (a
    # GM bank's 128 programs map to a model's few instruments): the zone and generator
    # counts stay within the format's 16-bit indices.
    shared, unique = {}, []
    for ins in bank.instruments:
        sig = (ins.release, ins.pan, tuple((r.lokey, r.hikey, r.lovel, r.hivel, r.sample,
                                            r.attenuation) for r in ins.regions))
        if sig not in shared:
            shared[sig] = len(unique)
            unique.append(ins)
        phdr.append(struct.pack("<20sHHHIII", name20(ins.name), ins.program, ins.bank,
                                len(pbag), 0, 0, 0))
        pbag.append(struct.pack("<HH", len(pgen), 0))
        pgen.append(gen(GEN_INSTRUMENT, shared[sig]))
    for ins in unique:
        inst.append(struct.pack("<20sH", name20(ins.name), len(ibag)))
        # Global zone: no sampleID; what every region shares.
        ibag.append(struct.pack("<HH", len(igen), len(imod)))
        imod += [struct.pack("<HHhHH", *m) for m in NEUTRAL_MODULATORS]
        igen.append(gen(GEN_SAMPLE_MODES, LOOP_CONTINUOUSLY))
        igen.append(gen(GEN_RELEASE_VOL_ENV, timecents(ins.release * SF2_RELEASE_PER_SECOND)))
        if ins.pan:
            igen.append(gen(GEN_PAN, int(round(ins.pan * 500))))  # 0.1 % units, -500..500
        for r in ins.regions:
            ibag.append(struct.pack("<HH", len(igen), len(imod)))
            igen += [gen_range(GEN_KEY_RANGE, r.lokey, r.hikey),
                     gen_range(GEN_VEL_RANGE, r.lovel, r.hivel),
                     gen(GEN_OVERRIDING_ROOT_KEY, bank.samples[r.sample].key)]
            if r.attenuation:  # centibels, 0..1440
                igen.append(gen(GEN_INITIAL_ATTENUATION,
                                min(1440, int(round(r.attenuation * 10 / ATTENUATION_SCALE)))))
            igen.append(gen(GEN_SAMPLE_ID, r.sample))
    phdr.append(struct.pack("<20sHHHIII", name20("EOP"), 0, 0, len(pbag), 0, 0, 0))
    pbag.append(struct.pack("<HH", len(pgen), 0))
    pgen.append(gen(0, 0))
    inst.append(struct.pack("<20sH", name20("EOI"), len(ibag)))
    ibag.append(struct.pack("<HH", len(igen), len(imod)))
    imod.append(bytes(10))
    igen.append(gen(0, 0))
    if len(bank.samples) > 0xFFFF or len(igen) > 0xFFFF or len(ibag) > 0xFFFF:
        raise ValueError(f"{len(igen)} generators in {len(ibag)} zones and {len(bank.samples)} "
                         "samples are more than SoundFont 2's 16-bit indices can count")

    info = riff_list(b"INFO", [
        chunk(b"ifil", struct.pack("<HH", 2, 4)),
        chunk(b"isng", zstr("EMU8000")),
        chunk(b"INAM", zstr(bank.name)),
        chunk(b"ISFT", zstr("singsynth")),
    ] + ([chunk(b"ICMT", zstr(bank.comment))] if bank.comment else []))
    sdta = riff_list(b"sdta", [chunk(b"smpl", b"".join(pieces))])
    pdta = riff_list(b"pdta", [chunk(cid, b"".join(recs)) for cid, recs in (
        (b"phdr", phdr), (b"pbag", pbag), (b"pmod", [bytes(10)]), (b"pgen", pgen),
        (b"inst", inst), (b"ibag", ibag), (b"imod", imod), (b"igen", igen),
        (b"shdr", headers))])
    return chunk(b"RIFF", b"sfbk" + info + sdta + pdta)


def sample_bytes(bank: Bank) -> Tuple[int, int]:
    """(samples, bytes of sample data) the .sf2 holds: for reports."""
    count = sum(len(s.data) + ZERO_PAD for s in bank.samples)
    return len(bank.samples), 2 * count
