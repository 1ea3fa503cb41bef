"""Generate the notes of an export and lay them out as a `Bank` of looped samples.

Each (patch, pitch, velocity layer) asks the same question render asks, `Synth.note_key`
for that velocity on a channel playing the patch, so the notes are the ones singsynth
would play and come from (and go to) the same on-disk note cache. Notes are generated in
batches, resampled to the export rate with the engine's resampler, and looped by the
engine's own `Note.finish`: the sample is the note up to the loop's crossfade, then the
crossfade, so that a sampler jumping from the loop end back to the loop start plays
exactly the signal a looping singsynth voice plays.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from singsynth.errors import SingsynthError
from singsynth.export.bank import (GUARD, Bank, Instrument, Region, Sample, key_ranges,
                                   velocity_ranges)

BATCH = 64  # notes per model call (the model splits them further: ModelSource.max_batch)


@dataclass
class Part:
    """One instrument to export: a preset and the program it plays on channel 0.

    Attributes:
        preset: a `singsynth.presets.Preset`. program: 0-127. name: the instrument's name
        in the exported file. bank: the SF2 bank number.
    """

    preset: object
    program: int
    name: str
    bank: int = 0


def looped(key, data: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """A whole note at the export rate -> (sample data, loop start, loop end).

    The data are the note up to the engine's loop end (the last crossfade samples blended
    into those before the loop start, as `Note.finish` builds them), then `GUARD` samples
    of the loop's start: float32 (loop end + GUARD,).
    """
    from singsynth.generation.note import Note

    note = Note.complete(key, data, margin=GUARD)
    if not note.loop_end:  # too short to loop: the note as it is, played once
        return note.data.copy(), 0, 0
    return (np.concatenate([note.data[:note.xfade_start], note.tail]).astype(np.float32),
            note.loop_start, note.loop_end)


def soft_fades(planner, patch, layer_ranges) -> list:
    """For each layer's (lovel, hivel): [(lovel, hivel, attenuation dB)], splitting it where
    singsynth's fade for velocities below its softest trained one changes (the same for
    every pitch)."""
    out = []
    for lovel, hivel in layer_ranges:
        ranges = []
        for v in range(lovel, hivel + 1):
            db = round(-20 * np.log10(max(planner._soft_gain(patch, v), 1e-5)), 2)
            if ranges and ranges[-1][2] == db:
                ranges[-1] = (ranges[-1][0], v, db)
            else:
                ranges.append((v, v, db))
        out.append(ranges)
    return out


def plan(parts: Sequence[Part], source, pitches: Sequence[int], velocities: Sequence[int]):
    """Keys and gains of every region -> (bank layout, distinct keys in first-use order).

    Returns (instruments, cells, keys): `instruments` are `Instrument`s with regions whose
    `sample` indexes `cells`, a list of (NoteKey, gain, pitch, layer velocity) tuples, one
    per distinct sample (two programs playing the same note share it).
    """
    from singsynth.engine import Synth

    keys_of = key_ranges(pitches)
    vels_of = velocity_ranges(velocities)
    cells: List[tuple] = []
    index: Dict[tuple, int] = {}
    instruments = []
    planners = {}
    try:
        for part in parts:
            planner = planners.get(id(part.preset))
            if planner is None:
                planner = Synth(source, sample_rate=source.sample_rate, preset=part.preset,
                                offline=True, cache_bytes=1 << 20)
                planners[id(part.preset)] = planner
            planner.program_change(0, part.program)
            planner.process(1)  # events apply at the next block
            patch = planner.channels[0].patch
            ins = Instrument(part.name, part.bank, part.program, patch.release, patch.pan)
            # The voice's amplitude (Synth._note_on) is the preset's gain, baked into the
            # samples, times a fade below singsynth's softest trained velocity, which
            # depends on the velocity within a layer: regions attenuate their sample.
            fades = soft_fades(planner, patch, vels_of)
            for pitch, (lokey, hikey) in zip(pitches, keys_of):
                for vel, ranges in zip(velocities, fades):
                    key = planner.note_key(0, pitch, vel)
                    cell = (key, patch.gain)
                    if cell not in index:
                        index[cell] = len(cells)
                        cells.append((key, patch.gain, pitch, vel))
                    ins.regions += [Region(lokey, hikey, lovel, hivel, index[cell], db)
                                    for lovel, hivel, db in ranges]
            instruments.append(ins)
    finally:
        for planner in planners.values():
            planner.close()
    keys = list(dict.fromkeys(c[0] for c in cells))
    return instruments, cells, keys


def build_bank(parts: Sequence[Part], source, *, pitches: Sequence[int],
               velocities: Sequence[int], sample_rate: Optional[int] = None, name: str = "",
               comment: str = "", progress: bool = False) -> Bank:
    """Generate every note `parts` need from `source` and lay them out as a `Bank`.

    Args:
        source: a NoteSource (wrap it in `DiskCachedSource` to reuse render's cache).
        pitches: MIDI pitches, ascending, one sample each per layer.
        velocities: layer velocities (MIDI 1-127), ascending.
        sample_rate: Hz of the exported samples (None: the source's own rate).
        progress: a tqdm bar on stderr.
    """
    from singsynth.generation.thread import resample_notes

    rate = int(sample_rate or source.sample_rate)
    instruments, cells, keys = plan(parts, source, list(pitches), list(velocities))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(keys), unit="note", desc="generating notes")
    made: Dict[object, tuple] = {}
    for start in range(0, len(keys), BATCH):
        batch = keys[start:start + BATCH]
        notes = resample_notes(source.render(batch), source.sample_rate, rate, "HQ",
                               os.cpu_count() or 1)
        for key, data in zip(batch, notes):
            if not np.isfinite(data).all():
                raise SingsynthError(f"the model made a note with NaN or infinite samples "
                                     f"({key}); the checkpoint is damaged")
            made[key] = looped(key, data)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    samples = []
    single = len(parts) == 1
    for i, (key, gain, pitch, vel) in enumerate(cells):
        data, ls, le = made[key]
        label = f"{pitch:03d}_v{vel:03d}" if single else f"{i:05d}_{pitch:03d}_v{vel:03d}"
        # Root key: the key that plays the note untransposed (a preset's `transpose` is
        # already in the note: key.pitch = pitch + transpose).
        # In place where the gain is 1 (clipping twice changes nothing): a whole bank's
        # notes are in memory, so no second copy of them.
        data = np.clip(data, -1, 1, out=data) if gain == 1.0 else np.clip(data * gain, -1, 1)
        samples.append(Sample(label, data.astype(np.float32, copy=False), ls, le, pitch))
    return Bank(name, rate, samples, instruments, comment, len(keys))
