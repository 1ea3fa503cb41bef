"""Offline render: a MIDI file -> audio, through the same `Synth.process` as live play.

Three steps, like FluidSynth's fast file renderer with a model in front:
1. plan: replay the song's program and bank changes on the synth and ask `note_key` for
   every note, so that we know each distinct note the song needs;
2. prepare: generate those notes in large batches (`Synth.prepare`, a progress bar),
   reading them from the on-disk note cache where an earlier render left them;
3. mix: drive `process` block by block, each event pushed with its exact sample
   offset inside its block, exactly as a live driver would; then write the file
   through a temporary file renamed at the end, so a failure leaves no partial output.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from singsynth.errors import ConfigError, SingsynthError
from singsynth.files import (finishing, make_public, os_error_line, printable, same_file, shown,
                             write_sound)
from singsynth.hosts.midifile import Song, TimedEvent, read_midi

log = logging.getLogger(__name__)

BLOCK = 8192           # samples per process() call; events land inside blocks by offset
BATCH = 64             # notes per prepare step (the model splits them: ModelSource.max_batch)
MAX_CACHE_BYTES = 8 << 30  # beyond this, evicted notes are made again (from the disk cache)
AUTO_TAIL_MAX = 5.0    # seconds rendered after the last event at most, when --tail is not given
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}  # by the output's extension
BITS = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}  # --bits -> soundfile subtype
DEFAULT_BITS = "24"
NORMALIZE_PEAK = 10 ** (-1 / 20)  # -1 dBFS leaves room for inter-sample peaks in players


@dataclass
class RenderReport:
    """What a render did; `summary()` is the line the CLI prints."""

    input: str
    output: str
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    prepare_seconds: float = 0.0
    mix_seconds: float = 0.0
    distinct_notes: int = 0
    notes_from_disk: int = 0
    peak: float = 0.0
    warnings: List[str] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def summary(self) -> str:
        return (f"rendered {self.input} -> {self.output}: {self.audio_seconds:.1f} s of audio in "
                f"{self.wall_seconds:.2f} s ({self.realtime_factor:.1f}x real time; "
                f"{self.distinct_notes} distinct notes, {self.notes_from_disk} from the disk "
                f"cache; prepare {self.prepare_seconds:.2f} s, mix {self.mix_seconds:.2f} s)")


def drums_mapped(preset) -> bool:
    """Whether the preset gives channel 10 (index 9) an instrument of its own.

    General MIDI plays percussion on channel 10; through a melodic instrument its notes
    would be a random melody, so unless the preset maps it, render skips it.
    """
    own = preset.channels.get(9, {})
    return "instrument" in own and own.get("gain", 1.0) > 0


def playable_events(song: Song, sample_rate: int, preset, report: RenderReport):
    """The song's events at `sample_rate`, ready to play.

    Channel 10's notes are left out if the preset does not map it. At the song's end
    (its last event, end-of-track included) every channel that played gets pedal-up and
    all-notes-off, so notes left hanging by a damaged file release instead of being cut.
    """
    import mido

    events = song.timed_events(sample_rate)
    if not drums_mapped(preset):
        drums = sum(1 for e in events if e.message.channel == 9 and e.message.type == "note_on")
        if drums:
            report.warnings.append(
                f"channel 10 (drums): preset {preset.name!r} maps no instrument to it; skipped "
                f"its {drums} notes (give channel 9 an instrument in a preset to play them)")
            events = [e for e in events if not (e.message.channel == 9
                                                and e.message.type in ("note_on", "note_off"))]
    end = song.sample_at(song.end_tick, sample_rate)
    for channel in sorted({e.message.channel for e in events if e.message.type == "note_on"}):
        for cc in (64, 123):
            events.append(TimedEvent(end, mido.Message("control_change", channel=channel,
                                                       control=cc, value=0)))
    return events


def make_planner(synth):
    """A second Synth on the same source and preset that only answers `note_key`."""
    from singsynth.engine import Synth

    return Synth(synth.source, sample_rate=synth.sample_rate, preset=synth.preset, offline=True,
                 cache_bytes=1 << 20, velocity_levels=synth.velocity_levels)


def plan_keys(planner, events: Sequence[TimedEvent]) -> list:
    """Every distinct NoteKey the song plays, in first-use order.

    `note_key` answers for the channel's current program, so program changes are
    replayed in order on `planner` (a Synth that never plays a note, see `make_planner`).
    """
    keys, seen, pending = [], set(), False
    for event in events:
        msg = event.message
        if msg.type == "program_change":
            planner.handle(msg)
            pending = True
        elif msg.type == "note_on":
            if pending:  # events apply at the next block: a 1-sample block applies them
                planner.process(1)
                pending = False
            key = planner.note_key(msg.channel, msg.note, msg.velocity)
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return keys


def mix(synth, events: Sequence[TimedEvent], *, tail_samples: Optional[int],
        auto_tail_max: int, block: int = BLOCK) -> np.ndarray:
    """Drive `synth.process` over the song -> float32 (samples, 2).

    Args:
        events: in play order, sample positions at the synth's rate.
        tail_samples: samples rendered after the last event; None renders until no voice
            sounds, at most `auto_tail_max` samples.
    """
    last = events[-1].sample + 1 if events else 0
    total = last + (tail_samples if tail_samples is not None else auto_tail_max)
    # The limiter's look-ahead delays the output by `lag` samples: mix that much longer
    # and drop the lead-in, so that every event still lands on its exact sample.
    lag = getattr(synth, "latency", 0)
    out = np.zeros((total + lag, 2), dtype=np.float32)
    i, start = 0, 0
    while start < total + lag:
        frames = min(block, total + lag - start)
        while i < len(events) and events[i].sample < start + frames:
            synth.handle(events[i].message, offset=events[i].sample - start)
            i += 1
        out[start:start + frames] = synth.process(frames)
        start += frames
        if tail_samples is None and start >= last and synth.stats()["voices"] == 0:
            flush = min(lag, total + lag - start)  # what the limiter still holds
            if flush > 0:
                out[start:start + flush] = synth.process(flush)
            return out[lag:start + flush]
    return out[lag:]


def render_song(song: Song, synth, *, tail: Optional[float] = None, progress: bool = False,
                report: Optional[RenderReport] = None) -> np.ndarray:
    """Plan, prepare and mix `song` with an `offline=True` synth -> float32 (samples, 2)."""
    report = report if report is not None else RenderReport("song", "-")
    planner = make_planner(synth)
    try:
        events = playable_events(song, synth.sample_rate, synth.preset, report)
        keys = plan_keys(planner, events)
    finally:
        planner.close()
    return render_events(events, keys, synth, tail=tail, progress=progress, report=report)


def render_events(events: Sequence[TimedEvent], keys: Sequence, synth, *, tail: Optional[float],
                  progress: bool, report: RenderReport) -> np.ndarray:
    """Generate `keys` in batches, then mix `events` -> float32 (samples, 2) at the synth's rate."""
    sr = synth.sample_rate
    t0 = time.perf_counter()
    synth.prepare(keys, progress=progress)
    t1 = time.perf_counter()
    tail_samples = None if tail is None else int(round(tail * sr))
    audio = mix(synth, events, tail_samples=tail_samples, auto_tail_max=int(AUTO_TAIL_MAX * sr))
    report.prepare_seconds, report.mix_seconds = t1 - t0, time.perf_counter() - t1
    report.distinct_notes = len(keys)
    return audio


def finish(audio: np.ndarray, *, channels: int = 2, normalize: bool = False,
           gain_db: float = 0.0, warn: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """Mono downmix, optional peak normalisation, then `gain_db` (dB, after normalising)
    -> float32 (samples, channels) in [-1, 1]. Samples a positive gain pushes past full
    scale are clipped, and `warn` is told how many."""
    if channels == 1:
        audio = audio.mean(axis=1, keepdims=True, dtype=np.float32)
    if normalize:
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio = audio * np.float32(NORMALIZE_PEAK / peak)
    if gain_db:
        audio = audio * np.float32(10 ** (gain_db / 20))
        over = int(np.count_nonzero(np.abs(audio) > 1.0))
        if over and warn is not None:
            peak = 20 * np.log10(float(np.max(np.abs(audio))))
            warn(f"--gain {gain_db:+g} dB clipped {over} samples (peak {peak:+.1f} dBFS before "
                 "clipping); lower --gain")
    # The engine's limiter keeps the bus in range; the clip only guards the integer file format.
    return np.clip(audio, -1.0, 1.0, out=audio)


def output_format(path, bits: Optional[str] = None) -> tuple:
    """(soundfile format, subtype) for a .wav, .flac or .ogg path and `--bits` (16, 24 or
    32f; None: 24, or Vorbis for .ogg); one SingsynthError line for anything else."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise SingsynthError(f"cannot write {path}: unknown audio format {ext or '(none)'!r}; "
                             "name the output .wav, .flac or .ogg")
    fmt = FORMATS[ext]
    if fmt == "OGG":
        if bits is not None:
            raise SingsynthError(f"--bits {bits} does not apply to {path}: Ogg Vorbis is lossy "
                                 "and has no bit depth; leave out --bits or write .wav or .flac")
        return fmt, "VORBIS"
    bits = DEFAULT_BITS if bits is None else str(bits)
    if bits not in BITS:
        raise SingsynthError(f"--bits {bits} is not supported; use 16, 24 or 32f (float)")
    if fmt == "FLAC" and bits == "32f":
        raise SingsynthError(f"cannot write {path} with --bits 32f: FLAC stores integer "
                             "samples only; use --bits 16 or 24, or a .wav file for float")
    return fmt, BITS[bits]


def missing_folders(folder: Path) -> list:
    """The folders that do not exist yet on the way to `folder`, deepest first."""
    missing = []
    folder = folder.absolute()
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def open_output(path, overwrite: bool, inputs=()) -> str:
    """Check that `path` may be written and reserve a temporary file beside it -> its path.

    Raises SingsynthError (before any rendering) for an unknown extension, the path of
    one of `inputs` (the song, the model, the preset: -f replaces only what singsynth
    made), an existing file without `overwrite`, a directory, a name too long, or a
    folder that cannot be made or written.
    """
    path = Path(path)
    output_format(path)
    try:
        exists, is_dir = os.path.lexists(path), path.is_dir()
    except OSError as exc:
        raise SingsynthError(os_error_line(path, exc, "write")) from None
    for other in inputs:
        if exists and other is not None and same_file(path, other):
            raise SingsynthError(f"-o {shown(path)} is the input file {shown(other)}; choose "
                                 "another output name (-f never replaces an input)")
    if is_dir:
        raise SingsynthError(f"{shown(path)} is a directory; give an output file name")
    if exists and not overwrite:
        raise SingsynthError(f"{shown(path)} already exists; pass -f to overwrite it")
    try:
        # A missing folder is made (as `make demo` needs for out/); a file in the way is not.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        line = os_error_line(path, exc, "write")
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.EPERM):
            line = (f"cannot write {shown(path)}: {exc.strerror or exc}; check that the folder "
                    "exists and is writable")
        raise SingsynthError(line) from None
    os.close(fd)
    return tmp


def write_audio(tmp: str, path, audio: np.ndarray, sample_rate: int, done=None,
                bits: Optional[str] = None) -> None:
    """Write `audio` (samples, channels) to `tmp` and rename it to `path` (atomic).

    `done()` runs once the rename has happened, with Ctrl-C held back (see
    `files.finishing`): the CLI passes one that makes a late Ctrl-C harmless.
    """
    fmt, subtype = output_format(path, bits)
    try:
        try:  # write_sound names a full disk (libsndfile says only "System error")
            write_sound(tmp, audio, sample_rate, format=fmt, subtype=subtype)
        except RuntimeError as exc:  # LibsndfileError: not an OSError
            raise SingsynthError(f"cannot write {shown(path)}: {printable(exc)}") from None
        make_public(tmp)
        with finishing(done):
            os.replace(tmp, path)
    except OSError as exc:
        raise SingsynthError(os_error_line(path, exc, "write")) from None


def render_file(input, output, *, model=None, preset=None, sample_rate: int = 48000,
                tail: Optional[float] = None, normalize: bool = False, channels: int = 2,
                cache_dir=None, use_cache: bool = True, max_duration: float = 3600.0,
                overwrite: bool = False, progress: bool = True, source=None,
                gain_db: float = 0.0, bits: Optional[str] = None,
                warn: Callable[[str], None] = log.warning,
                done: Optional[Callable[[], None]] = None) -> RenderReport:
    """Render the MIDI file `input` to the .wav, .flac or .ogg file `output`.

    Args:
        model: checkpoint name or path (None: models/default.safetensors); ignored if
            `source` (any NoteSource) is given.
        preset: preset name or path (None: "gm").
        tail: seconds rendered after the last event; None: until the last note has died
            out, at most AUTO_TAIL_MAX seconds.
        cache_dir, use_cache: on-disk note cache root (None: default) and whether to use it.
        max_duration: longest song accepted, in seconds, checked before any audio exists.
        gain_db: gain in dB applied last (after `normalize`); samples it pushes past full
            scale are clipped, with a warning.
        bits: sample format of a .wav (16, 24, 32f) or .flac (16, 24) file; None: 24.
        warn: called with one line per thing skipped in a damaged file or unmapped channel.
        done: called as soon as `output` is complete, with Ctrl-C held back (the CLI
            ignores signals from then on: a finished render is not "interrupted").
    Raises:
        SingsynthError (MidiFileError, CheckpointError, ConfigError...) with one line.
    """
    if not 8000 <= int(sample_rate) <= 192000:
        raise SingsynthError(f"--sample-rate {sample_rate} is out of range; use 8000-192000 Hz")
    if channels not in (1, 2):
        raise SingsynthError(f"--channels {channels} is not supported; use 1 or 2")
    if not (np.isfinite(gain_db) and -100 <= gain_db <= 40):
        raise SingsynthError(f"--gain {gain_db:g} dB is out of range; use -100 to 40 dB")
    output_format(output, bits)  # a bad --bits for this format is refused before rendering
    sr = int(sample_rate)
    started = time.perf_counter()
    report = RenderReport(str(input), str(output))
    made = missing_folders(Path(output).parent)
    tmp = open_output(output, overwrite, inputs=[input, model, preset])
    written = False
    try:
        song = read_midi(input)
        for line in song.warnings:
            warn(f"{input}: {line}")
        if tail is not None and tail < 0:
            raise SingsynthError(f"--tail {tail:g} is negative; give seconds >= 0")
        longest = song.duration + (AUTO_TAIL_MAX if tail is None else tail)
        if longest > max_duration:
            raise SingsynthError(f"{input} would last {longest:.0f} s, more than --max-duration "
                                 f"{max_duration:g} s (a corrupt delta time or tempo?); raise "
                                 "--max-duration if the song really is that long")
        from singsynth.engine import Synth
        from singsynth.engine.voice import OFFLINE_BLOCK, tail_margin
        from singsynth.generation.diskcache import DiskCachedSource
        from singsynth.generation.note import note_nbytes
        from singsynth.model.files import open_source
        from singsynth.presets import load_preset

        if source is None:  # lazy: with every note on disk, torch is never even imported
            source = open_source(model) if use_cache else None
            if source is None:
                from singsynth.model.checkpoint import load_model
                from singsynth.model.source import ModelSource
                source = ModelSource(load_model(model))
        if use_cache:
            source = DiskCachedSource(source, cache_dir)
        chosen = preset
        if preset is None:  # the GM preset once shipped, else the one-instrument default
            from singsynth.presets import PRESET_DIR
            preset = "gm" if (PRESET_DIR / "gm.yaml").is_file() else "default"
        try:
            preset_obj = load_preset(preset, list(source.instruments))
        except ConfigError as exc:
            if chosen is not None:
                raise
            # The GM preset names the default model's instruments; another model has its own.
            raise ConfigError(f"{exc} (the default preset {preset!r} is made for the default "
                              "model: pass --preset default to play this model's first "
                              "instrument, or a preset naming its instruments)") from None
        planner = Synth(source, sample_rate=sr, preset=preset_obj, offline=True,
                        cache_bytes=1 << 20)
        try:
            events = playable_events(song, sr, preset_obj, report)
            keys = plan_keys(planner, events)
        finally:
            planner.close()
        if not keys:  # every note skipped (drums only, say): a silent file helps no one
            raise SingsynthError(f"{input}: none of its {song.note_count} notes can be "
                                 f"played ({'; '.join(report.warnings) or 'all skipped'})")
        # Room for every note of the song (and its loop tail), so that none is evicted and
        # made twice.
        samples = source.note_samples * sr // source.sample_rate + 1
        note_bytes = note_nbytes(samples, tail_margin(OFFLINE_BLOCK))
        cache_bytes = min(max(1 << 30, int(1.05 * len(keys) * note_bytes)), MAX_CACHE_BYTES)
        synth = Synth(source, sample_rate=sr, preset=preset_obj, offline=True,
                      batch_size=BATCH, cache_bytes=cache_bytes)
        try:
            audio = render_events(events, keys, synth, tail=tail, progress=progress,
                                  report=report)
        finally:
            synth.close()
        for line in report.warnings:
            warn(f"{input}: {line}")
        audio = finish(audio, channels=channels, normalize=normalize, gain_db=gain_db,
                       warn=lambda line: warn(f"{input}: {line}"))
        write_audio(tmp, output, audio, sr, done, bits)
        written = True
    finally:
        Path(tmp).unlink(missing_ok=True)
        if not written:  # leave no trace: folders this render made for its output go too
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
    report.warnings[:0] = song.warnings
    report.notes_from_disk = getattr(source, "hits", 0)
    report.audio_seconds = len(audio) / sr
    report.peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    report.wall_seconds = time.perf_counter() - started
    return report
