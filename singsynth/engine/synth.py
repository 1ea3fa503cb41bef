"""`Synth`: the pull-based synth core that live play, offline render and tests all drive.

Threads: event methods (`note_on`, ...) may be called from any thread and only enqueue.
`process` is the audio thread: it applies the events due in the block at their sample
offsets, starts voices from the note cache (or from a note still streaming out of the
generator), mixes and limits. It never waits on the model, on a lock or on a file.
"""
from __future__ import annotations

import os
import threading
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from singsynth.engine.cache import NoteCache
from singsynth.engine.channel import BEND, NOTES_OFF, RESET, SOUND_OFF, SUSTAIN_UP, Channel
from singsynth.engine.events import BEND as BEND_EVENT
from singsynth.engine.events import CONTROL, NOTE_OFF, NOTE_ON, PROGRAM, EventQueue
from singsynth.engine.limiter import Limiter
from singsynth.engine.lookup import REQUEST, NoteLookup
from singsynth.engine.mixer import mix
from singsynth.engine.morph import GLIDE, MorphVoice, prewarm_steps, start_key, step_key
from singsynth.engine.voice import MAX_BLOCK, OFFLINE_BLOCK, Voice, playable_rate, tail_margin
from singsynth.generation.generator import KINDS, NoteGenerator, make_generator
from singsynth.generation.note import TAIL_MARGIN, Note
from singsynth.generation.source import NoteSource
from singsynth.generation.thread import resample_notes
from singsynth.notes import NoteKey, level_velocity, velocity_index, velocity_level
from singsynth.presets import Patch, Preset, load_preset


class Synth:
    """A multitimbral synthesizer playing notes from a `NoteSource`.

    Args:
        source: where notes come from (`ModelSource` for a checkpoint).
        sample_rate: output rate in Hz (e.g. 44100 or 48000); notes are resampled with soxr.
        preset: a `Preset`, a preset name or path, or None for "default".
        polyphony: most voices sounding; beyond it released voices are stolen first,
            then the oldest, each fading out in `steal_fade` seconds.
        cache_bytes: byte budget of the note cache.
        velocity_levels: MIDI velocity 1-127 is quantised to this many levels.
        batch_size: most notes generated per model call.
        offline: generate uncached notes synchronously inside `process` (bit-reproducible
            renders); no background thread; voices read up to OFFLINE_BLOCK samples at
            once and whole notes are resampled on every core.
        steal_fade: seconds. quality: soxr quality. wait: seconds the generator waits to
            batch played notes. chunk: samples (source rate) per streamed chunk.
        cold: how uncached played notes are generated: "stream", "render" or "auto"
            (see `generation.thread.ThreadGenerator`).
        generator: "thread" (the model runs in this process; renders and tests) or
            "process" (in a child process, so torch never holds the audio thread's GIL;
            live play). Both make the same notes.
        helper_priority: with the process generator, the SCHED_FIFO priority of its two
            message threads here (see `generation.process.realtime_thread`); `play` asks for 1.
    """

    def __init__(self, source: NoteSource, sample_rate: int = 48000,
                 preset: Union[Preset, str, None] = None, *, polyphony: int = 128,
                 cache_bytes: int = 1 << 30, velocity_levels: int = 16, batch_size: int = 16,
                 offline: bool = False, steal_fade: float = 0.005, quality: str = "HQ",
                 wait: float = 0.0, chunk: int = 256, cold: str = "auto",
                 generator: str = "thread", helper_priority: Optional[int] = None):
        self.source = source
        # The velocities the source was trained at: a played velocity maps through them.
        self.velocities = tuple(source.velocities)
        self.sample_rate = int(sample_rate)
        if not isinstance(preset, Preset):
            preset = load_preset(preset, list(source.instruments))
        self.preset = preset
        self.polyphony = int(polyphony)
        self.velocity_levels = int(velocity_levels)
        self.batch_size = int(batch_size)
        self.offline = bool(offline)
        self.quality = quality
        self.steal_samples = max(1, int(steal_fade * self.sample_rate))
        # Offline there is no block deadline: longer reads, fewer Python calls (voice.py).
        self.max_block = OFFLINE_BLOCK if self.offline else MAX_BLOCK
        self._margin = max(TAIL_MARGIN, tail_margin(self.max_block))
        self.cache = NoteCache(cache_bytes)
        self.events = EventQueue()
        self.limiter = Limiter(self.sample_rate)
        # Samples the output lags the events: the limiter's look-ahead (0.65 ms at 48 kHz).
        self.latency = self.limiter.latency
        self.channels = [Channel(preset.patch(c, 0)) for c in range(16)]
        self.voices: List[Voice] = []
        self.stalls = 0
        self._cold: List[Note] = []  # notes to request from the generator after this block
        self._audio_thread: Optional[int] = None  # ident of the thread calling process()
        self._gains = [ch.gains() for ch in self.channels]
        self._order = 0
        # Controllers that move morphing voices (121 resets the mod wheel).
        ccs = preset.morph_ccs()
        self._morph_ccs = ccs | {121} if ccs else ccs
        self._glide = max(1, int(GLIDE * self.sample_rate))
        if generator not in KINDS:
            raise ValueError(f"generator must be 'thread' or 'process', not {generator!r}")
        # The one place the engine asks where a key's note is (cache, in flight, new).
        self.notes = NoteLookup(self.cache, None)
        if not self.offline:
            self.generator = make_generator(
                generator, source, self.sample_rate, batch_size=batch_size, wait=wait,
                chunk=chunk, quality=quality, is_cached=self.cache.__contains__, cold=cold,
                helper_priority=helper_priority)

    @property
    def generator(self) -> Optional[NoteGenerator]:
        """The `NoteGenerator` making notes in the background; None offline."""
        return self.notes.generator

    @generator.setter
    def generator(self, generator: Optional[NoteGenerator]) -> None:
        self.notes.generator = generator

    # ---- events: any thread, never block ---------------------------------------------
    def note_on(self, channel: int, pitch: int, velocity: int, offset: int = 0) -> None:
        """Strike `pitch` (0-127) at MIDI `velocity` (0 = note-off) on `channel` (0-15).

        Called from another thread than the one calling `process`, a cold note starts
        generating at once (`prefetch`) instead of when the next block applies the event:
        that wait (0-5.3 ms at 256 frames) no longer adds to its latency. Notes struck from
        the audio thread itself (a plugin host, before its `process` call) still go to the
        generator together after the block, so a chord is one batch.
        """
        if self._audio_thread is not None and threading.get_ident() != self._audio_thread:
            self.prefetch(channel, pitch, velocity)
        self.events.push(NOTE_ON, int(channel) & 15, int(pitch) & 127, int(velocity), offset)

    def note_off(self, channel: int, pitch: int, offset: int = 0) -> None:
        """Release `pitch` on `channel`."""
        self.events.push(NOTE_OFF, int(channel) & 15, int(pitch) & 127, 0, offset)

    def control_change(self, channel: int, cc: int, value: int, offset: int = 0) -> None:
        """MIDI controller `cc` (0-127) set to `value` (0-127)."""
        self.events.push(CONTROL, int(channel) & 15, int(cc), int(value), offset)

    def program_change(self, channel: int, program: int, offset: int = 0) -> None:
        """Select General MIDI `program` (0-127) on `channel`; the preset maps it."""
        self.events.push(PROGRAM, int(channel) & 15, int(program) & 127, 0, offset)

    def pitch_bend(self, channel: int, value: int, offset: int = 0) -> None:
        """Pitch wheel, `value` -8192..8191 as in mido (0 = centre)."""
        self.events.push(BEND_EVENT, int(channel) & 15, int(value), 0, offset)

    def handle(self, msg, offset: int = 0) -> None:
        """Enqueue a `mido.Message`; types other than the five above are ignored."""
        t = msg.type
        if t == "note_on":
            self.note_on(msg.channel, msg.note, msg.velocity, offset)
        elif t == "note_off":
            self.note_off(msg.channel, msg.note, offset)
        elif t == "control_change":
            self.control_change(msg.channel, msg.control, msg.value, offset)
        elif t == "program_change":
            self.program_change(msg.channel, msg.program, offset)
        elif t == "pitchwheel":
            self.pitch_bend(msg.channel, msg.pitch, offset)

    def prefetch(self, channel: int, pitch: int, velocity: int) -> None:
        """Start generating the note a note-on would play, before the note-on is processed.

        For a host whose events wait before they reach `process` (live play holds each
        MIDI event one block, so that its timing inside the block is exact): call this
        from the MIDI thread as the event arrives, and a cold note's generation overlaps
        that wait. Any thread, never blocks; the later `note_on` picks up the same note.
        A key that no note-on claims (a program change came between) is simply cached.
        """
        if self.generator is None or velocity <= 0:
            return
        self.notes.prefetch(self.note_key(channel, int(pitch) & 127, velocity))

    # ---- the audio thread ------------------------------------------------------------
    def process(self, frames: int) -> np.ndarray:
        """Render the next block: float32 (frames, 2) at `sample_rate`. Audio thread only.

        Events due in the block are applied at their sample offsets; the mix goes through
        the look-ahead limiter (`limiter.Limiter`), so no sample exceeds its ceiling
        (-0.3 dBFS), and comes out `latency` samples later (an event at offset k of this
        block sounds from sample k + latency of the output stream).
        """
        self._audio_thread = threading.get_ident()
        out = np.zeros((frames, 2), np.float32)
        self.notes.collect()
        events = self.events.pop_block(frames)
        pos, i = 0, 0
        while pos < frames:
            while i < len(events) and events[i].offset <= pos:
                self._apply(events[i])
                i += 1
            end = min(events[i].offset if i < len(events) else frames, frames, pos + self.max_block)
            if self.voices:
                mix(self.voices, end - pos, self._gains, out[pos:end])
                if any(v.finished for v in self.voices):
                    for v in self.voices:
                        if v.finished:
                            self.stalls += v.stalls
                    self.voices = [v for v in self.voices if not v.finished]
            pos = end
        if self._cold:  # one request per block: a chord is one batch, with no waiting
            if self.generator is not None:
                self.generator.request(self._cold)
            self._cold = []
        return self.limiter.process(out)

    def _apply(self, ev) -> None:
        ch = self.channels[ev.channel]
        if ev.kind == NOTE_ON and ev.b > 0:
            self._note_on(ev.channel, ch, ev.a, ev.b)
        elif ev.kind in (NOTE_ON, NOTE_OFF):
            for v in self.voices:
                if v.channel == ev.channel and v.pitch == ev.a and not v.released and not v.sustained:
                    self._order += 1
                    v.note_off(ch.sustain, self._order)
        elif ev.kind == CONTROL:
            self._control(ev.channel, ch, ev.a, ev.b)
        elif ev.kind == PROGRAM:
            ch.program = ev.a
            ch.patch = self.preset.patch(ev.channel, ev.a)
            self._gains[ev.channel] = ch.gains()
        elif ev.kind == BEND_EVENT:
            ch.bend = min(max(ev.a, -8192), 8191)
            self._rebend(ev.channel, ch)

    def _note_on(self, c: int, ch: Channel, pitch: int, velocity: int) -> None:
        patch = ch.patch
        key = self._key(patch, pitch, velocity)
        for v in self.voices:  # the same key struck again: fade the old voice, start anew
            if v.channel == c and v.pitch == pitch:
                v.steal(self.steal_samples)
        amp = patch.gain * self._soft_gain(patch, velocity)
        if patch.morph is not None:
            self._make_room()
            self._order += 1
            self.voices.append(MorphVoice(
                patch.morph, key, self._notes, ch.controls, self._glide, c,
                pitch, amp, patch.release * self.sample_rate, ch.rate, self._order,
                live=not self.offline))
            return
        note = self._note(key)
        self._make_room()
        self._order += 1
        self.voices.append(Voice(note, c, pitch, amp, patch.release * self.sample_rate,
                                 ch.rate, self._order))

    def _note(self, key: NoteKey) -> Note:
        """The note for `key`: cached, in flight, or requested now (rendered, offline)."""
        note, where = self.notes.find(key)
        if where == REQUEST:
            if self.offline:
                note = Note.complete(key, self._render([key])[0], self._margin)
                self.cache.put(note)
            else:
                self._cold.append(note)
        return note

    def _notes(self, keys: Sequence[NoteKey]) -> List[Note]:
        """`_note` for several keys; offline, the uncached ones are rendered in one batch."""
        if self.offline:
            todo = [k for k in dict.fromkeys(keys) if k not in self.cache]
            if todo:
                for key, data in zip(todo, self._render(todo)):
                    self.cache.put(Note.complete(key, data, self._margin))
        return [self._note(k) for k in keys]

    def _make_room(self) -> None:
        active = [v for v in self.voices if not v.stolen]
        if len(active) >= self.polyphony:
            released = [v for v in active if v.released]
            victim = (min(released, key=lambda v: v.released_at) if released
                      else min(active, key=lambda v: v.order))
            victim.steal(self.steal_samples)
        # Fading voices are extra; bound them so a flood of notes cannot grow the mix.
        excess = len(self.voices) - self.polyphony - 64
        if excess > 0:
            fading = sorted((v for v in self.voices if v.stolen), key=lambda v: v.order)
            drop = set(id(v) for v in fading[:excess])
            self.voices = [v for v in self.voices if id(v) not in drop]

    def _control(self, c: int, ch: Channel, cc: int, value: int) -> None:
        action = ch.control(cc, value)
        self._gains[c] = ch.gains()
        if cc in self._morph_ccs:  # morphing voices follow their controller from this sample
            for v in self.voices:
                if v.channel == c and type(v) is MorphVoice and \
                        (cc == v.morph.cc or cc == v.morph.cc2 or cc == 121):
                    v.move_to(ch.controls)
        if action == SUSTAIN_UP:
            self._release_sustained(c)
        elif action == SOUND_OFF:  # fade everything now
            for v in self.voices:
                if v.channel == c:
                    v.steal(self.steal_samples)
        elif action == NOTES_OFF:  # as many note-offs: the pedal still holds them
            for v in self.voices:
                if v.channel == c and not v.released and not v.sustained:
                    self._order += 1
                    v.note_off(ch.sustain, self._order)
        elif action == RESET:
            self._release_sustained(c)
            self._rebend(c, ch)
        elif action == BEND:
            self._rebend(c, ch)

    def _release_sustained(self, c: int) -> None:
        for v in self.voices:
            if v.channel == c and v.sustained:
                self._order += 1
                v.start_release(self._order)

    def _rebend(self, c: int, ch: Channel) -> None:
        rate = playable_rate(ch.rate)  # as at note-on: a faster read overruns the loop tail
        for v in self.voices:
            if v.channel == c:
                v.rate = rate

    # ---- keys and generation -----------------------------------------------------------
    def _level_velocity(self, patch: Patch, velocity: int) -> float:
        """MIDI velocity -> the velocity at the centre of its level, through the preset's curve."""
        curved = 127.0 * (min(max(velocity, 1), 127) / 127.0) ** patch.velocity_curve
        level = velocity_level(max(1, int(round(curved))), self.velocity_levels)
        return level_velocity(level, self.velocity_levels)

    def _key(self, patch: Patch, pitch: int, velocity: int) -> NoteKey:
        index = velocity_index(self._level_velocity(patch, velocity), self.velocities)
        return NoteKey(patch.instrument, min(max(pitch + patch.transpose, 0), 127), round(index, 6))

    def _soft_gain(self, patch: Patch, velocity: int) -> float:
        """Below the softest trained velocity (25) every level plays the same note: scale
        its amplitude instead, so that dynamics stay continuous down to velocity 1."""
        return min(1.0, self._level_velocity(patch, velocity) / self.velocities[0])

    def note_key(self, channel: int, pitch: int, velocity: int) -> NoteKey:
        """The key a note-on would play now on `channel` (with its current program); for
        a morph patch, the grid step nearest its controller's current position."""
        ch = self.channels[int(channel) & 15]
        patch = ch.patch
        key = self._key(patch, int(pitch), int(velocity))
        if patch.morph is not None:
            key = start_key(patch.morph, key, ch.controls)
        return key

    def _render(self, keys: Sequence[NoteKey]) -> np.ndarray:
        """Whole notes at the output rate: float32 (len(keys), samples)."""
        notes = self.source.render(list(keys))
        # Offline nothing else needs the cores; live, the audio thread does.
        threads = (os.cpu_count() or 1) if self.offline else 1
        return resample_notes(notes, self.source.sample_rate, self.sample_rate, self.quality,
                              threads)

    def prepare(self, keys: Iterable[NoteKey], progress: bool = True) -> int:
        """Generate every uncached key now, `batch_size` at a time (blocking).

        Offline, the notes go straight into the cache; live, they reach it at the next
        `process` (the audio thread owns the cache), and the source's `render` then runs
        in the calling thread while the generator thread may be using the same source.
        Returns how many notes were made.
        """
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        bar = None
        if progress and todo:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="note", desc="generating notes")
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            for key, data in zip(batch, self._render(batch)):
                note = Note.complete(key, data, self._margin)
                if self.offline:
                    self.cache.put(note)
                else:
                    self.notes.made.append(note)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return len(todo)

    def prewarm_keys(self) -> List[NoteKey]:
        """Keys of the preset's prewarm ranges at every velocity level, centre first (for a
        morph patch, each note's `prewarm_steps` of the grid)."""
        keys = []
        levels = self.velocity_levels
        for patch in self.preset.prewarm_patches():
            lo, hi = patch.prewarm
            mid = (lo + hi) / 2
            order = sorted(((abs(p - mid), abs(l - 0.6 * levels), p, l)
                            for p in range(lo, hi + 1) for l in range(levels)))
            steps = prewarm_steps(patch.morph) if patch.morph is not None else ()
            for _, _, p, l in order:
                index = round(velocity_index(level_velocity(l, levels), self.velocities), 6)
                key = NoteKey(patch.instrument, min(max(p + patch.transpose, 0), 127), index)
                keys.append(key)
                keys.extend(step_key(patch.morph, k, key) for k in steps)
        return list(dict.fromkeys(keys))

    def prewarm(self, keys: Optional[Sequence[NoteKey]] = None) -> List[NoteKey]:
        """Queue `keys` (default: the preset's prewarm keys) for background generation at
        low priority; they reach the cache during later `process` calls.

        Offline there is no background: nothing is queued (use `prepare`). Returns the keys.
        """
        keys = self.prewarm_keys() if keys is None else list(keys)
        if self.generator is not None:
            self.generator.request_prewarm(keys)
        return keys

    def stats(self) -> dict:
        """Counters: voices, cache hits/misses/evictions/bytes, notes generating, limiter blocks."""
        gen = self.generator
        return {
            "voices": len(self.voices),
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
            "cache_evictions": self.cache.evictions,
            "cache_bytes": self.cache.bytes,
            "cache_notes": len(self.cache),
            "generating": gen.busy if gen is not None else 0,
            "generated": gen.generated if gen is not None else 0,
            "limiter_blocks": self.limiter.active_blocks,
            "stalls": self.stalls + sum(v.stalls for v in self.voices),
            "dropped_events": self.events.dropped,
        }

    def close(self) -> None:
        """Stop the background generator."""
        if self.generator is not None:
            self.generator.close()
            self.generator = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
