"""The background generator: requests in, notes at the output rate out.

Why a thread and not a process: torch releases the GIL inside its ops, the notes are
written straight into numpy arrays the audio thread already holds (a process would need
shared memory and a second copy of the model), and `benchmarks/engine.py` measures that
`Synth.process` stays well inside its block while this thread generates. The audio thread
never waits on it: requests go through a `queue.SimpleQueue` (its `put` never blocks),
finished notes come back through a deque, and streamed samples are published by raising
`Note.available` after they are written.

Scheduling: requests from played notes go before prewarm requests. The cold notes struck in
one audio block (a chord) arrive as one request, and with those arriving within `wait`
seconds (0 by default) are batched, up to `batch_size`, into one `source.stream` call;
several played batches advance round-robin, one chunk each, so a new cold note does not
wait for an earlier one to finish. Prewarm batches advance only
when no played batch is active, and are paused (not thrown away) when one arrives; in one
loop a played note still waits for the prewarm chunk in progress (`prewarm_chunk` samples
of up to `batch_size` notes: 50 ms and more for the default model on one CPU core). Live
play avoids that wait: `worker.ProcessGenerator` runs this loop twice, in two processes,
one making only played notes and one only prewarm notes at the lowest CPU priority.

A streamed note becomes `playable` only once generation, at the speed measured so far,
will stay ahead of playback, so a slow model delays the start instead of leaving gaps.
When a model streams slower than it renders whole notes (a per-chunk cost), `cold="auto"`
measures both and plays cold notes from whichever makes them playable sooner.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
import time
from collections import deque
from typing import Callable, List, Optional, Sequence

import numpy as np
import soxr

from singsynth.generation.note import Note, NoteTables
from singsynth.generation.resample import SincStream
from singsynth.generation.source import NoteSource
from singsynth.notes import NoteKey, single

PLAYED = 0
PREWARM = 1

log = logging.getLogger(__name__)


# The throwaway note `ThreadGenerator.warm_up` makes (middle C, the middle trained velocity).
WARM_UP_KEY = NoteKey(single(0), 60, 2.0)

# Samples of room beyond a note's length at the output rate: the streaming resamplers may
# deliver a few more than the exact ratio.
SPARE = 4096


def output_samples(source: NoteSource, rate: int) -> int:
    """A whole note's length at output rate `rate`."""
    return math.ceil(source.note_samples * rate / source.sample_rate)


def leave_a_core() -> None:
    """Let torch's thread pool use all cores but one, unless OMP_NUM_THREADS says otherwise.

    For a model generating in a thread of the audio process (`play --generator thread`):
    with torch's pool on every core the audio callback misses blocks (the process
    generator leaves a core the same way in its child). Only acts when the source has
    loaded torch; this layer never imports it.
    """
    torch = sys.modules.get("torch")
    if torch is not None and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def resample_notes(notes: np.ndarray, source_rate: int, rate: int, quality: str = "HQ",
                   threads: int = 1) -> np.ndarray:
    """Whole notes to the output rate: float32 (n, samples at source_rate) -> (n, samples at rate).

    With `threads` > 1 the notes are resampled one by one on that many threads (soxr
    releases the GIL; the same samples as one call over all notes, ~1.8x faster on 2
    cores). Offline renders use that; live play keeps its cores for the audio.
    """
    notes = np.ascontiguousarray(notes, dtype=np.float32)
    if source_rate == rate:
        return notes
    if threads > 1 and len(notes) > 1:
        from concurrent.futures import ThreadPoolExecutor

        def one(note: np.ndarray) -> np.ndarray:
            return soxr.resample(note, source_rate, rate, quality=quality)

        with ThreadPoolExecutor(min(threads, len(notes))) as pool:
            return np.stack(list(pool.map(one, notes))).astype(np.float32, copy=False)
    out = soxr.resample(notes.T, source_rate, rate, quality=quality)
    return np.ascontiguousarray(out.T, dtype=np.float32)


class _Batch:
    """One batch of notes being generated, by `source.stream` chunks or one `source.render`."""

    def __init__(self, gen: "ThreadGenerator", notes: List[Note], chunk: int, played: bool, mode: str):
        self.gen = gen
        self.notes = notes
        self.mode = mode
        self.played = played
        self.start = time.perf_counter()
        self.first = None  # (time, samples available) after the first chunk
        self.total = output_samples(gen.source, gen.sample_rate)
        for note in notes:
            note.begin()
            gen.alloc(note, self.total + SPARE)
        if mode == "render":
            return
        self.resample = None
        if gen.source.sample_rate != gen.sample_rate:
            if played:  # sound after the first chunk (see resample.py)
                sinc = SincStream(gen.source.sample_rate, gen.sample_rate, len(notes))
                self.resample = lambda x, last=False: sinc.process(x, last).T
            else:
                rs = soxr.ResampleStream(gen.source.sample_rate, gen.sample_rate, len(notes),
                                         dtype="float32", quality=gen.quality)
                self.resample = lambda x, last=False: rs.resample_chunk(np.ascontiguousarray(x.T), last)
        self.chunks = iter(gen.source.stream([n.key for n in notes], chunk=chunk))

    def step(self) -> bool:
        """Generate and publish one chunk (or the whole batch); True when finished."""
        gen = self.gen
        if self.mode == "render":
            whole = gen.source.render([n.key for n in self.notes])
            whole = resample_notes(whole, gen.source.sample_rate, gen.sample_rate, gen.quality)
            for note, data in zip(self.notes, whole):
                n = min(len(data), len(note.data))
                note.data[:n] = data[:n]
                note.available = n
                gen.finished(note)
            gen.timing("render", time.perf_counter() - self.start)
            return True
        try:
            chunk = np.asarray(next(self.chunks), dtype=np.float32)
        except StopIteration:
            if self.resample is not None:
                self._publish(self.resample(np.zeros((len(self.notes), 0), np.float32), last=True))
            for note in self.notes:
                gen.finished(note)
            return True
        self._publish(self.resample(chunk) if self.resample is not None else chunk.T)
        if self.played and not self.notes[0].playable:
            self._check_playable()
        gen.published(self.notes)
        return False

    def _publish(self, frames: np.ndarray) -> None:
        """Write (samples, n) output-rate frames, then raise `available` (order matters)."""
        m = len(frames)
        if m == 0:
            return
        for i, note in enumerate(self.notes):
            a = note.available
            m_i = min(m, len(note.data) - a)
            note.data[a:a + m_i] = frames[:m_i, i]
            note.available = a + m_i

    def _check_playable(self) -> None:
        """Let voices start once generation, at its measured speed, will stay ahead of them.

        Playback from a buffer of A samples never overtakes a generator producing r samples
        per second (r < the output rate R) while T = (total - A) / r seconds remain iff
        A >= (R - r) * T; with r >= R it never does. r is taken pessimistically (divided by
        `margin`) from this batch's chunks after the first (which also pays the model's
        look-ahead), or before the second chunk from earlier batches.
        """
        now = time.perf_counter()
        have = self.notes[0].available
        if have == 0:
            return
        if self.first is None:
            self.first = (now, have)
            rate = self.gen.stream_rate
            if rate is None:
                rate = have / (now - self.start)
        else:
            t1, a1 = self.first
            rate = (have - a1) / max(now - t1, 1e-6)
            self.gen.stream_rate = rate
        rate /= self.gen.margin
        out_rate = self.gen.sample_rate
        if rate >= out_rate or have * rate >= (out_rate - rate) * (self.total - have):
            for note in self.notes:
                note.make_playable()
            self.gen.timing("stream", now - self.start)


class ThreadGenerator(NoteTables):
    """Generates requested notes on a background thread.

    Args:
        source: the `NoteSource` (a SING model, or a sine source in tests).
        sample_rate: output rate in Hz the notes are resampled to.
        batch_size: most notes per `source.stream` call.
        wait: seconds to wait for more played requests before starting a batch.
        chunk: samples (source rate) per streamed chunk of a played note.
        prewarm_chunk: samples (source rate) per chunk of a prewarm batch; larger is
            cheaper, smaller lets a played note interrupt sooner.
        quality: soxr quality ("HQ", "MQ", "LQ", ...).
        is_cached: callable(key) -> bool; prewarm skips keys it says are cached.
        cold: how played (cold) notes are generated: "stream", "render", or "auto": stream,
            and if streamed notes took over 50 ms to become playable, try a whole render
            once, then keep the one that has made notes playable sooner (exponential
            averages), streaming again after every 8 renders in a row so that a slow
            moment does not decide for good; streaming wins with a fast model, one whole
            render wins when the model's per-chunk cost makes streaming slower than real
            time.
        margin: safety factor on the measured generation speed before a streamed note is
            declared playable (see `_Batch._check_playable`).
        thread: start the background thread (`worker.py` runs the same loop in a process
            of its own instead).
    """

    def __init__(self, source: NoteSource, sample_rate: int, batch_size: int = 16, wait: float = 0.0,
                 chunk: int = 256, prewarm_chunk: int = 16000, quality: str = "HQ",
                 is_cached: Optional[Callable[[NoteKey], bool]] = None, cold: str = "auto",
                 margin: float = 2.0, thread: bool = True):
        self.source = source
        self.sample_rate = int(sample_rate)
        self.batch_size = max(1, int(batch_size))
        self.wait = float(wait)
        self.chunk = int(chunk)
        self.prewarm_chunk = int(prewarm_chunk)
        self.quality = quality
        self.is_cached = is_cached or (lambda key: False)
        if cold not in ("auto", "stream", "render"):
            raise ValueError(f"cold must be 'auto', 'stream' or 'render', not {cold!r}")
        self.cold = cold
        self.margin = float(margin)
        self.explore = 0.05  # seconds: a stream slower than this to start makes auto try render
        self.latency = {"stream": None, "render": None}  # seconds until playable (averaged)
        self.recheck = 8  # auto: after this many renders in a row, stream once more
        self._renders = 0
        self.stream_rate: Optional[float] = None  # output samples/s a played stream makes
        self.done: deque = deque()      # finished Notes, drained by the audio thread
        self.pending: dict = {}         # key -> Note queued or generating (written here only)
        self.generated = 0
        self.errors = 0
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._played_q: deque = deque()   # played Notes not yet started, first come first
        self._prewarm_q: deque = deque()  # prewarm Notes not yet started
        self._played: List[_Batch] = []
        self._prewarm: Optional[_Batch] = None
        self._turn = 0
        self._stop = False
        self._worked = False  # a batch ran since the loop was last idle
        self._thread = None
        if thread:
            self._thread = threading.Thread(target=self._run, name="singsynth-generator",
                                            daemon=True)
            self._thread.start()

    # ---- any thread -------------------------------------------------------------
    def request(self, notes: Sequence[Note]) -> None:
        """Generate `notes` as soon as possible (played notes, one batch); never blocks."""
        self._requests.put((PLAYED, list(notes)))

    def request_prewarm(self, keys: Sequence[NoteKey]) -> None:
        """Generate `keys` when nothing played is waiting; never blocks."""
        for key in keys:
            self._requests.put((PREWARM, key))

    def timing(self, mode: str, seconds: float) -> None:
        """Record how long a played batch took to become playable (generator thread)."""
        old = self.latency[mode]
        self.latency[mode] = seconds if old is None else 0.7 * old + 0.3 * seconds

    def _cold_mode(self) -> str:
        if self.cold != "auto":
            return self.cold
        stream, render = self.latency["stream"], self.latency["render"]
        if stream is None:
            return "stream"
        if render is None:  # try a whole render once, only if streaming was slow to start
            return "render" if stream > self.explore else "stream"
        if stream <= render:
            self._renders = 0
            return "stream"
        # A stream measured while the machine was busy (a start-up, another program)
        # must not lock render in for good: measure streaming again now and then.
        self._renders += 1
        if self._renders > self.recheck:
            self._renders = 0
            self.latency["stream"] = None  # judged on this measurement, not the old average
            return "stream"
        return "render"

    @property
    def busy(self) -> int:
        """Notes queued or being generated."""
        return len(self.pending)

    def close(self) -> None:
        """Stop the thread (the batch in progress is abandoned)."""
        self._stop = True
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # ---- where notes live (worker.py keeps them in shared memory instead) --------
    def alloc(self, note: Note, capacity: int) -> None:
        """Give `note` room for `capacity` samples before its batch starts."""
        note.data = np.zeros(capacity, np.float32)

    def published(self, notes: List[Note]) -> None:
        """New samples of `notes` were written (and `available`/`playable` raised)."""

    def finished(self, note: Note) -> None:
        """The whole note is written: trim it and build its loop."""
        # Drop the spare capacity before the note is cached (voices still reading the old
        # array keep it alive until they move on to the new one).
        note.data = note.data[:note.available].copy()
        note.finish()

    def room(self) -> int:
        """How many more notes may start now."""
        return self.batch_size

    # ---- generator thread -------------------------------------------------------
    # ---- hooks: the process generator's child (`process._SlotGenerator`) extends these
    def take(self, item) -> None:
        """Take one request off the queue: (PLAYED, [Note, ...]) or (PREWARM, key)."""
        if item is None:
            return
        priority, what = item
        if priority == PLAYED:
            for note in what:
                if not note.started:  # (a prewarm note already generating streams as it is)
                    self.pending[note.key] = note
                    self._played_q.append(note)
            return
        else:
            key = what
            if key in self.pending or self.is_cached(key):
                return
            note = Note(key)
            self.pending[key] = note
        self._prewarm_q.append(note)

    def _drain(self, timeout: Optional[float]) -> None:
        try:
            self.take(self._requests.get(timeout=timeout) if timeout else self._requests.get_nowait())
            while True:
                self.take(self._requests.get_nowait())
        except queue.Empty:
            pass

    def _pop(self, fifo: deque, count: int) -> List[Note]:
        notes = []
        while fifo and len(notes) < count:
            note = fifo.popleft()
            # Skip stale entries: already started, or superseded by a played request.
            if not note.started and self.pending.get(note.key) is note and note not in notes:
                notes.append(note)
        return notes

    def warm_up(self) -> None:
        """Generate one throwaway note, both ways, before any note is asked for.

        A model's first call pays one-off costs (memory pools, kernel set-up): with the
        default model on CPU, 5 ms more on a stream's first chunk and 45 ms more on a whole
        render. Left to the first played note they would make it late, and in
        `cold="auto"` make streaming look slow enough to try a render on the second. The
        note is not cached or played.
        """
        try:
            chunks = self.source.stream([WARM_UP_KEY], chunk=self.chunk)
            first = np.asarray(next(chunks), dtype=np.float32)
            next(chunks, None)
            if self.source.sample_rate != self.sample_rate:
                SincStream(self.source.sample_rate, self.sample_rate, 1).process(first)
            resample_notes(self.source.render([WARM_UP_KEY]), self.source.sample_rate,
                           self.sample_rate, self.quality)
        except Exception:  # the played note that meets the same fault reports it
            log.exception("note generator warm-up failed")

    def _run(self) -> None:
        if self._thread is not None:
            self.warm_up()
        while not self._stop:
            waiting = (self._played_q or self._prewarm_q) and self.room() > 0
            idle = not self._played and self._prewarm is None and not waiting
            if idle and self._worked:
                self._worked = False
                self.went_idle()
            self._drain(0.1 if idle else None)
            if self._stop:
                break
            if self._played_q:
                # A chord's notes arrive within one audio block: wait briefly to batch them.
                deadline = time.monotonic() + self.wait
                while len(self._played_q) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                    self._drain(left)
                notes = self._pop(self._played_q, min(self.batch_size, self.room()))
                if notes:
                    self._start(notes, self.chunk, played=True, mode=self._cold_mode())
            if self._played:
                # A batch not yet playable first (a note waits for its start), then the
                # others round-robin, one chunk each.
                batch = next((b for b in self._played if not b.notes[0].playable), None)
                if batch is None:
                    self._turn = (self._turn + 1) % len(self._played)
                    batch = self._played[self._turn]
                if self._step(batch):
                    self._played.remove(batch)
            else:
                if self._prewarm is None:
                    notes = self._pop(self._prewarm_q, min(self.batch_size, self.room()))
                    if notes:
                        self._start(notes, self.prewarm_chunk, played=False, mode="stream")
                if self._prewarm is not None and self._step(self._prewarm):
                    self._prewarm = None

    def _start(self, notes: List[Note], chunk: int, played: bool, mode: str) -> None:
        try:
            batch = _Batch(self, notes, chunk, played, mode)
        except Exception:  # a broken source must not kill the thread
            log.exception("note generation failed to start")
            self.fail(notes)
            return
        self._worked = True
        if played:
            self._played.append(batch)
        else:
            self._prewarm = batch

    def went_idle(self) -> None:
        """Called when the loop runs out of work after a batch (a hook for subclasses)."""

    def _step(self, batch: _Batch) -> bool:
        try:
            finished = batch.step()
        except Exception:
            log.exception("note generation failed")
            self.fail(batch.notes)
            return True
        if finished:
            for note in batch.notes:
                self.release(note)
            self.generated += len(batch.notes)
        return finished

    def fail(self, notes: List[Note]) -> None:
        """Generation of `notes` raised: they end FAILED (silent)."""
        self.errors += 1
        for note in notes:
            note.fail()
            self.release(note)

    def release(self, note: Note) -> None:
        """`note` ended (DONE or FAILED): off the pending table, out to `collect`."""
        if self.pending.get(note.key) is note:
            del self.pending[note.key]
        self.done.append(note)
