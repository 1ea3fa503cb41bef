"""The note generator in a process of its own, for live play.

Why: torch holds the GIL for milliseconds inside some ops (a conv on a CPU: 3-4.5 ms
measured), and a generator *thread* then delays the audio callback past its block. In
its own process the model cannot touch the audio process's GIL.

How the halves talk:
- notes are written into `slots`, rows of one shared float32 array (n_slots, capacity)
  at the output rate; the child writes samples first and then reports how many are
  written, so the parent only ever reads written samples (as with `Note.available`);
- requests go down one pipe, reports come up another (each pipe has one writer):
    down: ("played" | "prewarm", [(id, key), ...]), ("free", slot), None = stop
    up:   ("ready",) or ("error", class name, message), ("start", id, slot),
          ("data", [(id, available, playable), ...]), ("done", id, available),
          ("failed", [id, ...])
- the parent keeps one `Note` per id. Its `data` is the slot's row while streaming, and a
  private copy once done; the slot goes back to the child only after `QUARANTINE`
  seconds, so a voice that read the old row at the start of a block never sees it reused.

The audio thread touches only `request` (a SimpleQueue put), `pending` and `done`, exactly
as with the thread `Generator`; two small parent threads move messages.
"""
from __future__ import annotations

import ctypes
import itertools
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from singsynth import errors
from singsynth.errors import EngineError, SingsynthError

from .cache import Note
from .generator import PLAYED, PREWARM, SPARE, Generator, output_samples
from .source import NoteKey, NoteSource

log = logging.getLogger(__name__)

QUARANTINE = 0.5   # seconds a finished note's slot stays unused (voices may still read it)
START_TIMEOUT = 120.0


def realtime_thread(priority: int) -> bool:
    """Run the calling thread at real-time priority `priority` (SCHED_FIFO), if allowed.

    For the parent's two message threads. The audio callback needs the GIL, which these
    threads take for every message. Preempted by an ordinary process (the generator
    child, on 2 cores) while they hold it, the callback waits for a whole time slice and
    misses its block. At a real-time priority below the audio thread's, they cannot be
    preempted that way. They block on a pipe or a queue between messages, so they starve
    nothing. False without the privilege (root, or an rtprio limit such as the `audio`
    group's).
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (AttributeError, OSError):
        return False


# ---- child process -------------------------------------------------------------------
def trim_heap() -> None:
    """Return the C heap's free memory to the system (glibc's malloc_trim; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _SlotGenerator(Generator):
    """`Generator`'s scheduling loop, writing notes into shared slots and reporting up."""

    def __init__(self, source, sample_rate, slots: np.ndarray, up, **options):
        super().__init__(source, sample_rate, thread=False, **options)
        self.slots = slots
        self.free = deque(range(len(slots)))
        self.up = up
        self.ids: Dict[Note, int] = {}

    def _take(self, item) -> None:
        if item is None:
            return
        kind, payload = item
        if kind == "free":
            self.free.append(payload)
        elif kind == "played":
            notes = []
            for nid, key in payload:
                note = self.pending.get(key)
                if note is not None and note.started and self.ids.get(note) == nid:
                    continue  # already generating for this very request
                if note is None or note.started:
                    note = Note(key)
                self.ids[note] = nid  # a queued prewarm note now answers to the played id
                notes.append(note)
            super()._take((PLAYED, notes))
        elif kind == "prewarm":
            for nid, key in payload:
                if key not in self.pending:
                    note = Note(key)
                    self.ids[note] = nid
                    self.pending[key] = note
                    self._prewarm_q.append(note)

    def room(self) -> int:
        return len(self.free)

    def went_idle(self) -> None:
        # The model's batches leave freed activations in glibc's heap; hand them back to
        # the system while nothing is asked (a few ms, in this process only: the audio
        # process's allocator is not touched).
        trim_heap()

    def alloc(self, note: Note, capacity: int) -> None:
        slot = self.free.popleft()
        note.data = self.slots[slot]
        self.up.send(("start", self.ids[note], slot))

    def published(self, notes: List[Note]) -> None:
        self.up.send(("data", [(self.ids[n], n.available, n.playable) for n in notes]))

    def finished(self, note: Note) -> None:
        self.up.send(("done", self.ids[note], note.available))

    def _fail(self, notes: List[Note]) -> None:
        self.up.send(("failed", [self.ids[n] for n in notes if n in self.ids]))
        super()._fail(notes)

    def _release(self, note: Note) -> None:
        if self.pending.get(note.key) is note:
            del self.pending[note.key]
        self.ids.pop(note, None)


def _worker(source, shared, shape, sample_rate, options, down, up, threads):
    """Child process entry point: run the generator loop until told to stop.

    Ctrl-C in a terminal signals the whole process group, this child too: it ignores
    SIGINT and SIGTERM and stops when the parent says so (or its pipe closes), so that
    a clean stop prints no traceback from here.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        _serve(source, shared, shape, sample_rate, options, down, up, threads)
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the parent is gone: nobody is left to hear about it


def _serve(source, shared, shape, sample_rate, options, down, up, threads):
    """The child's work: load the model, warm up, answer requests until stopped."""
    if hasattr(os, "getpriority"):
        try:  # `play` raised its own priority for the audio thread; the model does not need it
            if os.getpriority(os.PRIO_PROCESS, 0) < 0:
                os.setpriority(os.PRIO_PROCESS, 0, 0)
        except OSError:
            pass
    if hasattr(source, "load"):  # a lazy checkpoint source: the model loads here, not above
        try:
            source = source.load()
        except SingsynthError as exc:  # a bad checkpoint: the parent raises it as one line
            up.send(("error", type(exc).__name__, str(exc)))
            return
    if threads and "torch" in sys.modules:
        import torch
        torch.set_num_threads(threads)
    slots = np.frombuffer(shared, dtype=np.float32).reshape(shape)
    gen = _SlotGenerator(source, sample_rate, slots, up, **options)

    def read():
        try:
            while (msg := down.recv()) is not None:
                gen._requests.put(msg)
        except (EOFError, OSError):
            pass
        gen._stop = True
        gen._requests.put(None)

    threading.Thread(target=read, daemon=True).start()
    gen.warm_up()  # before "ready": the first note must not pay the model's first call
    up.send(("ready",))
    gen._run()


# ---- audio process -------------------------------------------------------------------
class ProcessGenerator:
    """Same surface as `Generator` (`request`, `request_prewarm`, `pending`, `done`,
    `busy`, `generated`, `errors`, `close`), with the model in a child process.

    Args:
        source: a picklable `NoteSource`. A `ModelSource` pickles as its checkpoint path
            and a `LazyModelSource` (`modelfiles.open_model_source`) loads in the child
            only, so the audio process never imports torch; a bad checkpoint raises its
            `CheckpointError` here.
        sample_rate: output rate in Hz.
        slots: notes that may be in flight at once (queued requests wait for a slot);
            default 4 batches. Memory: slots x 4 s of float32 at the output rate.
        threads: torch threads in the child (default: all cores but one, which the audio
            thread keeps). The child runs at normal priority even when `play` raised its own.
        helper_priority: SCHED_FIFO priority for the two message threads in this process
            (`realtime_thread`); None leaves them at the caller's priority.
        is_cached: callable(key) -> bool; prewarm skips keys it says are cached.
        **options: the `Generator` options (batch_size, wait, chunk, quality, cold, ...).
    """

    def __init__(self, source: NoteSource, sample_rate: int, *, slots: Optional[int] = None,
                 threads: Optional[int] = None, helper_priority: Optional[int] = None,
                 is_cached: Optional[Callable[[NoteKey], bool]] = None, **options):
        self.sample_rate = int(sample_rate)
        self.is_cached = is_cached or (lambda key: False)
        n_slots = slots or 4 * int(options.get("batch_size", 16))
        capacity = output_samples(source, self.sample_rate) + SPARE
        ctx = mp.get_context("spawn")  # never fork a process whose torch threads are running
        shared = ctx.RawArray(ctypes.c_float, n_slots * capacity)
        self.slots = np.frombuffer(shared, dtype=np.float32).reshape(n_slots, capacity)
        down_r, self._down = ctx.Pipe(duplex=False)
        self._up, up_w = ctx.Pipe(duplex=False)
        if threads is None:
            threads = max(1, (os.cpu_count() or 2) - 1)
        self._proc = ctx.Process(
            target=_worker, name="singsynth-generator", daemon=True,
            args=(source, shared, (n_slots, capacity), self.sample_rate, options, down_r, up_w,
                  threads))
        self._proc.start()
        down_r.close()
        up_w.close()
        first = self._recv() if self._up.poll(START_TIMEOUT) else None
        if first and first[0] == "error":
            self._proc.join(timeout=5.0)
            raise getattr(errors, first[1], EngineError)(first[2])
        if first != ("ready",):
            self._proc.kill()
            raise EngineError(f"the note generator process did not start (exit code "
                              f"{self._proc.exitcode}); see the error above, or run with "
                              "the thread generator (Synth(..., generator='thread'))")
        self.pending: Dict[NoteKey, Note] = {}
        self.done: deque = deque()
        self.generated = 0
        self.errors = 0
        self._notes: Dict[int, Note] = {}   # id -> Note the child is (or will be) making
        self._id_of: Dict[Note, int] = {}   # the reverse (Notes hash by identity)
        self._slot: Dict[int, int] = {}     # id -> slot, once started
        self._ids = itertools.count()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.helper_priority = helper_priority
        self.realtime_helpers = 0  # how many message threads got the real-time priority
        self._threads = [threading.Thread(target=self._send_loop, daemon=True,
                                          name="singsynth-generator-send"),
                         threading.Thread(target=self._receive_loop, daemon=True,
                                          name="singsynth-generator-receive")]
        for t in self._threads:
            t.start()

    # ---- any thread ------------------------------------------------------------------
    def request(self, notes: Sequence[Note]) -> None:
        """Generate `notes` as soon as possible (played notes, one batch); never blocks."""
        self._requests.put((PLAYED, list(notes)))

    def request_prewarm(self, keys: Sequence[NoteKey]) -> None:
        """Generate `keys` when nothing played is waiting; never blocks."""
        self._requests.put((PREWARM, list(keys)))

    @property
    def busy(self) -> int:
        """Notes queued or being generated."""
        return len(self.pending)

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def pid(self) -> int:
        """The child process's id."""
        return self._proc.pid

    def close(self) -> None:
        """Stop the child process and the message threads."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        self._threads[0].join(timeout=5.0)
        self._proc.join(timeout=5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5.0)
        self._threads[1].join(timeout=5.0)
        self._up.close()

    # ---- send thread: requests down ----------------------------------------------------
    def _helper_start(self) -> None:
        if self.helper_priority is not None and realtime_thread(self.helper_priority):
            self.realtime_helpers += 1

    def _send_loop(self) -> None:
        self._helper_start()
        try:
            while (item := self._requests.get()) is not None:
                kind, what = item
                if kind == "free":
                    self._down.send(item)
                elif kind == PLAYED:
                    self._down.send(("played", [self._track(n) for n in what if not n.done]))
                else:
                    # Once per key: the child skips a key it already has, and a second id
                    # for it would wait in `pending` forever.
                    keys = [k for k in dict.fromkeys(what)
                            if k not in self.pending and not self.is_cached(k)]
                    if keys:
                        self._down.send(("prewarm", [self._track(Note(k)) for k in keys]))
            self._down.send(None)
        except OSError:  # the child is gone: nothing more to send
            pass

    def _track(self, note: Note):
        """(id, key) for the child; a Note asked for again (a prewarm note now played)
        keeps its id, which the child reads as "move it up"."""
        nid = self._id_of.get(note)
        if nid is None:
            nid = self._id_of[note] = next(self._ids)
            self._notes[nid] = note
        self.pending[note.key] = note
        return nid, note.key

    # ---- receive thread: progress up ----------------------------------------------------
    def _recv(self):
        try:
            return self._up.recv()
        except (EOFError, OSError):
            return None

    def _receive_loop(self) -> None:
        self._helper_start()
        cooling: deque = deque()  # (time freed, slot)
        while True:
            while cooling and time.monotonic() - cooling[0][0] > QUARANTINE:
                self._requests.put(("free", cooling.popleft()[1]))
            if not self._up.poll(0.1):
                if not self._proc.is_alive():
                    break
                continue
            msg = self._recv()
            if msg is None:
                break
            kind = msg[0]
            if kind == "start":
                _, nid, slot = msg
                self._slot[nid] = slot
                note = self._notes.get(nid)
                if note is not None:
                    note.data = self.slots[slot]
            elif kind == "data":
                for nid, available, playable in msg[1]:
                    note = self._notes.get(nid)
                    if note is not None:
                        note.available = available
                        note.playable = note.playable or playable
            elif kind == "done":
                _, nid, available = msg
                slot = self._slot.pop(nid)
                note = self._notes.pop(nid, None)
                if note is not None:
                    self._id_of.pop(note, None)
                    note.data = self.slots[slot][:available].copy()
                    note.available = available
                    note.finish()
                    self.generated += 1
                    self._release(note)
                cooling.append((time.monotonic(), slot))
            elif kind == "failed":
                self.errors += 1
                for nid in msg[1]:
                    note = self._notes.pop(nid, None)
                    if note is not None:
                        self._id_of.pop(note, None)
                        note.failed = note.done = True
                        self._release(note)
                    if nid in self._slot:
                        cooling.append((time.monotonic(), self._slot.pop(nid)))
        # The child ended: whatever it still owed will not come.
        for note in list(self._notes.values()):
            note.failed = note.done = True
            self._release(note)
        self._notes.clear()
        if not self._closed:
            log.error("the note generator process stopped (exit code %s); uncached notes "
                      "stay silent", self._proc.exitcode)

    def _release(self, note: Note) -> None:
        if self.pending.get(note.key) is note:
            del self.pending[note.key]
        self.done.append(note)
