"""Offline render: a MIDI file -> audio, through the same `Synth.process` as live play.

`OfflineRender` is one song's render in four plain steps, like FluidSynth's fast file
renderer with a model in front:
1. plan: one pass over the song gives its playable events at the output rate, every
   distinct note it needs (program changes replayed, `Synth.note_key` asked) and its
   length;
2. prepare: make those notes in large batches (`Synth.prepare`, a progress bar), reading
   them from the on-disk note cache where an earlier render left them;
3. mix: drive `process` block by block, each event pushed with its exact sample offset
   inside its block, exactly as a live driver would;
4. write: through a temporary file renamed at the end (`AudioFile`), so that a failure
   or Ctrl-C leaves no partial output.
`render_file` is the same four steps for a MIDI file on disk, with the checks and
one-line errors the CLI needs.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from singsynth.engine import Synth
from singsynth.engine.voice import OFFLINE_BLOCK, tail_margin
from singsynth.errors import SingsynthError
from singsynth.generation.diskcache import DiskCachedSource
from singsynth.generation.note import note_nbytes
from singsynth.hosts.audiofile import AudioFile, finish
from singsynth.hosts.midifile import Song, TimedEvent, read_midi
from singsynth.model.files import open_source
from singsynth.presets import Preset, host_preset, load_preset

log = logging.getLogger(__name__)

BLOCK = 8192           # samples per process() call; events land inside blocks by offset
BATCH = 64             # notes per prepare step (the model splits them: ModelSource.max_batch)
MAX_CACHE_BYTES = 8 << 30  # beyond this, evicted notes are made again (from the disk cache)
AUTO_TAIL_MAX = 5.0    # seconds rendered after the last event at most, when --tail is not given


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


# ---- plan ------------------------------------------------------------------------------

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


def plan_keys(planner, events: Sequence[TimedEvent]) -> list:
    """Every distinct NoteKey the song plays, in first-use order.

    `note_key` answers for the channel's current program, so program changes are
    replayed in order on `planner` (a Synth that never plays a note).
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


@dataclass
class Plan:
    """What a song needs, found in one pass (`OfflineRender.plan`).

    Attributes:
        events: the playable events in play order, positions in samples at `sample_rate`.
        keys: every distinct NoteKey the song plays, in first-use order.
        samples: the song's length up to and including its last event, in samples at
            `sample_rate` (the tail comes after it).
        sample_rate: the output rate, Hz.
    """

    events: List[TimedEvent]
    keys: list
    samples: int
    sample_rate: int


# ---- mix -------------------------------------------------------------------------------

def mix(synth, events: Sequence[TimedEvent], length: int, *, tail_samples: Optional[int],
        auto_tail_max: int, block: int = BLOCK) -> np.ndarray:
    """Drive `synth.process` over the song -> float32 (samples, 2).

    Args:
        events: in play order, sample positions at the synth's rate.
        length: samples up to and including the last event (`Plan.samples`).
        tail_samples: samples rendered after the last event; None renders until no voice
            sounds, at most `auto_tail_max` samples.
    """
    total = length + (tail_samples if tail_samples is not None else auto_tail_max)
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
        if tail_samples is None and start >= length and synth.stats()["voices"] == 0:
            flush = min(lag, total + lag - start)  # what the limiter still holds
            if flush > 0:
                out[start:start + flush] = synth.process(flush)
            return out[lag:start + flush]
    return out[lag:]


def cache_bytes_for(source, notes: int, sample_rate: int) -> int:
    """Note cache size (bytes) with room for `notes` whole notes at `sample_rate`, so that
    none is evicted and made twice (within 1 GiB and MAX_CACHE_BYTES)."""
    samples = source.note_samples * sample_rate // source.sample_rate + 1
    note_bytes = note_nbytes(samples, tail_margin(OFFLINE_BLOCK))
    return min(max(1 << 30, int(1.05 * notes * note_bytes)), MAX_CACHE_BYTES)


# ---- the render as one object ---------------------------------------------------------

class OfflineRender:
    """One song rendered offline: `plan` -> `prepare` -> `mix` -> `write`.

        with OfflineRender(read_midi("song.mid"), source, "default") as job:
            plan = job.plan()          # events, distinct notes, length: one pass
            job.prepare()              # make plan.keys (disk cache or model), in batches
            audio = job.mix()          # float32 (samples, 2) at 48 kHz, via Synth.process
            job.write("song.wav")      # atomically; returns what was written

    Each step runs the ones before it if they have not run; `plan` runs once. `report`
    collects the timings, counts and warnings.

    Args:
        song: a read MIDI file (`read_midi`).
        source: the NoteSource that makes the notes (wrap it in `DiskCachedSource` to
            reuse notes across renders).
        preset: a Preset, or a preset name or path (None: the engine's default).
        sample_rate: output rate, Hz.
        tail: seconds rendered after the last event; None: until the last note has died
            out, at most AUTO_TAIL_MAX seconds.
        synth: an offline Synth to play through, instead of `source`, `preset` and
            `sample_rate` (its own are used); the caller closes it. None: `prepare` makes
            one with cache room for every note of the song, closed by `close`.
        report: the RenderReport to fill (None: a new one).
    """

    def __init__(self, song: Song, source=None, preset=None, *, sample_rate: int = 48000,
                 tail: Optional[float] = None, synth: Optional[Synth] = None,
                 report: Optional[RenderReport] = None):
        if synth is not None:
            source, preset, sample_rate = synth.source, synth.preset, synth.sample_rate
        if not isinstance(preset, Preset):
            preset = load_preset(preset, list(source.instruments))
        self.song, self.source, self.preset = song, source, preset
        self.sample_rate = int(sample_rate)
        self.tail = tail
        self.synth, self._own_synth = synth, synth is None
        self.report = report if report is not None else RenderReport("song", "-")
        self.audio: Optional[np.ndarray] = None
        self._plan: Optional[Plan] = None
        self._prepared = False

    def plan(self) -> Plan:
        """Read the song once -> its Plan (the same object on every call)."""
        if self._plan is None:
            # A second synth that only answers note_key, so that replaying the song's
            # program changes leaves the playing synth untouched. Its velocity levels are
            # the playing synth's: the caller's, or the engine's default for ours.
            levels = {} if self.synth is None else {"velocity_levels": self.synth.velocity_levels}
            planner = Synth(self.source, sample_rate=self.sample_rate, preset=self.preset,
                            offline=True, cache_bytes=1 << 20, **levels)
            try:
                events = playable_events(self.song, self.sample_rate, self.preset, self.report)
                keys = plan_keys(planner, events)
            finally:
                planner.close()
            self._plan = Plan(events, keys, events[-1].sample + 1 if events else 0,
                              self.sample_rate)
        return self._plan

    def prepare(self, progress: bool = False) -> None:
        """Make every note of the plan now, BATCH at a time (blocking; a progress bar on
        stderr if `progress`)."""
        plan = self.plan()
        if self.synth is None:
            self.synth = Synth(self.source, sample_rate=self.sample_rate, preset=self.preset,
                               offline=True, batch_size=BATCH,
                               cache_bytes=cache_bytes_for(self.source, len(plan.keys),
                                                           self.sample_rate))
        started = time.perf_counter()
        self.synth.prepare(plan.keys, progress=progress)
        self.report.prepare_seconds = time.perf_counter() - started
        self.report.distinct_notes = len(plan.keys)
        self._prepared = True

    def mix(self) -> np.ndarray:
        """Play the song through `Synth.process` -> float32 (samples, 2) at `sample_rate`,
        the events on their exact samples and the limiter's look-ahead removed."""
        if not self._prepared:
            self.prepare()
        plan, sr = self.plan(), self.sample_rate
        started = time.perf_counter()
        tail = None if self.tail is None else int(round(self.tail * sr))
        self.audio = mix(self.synth, plan.events, plan.samples, tail_samples=tail,
                         auto_tail_max=int(AUTO_TAIL_MAX * sr))
        self.report.mix_seconds = time.perf_counter() - started
        self.report.audio_seconds = len(self.audio) / sr
        return self.audio

    def write(self, output, *, overwrite: bool = False, bits: Optional[str] = None,
              channels: int = 2, normalize: bool = False, gain_db: float = 0.0,
              done: Optional[Callable[[], None]] = None,
              warn: Optional[Callable[[str], None]] = None) -> np.ndarray:
        """Write the mix to `output` atomically -> the float32 (samples, channels) written.

        Args:
            output: a .wav, .flac or .ogg path, or an entered `AudioFile` (then its own
                `overwrite` and `bits` apply: `render_file` reserves it before rendering).
            bits, overwrite: see `AudioFile`.
            channels, normalize, gain_db, warn: see `audiofile.finish`.
            done: called right after the rename, with Ctrl-C held back.
        """
        # finish clips in place where it can (a song's mix is hundreds of MB); the
        # limiter already holds the mix within full scale, so `audio` keeps its samples.
        audio = finish(self.audio if self.audio is not None else self.mix(), channels=channels,
                       normalize=normalize, gain_db=gain_db, warn=warn)
        target = (contextlib.nullcontext(output) if isinstance(output, AudioFile)
                  else AudioFile(output, overwrite, bits=bits))
        with target as out:
            out.write(audio, self.sample_rate, done)
        self.report.peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        return audio

    def close(self) -> None:
        """Close the synth `prepare` made (not one the caller passed)."""
        if self._own_synth and self.synth is not None:
            self.synth.close()

    def __enter__(self) -> "OfflineRender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def render_song(song: Song, synth, *, tail: Optional[float] = None, progress: bool = False,
                report: Optional[RenderReport] = None) -> np.ndarray:
    """Plan, prepare and mix `song` with an `offline=True` synth -> float32 (samples, 2)."""
    job = OfflineRender(song, synth=synth, tail=tail, report=report)
    job.prepare(progress=progress)
    return job.mix()


# ---- a MIDI file to an audio file ------------------------------------------------------

def read_song(input, *, tail: Optional[float], max_duration: float, warn) -> Song:
    """Read the MIDI file `input` (its warnings to `warn`) and refuse, before any model is
    opened, a song that would last more than `max_duration` seconds with its tail."""
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
    return song


def note_source(model, source, use_cache: bool, cache_dir):
    """The NoteSource for a render: `source`, or the checkpoint `model`; behind the on-disk
    note cache if `use_cache`."""
    if source is None:
        # Lazy with the disk cache: with every note on disk, torch is never even imported.
        # Without it every note is made, so the model loads now (a bad file fails at once).
        source = open_source(model, lazy=use_cache)
    return DiskCachedSource(source, cache_dir) if use_cache else source


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
    started = time.perf_counter()
    report = RenderReport(str(input), str(output))
    # The output is reserved first: a path that cannot be written is refused before the
    # song is read or a note is made.
    with AudioFile(output, overwrite, inputs=[input, model, preset], bits=bits) as out:
        song = read_song(input, tail=tail, max_duration=max_duration, warn=warn)
        source = note_source(model, source, use_cache, cache_dir)
        chosen = host_preset(preset, list(source.instruments))
        with OfflineRender(song, source, chosen, sample_rate=sample_rate, tail=tail,
                           report=report) as job:
            if not job.plan().keys:  # every note skipped (drums only, say): no silent file
                raise SingsynthError(f"{input}: none of its {song.note_count} notes can be "
                                     f"played ({'; '.join(report.warnings) or 'all skipped'})")
            job.prepare(progress=progress)
            job.mix()
        for line in report.warnings:
            warn(f"{input}: {line}")
        job.write(out, channels=channels, normalize=normalize, gain_db=gain_db, done=done,
                  warn=lambda line: warn(f"{input}: {line}"))
    report.warnings[:0] = song.warnings
    report.notes_from_disk = getattr(source, "hits", 0)
    report.wall_seconds = time.perf_counter() - started
    return report
