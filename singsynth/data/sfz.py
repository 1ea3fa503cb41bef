"""`singsynth dataset build --sfz FILE.sfz`: an SFZ instrument rendered by sfizz.

The SFZ counterpart of the SoundFont builder: sfizz (through pysfizz, its Python
bindings) plays every (pitch, velocity) held 3 s and released for 1 s, dry, at 48 kHz;
each 4-second note is resampled to the model's rate with soxr, notes the instrument
cannot play are dropped as the SoundFont builder drops them (`soundfont.classify`), and
the notes are written as a sample folder's are (`samples._write`: one gain for the
instrument, a temporary folder moved into place).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr

from singsynth.data import soundfont as sfr
from singsynth.data.samples import (NOTE_SECONDS, Note, _check_out, _write, check_rate,
                                    instrument_name)
from singsynth.errors import DatasetError

RENDER_RATE = 48000
BLOCK = 1024


def load(sfz):
    """A pysfizz synth with `sfz` loaded; DatasetError if pysfizz or the file fails."""
    try:
        import pysfizz
    except ImportError:
        raise DatasetError("--sfz needs sfizz's Python bindings: pip install pysfizz") from None
    sfz = Path(sfz)
    if not sfz.is_file() or sfz.suffix.lower() != ".sfz":
        raise DatasetError(f"--sfz {sfz}: not an .sfz file; give the instrument's .sfz")
    synth = pysfizz.Synth(RENDER_RATE, BLOCK)
    if not synth.load_sfz_file(sfz):
        raise DatasetError(f"--sfz {sfz}: sfizz loads no region from it (missing samples, or "
                           "not SFZ); check that it plays in sfizz or another SFZ player")
    # Offline, faster than real time: wait for sample data sfizz streams from disk
    # (export/compare.py saw a note 84 cents off, one run in four, without it).
    synth._synth.enable_freewheeling()
    return synth


def render(synth, pitches, velocities, sample_rate: int):
    """Every (pitch, velocity) as a 4-second note at `sample_rate`.

    Returns:
        (notes [(pitch, velocity)], audio float32 (n, 4 * sample_rate), raw RMS at the
        render rate (n,), found (n,) bool: the note made any sound).
    """
    notes = [(p, v) for p in pitches for v in velocities]
    audio = np.zeros((len(notes), NOTE_SECONDS * sample_rate), np.float32)
    raw_rms, found = np.zeros(len(notes)), np.zeros(len(notes), bool)
    for i, (pitch, velocity) in enumerate(notes):
        stereo = synth.render_note(pitch, velocity, 3.0, float(NOTE_SECONDS))
        synth._synth.all_sound_off()          # no release tail into the next note
        mono = stereo.mean(axis=0).astype(np.float32)
        found[i] = bool(np.any(mono))
        raw_rms[i] = np.sqrt(np.mean(np.square(mono, dtype=np.float64)))
        if sample_rate != RENDER_RATE:
            mono = soxr.resample(mono, RENDER_RATE, sample_rate, quality="HQ")
        mono = mono[:audio.shape[1]]
        audio[i, :len(mono)] = mono
    return notes, audio, raw_rms, found


def build_sfz(sfz, out, pitches=range(21, 109), velocities=sfr.VELOCITIES,
              sample_rate: int = 16000, instrument=None, force: bool = False) -> dict:
    """Render the SFZ instrument `sfz` into a dataset in `out`.

    Returns:
        {"notes", "instruments": 1, "dropped": {reason: count}}.
    """
    check_rate(sample_rate)
    if any(v not in sfr.VELOCITIES for v in velocities):
        raise DatasetError(f"velocities must be among NSynth's {list(sfr.VELOCITIES)}, "
                           f"got {list(velocities)}")
    out = Path(out)
    _check_out(out, force)
    synth = load(sfz)
    notes, audio, raw_rms, found = render(synth, pitches, velocities, sample_rate)
    reasons = sfr.classify(audio, raw_rms, found, sample_rate < RENDER_RATE)
    name = instrument_name(instrument or Path(sfz).stem)
    keep = []
    for (pitch, velocity), wave, reason in zip(notes, audio, reasons):
        if reason is None:
            keep.append(Note(Path(sfz), Path(sfz).name, name, pitch, velocity, "sfz",
                             level=velocity, audio=wave))
    if not keep:
        raise DatasetError(f"--sfz {sfz}: no note sounded at the pitches asked for; check "
                           "--pitches against the instrument's key range")
    _write(out, keep, sample_rate, force, {"sfz": str(Path(sfz).resolve()),
                                            "sample_rate": sample_rate, "format": 1})
    dropped = {r: reasons.count(r) for r in sfr.DROP_REASONS}
    return {"notes": len(keep), "instruments": 1, "dropped": dropped}
