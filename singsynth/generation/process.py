"""The note generator in a process of its own, for live play.

Why: torch holds the GIL for milliseconds inside some ops (a conv on a CPU: 3-4.5 ms
measured), and a generator *thread* then delays the audio callback past its block. In
its own process the model cannot touch the audio process's GIL.

Two children, one per kind of work, so that a played note never waits for prewarm:
- the *played* child makes the notes being played, and nothing else: it starts one the
  moment its request arrives;
- the *prewarm* child makes prewarm notes at a lower CPU priority than the played
  child: normal where the audio process runs above normal (`play`'s nice -10, which the
  played child keeps), else the lowest (SCHED_IDLE: the kernel takes its CPU away the
  moment anything else of the session wants one; but with other sessions busy it gets
  little: a prewarm 36 % slower than in one process, against 18 % at normal priority,
  measured side by side on the loaded 2-core VM). It starts with the first prewarm
  request and stops `PREWARM_LINGER` seconds after its last note, so its memory (a
  second torch, ~170 MB) is spent only while it works.
A prewarm step in the played child's own loop could not be short enough: the default
model's per-chunk cost is ~2 ms, so a step that yields within 1-2 ms makes prewarm 3-4
times slower; and two threads of one process would share the GIL and torch's global
oneDNN switch, which `SING.stream` turns off for its short LSTM runs (a prewarm conv
dispatched meanwhile runs 28x slower; measured).

How the halves talk, per child:
- notes are written into `slots`, rows of one shared float32 array (n_slots, capacity)
  at the output rate; the child writes samples first and then reports how many are
  written, so the parent only ever reads written samples (as with `Note.available`);
- requests go down one pipe, reports come up another (each pipe has one writer):
    down: ("played" | "prewarm", [(id, key), ...]), ("drop", [id, ...]), ("free", slot),
          None = stop
    up:   ("ready",) or ("error", class name, message), ("start", id, slot),
          ("data", [(id, available, playable), ...]), ("done", id, available),
          ("failed", [id, ...])
- the parent keeps one `Note` per id. Its `data` is the slot's row while streaming, and a
  private copy once done; the slot goes back to the child only after `QUARANTINE`
  seconds, so a voice that read the old row at the start of a block never sees it reused.
  A prewarm note that is played before it is done gets a new id from the played child
  (its prewarm id is dropped: whatever the prewarm child still says of it is ignored).

The audio thread calls only the `NoteGenerator` methods (generator.py): `request` (a
SimpleQueue put), `queued` and `collect`, exactly as with `ThreadGenerator`; two small
parent threads move messages.
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
from multiprocessing.connection import wait as mp_wait
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from singsynth import errors
from singsynth.errors import EngineError, SingsynthError
from singsynth.generation.note import Note, NoteTables
from singsynth.generation.source import NoteSource
from singsynth.generation.thread import PLAYED, PREWARM, SPARE, ThreadGenerator, output_samples
from singsynth.notes import NoteKey

log = logging.getLogger(__name__)

QUARANTINE = 0.5   # seconds a finished note's slot stays unused (voices may still read it)
START_TIMEOUT = 120.0
PREWARM_LINGER = 5.0  # seconds the prewarm process stays after its last note


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
def die_with_parent() -> None:
    """Have the kernel kill this process when the thread that started it ends (Linux's
    PR_SET_PDEATHSIG; elsewhere a no-op). For the prewarm child, which the parent stops
    with SIGSTOP while it makes a played note: stopped, it could not see its pipe close."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def trim_heap() -> None:
    """Return the C heap's free memory to the system (glibc's malloc_trim; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _SlotGenerator(ThreadGenerator):
    """`ThreadGenerator`'s scheduling loop, writing notes into shared slots and reporting up."""

    def __init__(self, source, sample_rate, slots: np.ndarray, up, **options):
        super().__init__(source, sample_rate, thread=False, **options)
        self.slots = slots
        self.free = deque(range(len(slots)))
        self.up = up
        self.ids: Dict[Note, int] = {}

    def take(self, item) -> None:
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
            super().take((PLAYED, notes))
        elif kind == "prewarm":
            for nid, key in payload:
                if key not in self.pending:
                    note = Note(key)
                    self.ids[note] = nid
                    self.pending[key] = note
                    self._prewarm_q.append(note)
        elif kind == "drop":  # played meanwhile, by the other child: skip it if not begun
            dropped = set(payload)
            for note, nid in list(self.ids.items()):
                if nid in dropped and not note.started:
                    self.release(note)

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

    def fail(self, notes: List[Note]) -> None:
        self.up.send(("failed", [self.ids[n] for n in notes if n in self.ids]))
        super().fail(notes)

    def release(self, note: Note) -> None:
        if self.pending.get(note.key) is note:
            del self.pending[note.key]
        self.ids.pop(note, None)


def lowest_priority() -> str:
    """Give the calling thread, and the threads it starts, the lowest CPU priority.

    SCHED_IDLE where the OS has it (Linux; allowed to anyone): such a thread runs only on
    a CPU nothing else of its group wants, and the kernel preempts it as soon as another
    thread wakes there. Else nice 19. Returns which one it got ("idle", "nice" or "").
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
        return "nice"
    except (AttributeError, OSError):
        return ""


def _worker(source, shared, shape, sample_rate, options, down, up, threads, role="played",
            raised=False):
    """Child process entry point: run the generator loop until told to stop.

    Ctrl-C in a terminal signals the whole process group, this child too: it ignores
    SIGINT and SIGTERM and stops when the parent says so (or its pipe closes), so that
    a clean stop prints no traceback from here.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if role == "prewarm":
        die_with_parent()
    try:
        _serve(source, shared, shape, sample_rate, options, down, up, threads, role, raised)
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the parent is gone: nobody is left to hear about it


def _serve(source, shared, shape, sample_rate, options, down, up, threads, role="played",
           raised=False):
    """The child's work: load the model, warm up, answer requests until stopped.

    `role` "played" (warms up, then makes played notes) or "prewarm" (below the played
    child, from before it loads anything: its start-up must not slow the played child's).
    `raised`: the audio process runs above normal priority (`play`'s nice -10, where
    allowed); the played child then keeps that priority and the prewarm child runs at the
    normal one, so that prewarm keeps a normal share of a busy machine. Else the prewarm
    child runs at the lowest (`lowest_priority`), which a busy machine can starve.
    """
    if role == "prewarm" and not raised:
        lowest_priority()
    # (raised: the prewarm child starts at nice 19, set by its parent, and takes the
    # normal priority only once its model is loaded, below)
    try:  # a lazy checkpoint source loads its model here, in the child, not in the parent
        source = source.prepare()
    except SingsynthError as exc:  # a bad checkpoint: the parent raises it as one line
        up.send(("error", type(exc).__name__, str(exc)))
        return
    torch = sys.modules.get("torch")  # loaded by the source (never imported by this layer)
    if threads and torch is not None:
        torch.set_num_threads(threads)
    if role == "prewarm" and raised:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except (AttributeError, OSError):
            lowest_priority()
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
    if role == "played":
        gen.warm_up()  # before "ready": the first note must not pay the model's first call
    up.send(("ready",))
    gen._run()


# ---- audio process -------------------------------------------------------------------
class _Child:
    """One generator process as the audio process sees it: pipes, slots, ids it owes.

    Args:
        ctx: the multiprocessing context ("spawn").
        role: "played" or "prewarm" (see `_serve`).
        n_slots, capacity: shared slots (notes) and samples per slot.
        args: (source, sample_rate, options, threads, raised) for `_worker`.
    """

    def __init__(self, ctx, role: str, n_slots: int, capacity: int, args):
        source, sample_rate, options, threads, raised = args
        self.raised = raised
        self.role = role
        shared = ctx.RawArray(ctypes.c_float, n_slots * capacity)
        self.slots = np.frombuffer(shared, dtype=np.float32).reshape(n_slots, capacity)
        down_r, self.down = ctx.Pipe(duplex=False)
        self.up, up_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_worker, name=f"singsynth-generator-{role}", daemon=True,
            args=(source, shared, (n_slots, capacity), sample_rate, options, down_r, up_w,
                  threads, role, raised))
        self.proc.start()
        down_r.close()
        up_w.close()
        self.slot: Dict[int, int] = {}   # id -> slot, once started
        self.owed: set = set()           # ids asked of it and not yet done or failed
        self.idle_since = time.monotonic()
        self.stopping = False

    def recv(self):
        try:
            return self.up.recv()
        except (EOFError, OSError):
            return None

    def stop(self) -> None:
        """Ask the child to stop (it starts nothing more); never blocks."""
        self.stopping = True
        try:
            self.down.send(None)
        except OSError:
            pass


class ProcessGenerator(NoteTables):
    """A `NoteGenerator` (generator.py) with the model in child processes: one for
    played notes, one for prewarm (see the module's docstring).

    Args:
        source: a picklable `NoteSource`. A `ModelSource` pickles as its checkpoint path
            and a `LazySource` (`model.files.open_source`) loads in the child
            only, so the audio process never imports torch; a bad checkpoint raises its
            `CheckpointError` here.
        sample_rate: output rate in Hz.
        slots: notes that may be in flight at once in the played child (queued requests
            wait for a slot); default 4 batches. The prewarm child has 2 batches' worth
            (at most `slots`). Memory: slots x 4 s of float32 at the output rate.
        threads: torch threads in each child (default: all cores but one, which the audio
            thread keeps). The played child runs at the caller's priority (`play`'s nice
            -10 where allowed), the prewarm child below it (see `_serve`).
        helper_priority: SCHED_FIFO priority for the two message threads in this process
            (`realtime_thread`); None leaves them at the caller's priority.
        is_cached: callable(key) -> bool; prewarm skips keys it says are cached.
        prewarm_linger: seconds the prewarm child stays after its last note.
        **options: the `ThreadGenerator` options (batch_size, wait, chunk, quality, cold, ...).
    """

    def __init__(self, source: NoteSource, sample_rate: int, *, slots: Optional[int] = None,
                 threads: Optional[int] = None, helper_priority: Optional[int] = None,
                 is_cached: Optional[Callable[[NoteKey], bool]] = None,
                 prewarm_linger: float = PREWARM_LINGER, **options):
        self.sample_rate = int(sample_rate)
        self.is_cached = is_cached or (lambda key: False)
        self.prewarm_linger = float(prewarm_linger)
        batch = int(options.get("batch_size", 16))
        self._n_slots = slots or 4 * batch
        self._capacity = output_samples(source, self.sample_rate) + SPARE
        self._ctx = mp.get_context("spawn")  # never fork a process whose torch threads run
        if threads is None:
            threads = max(1, (os.cpu_count() or 2) - 1)
        # Whether this (audio) process runs above normal priority: see `_serve`.
        raised = hasattr(os, "getpriority") and os.getpriority(os.PRIO_PROCESS, 0) < 0
        self._args = (source, self.sample_rate, options, threads, raised)
        played = _Child(self._ctx, "played", self._n_slots, self._capacity, self._args)
        first = played.recv() if played.up.poll(START_TIMEOUT) else None
        if first and first[0] == "error":
            played.proc.join(timeout=5.0)
            raise getattr(errors, first[1], EngineError)(first[2])
        if first != ("ready",):
            played.proc.kill()
            raise EngineError(f"the note generator process did not start (exit code "
                              f"{played.proc.exitcode}); see the error above, or run with "
                              "the thread generator (Synth(..., generator='thread'))")
        self._played = played
        self._prewarm: Optional[_Child] = None      # the prewarm child, while it runs
        # The prewarm child is stopped (SIGSTOP) while the played child owes notes, so
        # that a played note has the CPUs to itself (see `_pause_prewarm`).
        self._paused: Optional[_Child] = None
        self._pause_lock = threading.Lock()
        self.pauses = 0  # how many times prewarm gave way to a played note
        self._children: List[_Child] = [played]     # those the receive thread reads
        self._procs = [played.proc]  # every child process started, for `close` to reap
        # (processes only: a finished child's slots, 25 MB, must not stay alive here)
        self._backlog: List[Note] = []              # prewarm notes waiting for a child
        self._spawning = False
        self.pending: Dict[NoteKey, Note] = {}
        self.done: deque = deque()
        self.generated = 0
        self.errors = 0
        self._notes: Dict[int, Note] = {}   # id -> Note a child is (or will be) making
        self._id_of: Dict[Note, int] = {}   # the reverse (Notes hash by identity)
        self._child_of: Dict[int, _Child] = {}  # id -> the child asked for it
        self._ids = itertools.count()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._spawn: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.helper_priority = helper_priority
        self.realtime_helpers = 0  # how many message threads got the real-time priority
        self._threads = [threading.Thread(target=self._send_loop, daemon=True,
                                          name="singsynth-generator-send"),
                         threading.Thread(target=self._receive_loop, daemon=True,
                                          name="singsynth-generator-receive")]
        # The prewarm child is started, and written to, by a thread of its own, started
        # from this one: a process started from a real-time message thread would begin
        # life at real-time priority, and a write to a child still loading its model
        # can block (a full pipe), which must never hold up a played note's request.
        self._spawner = threading.Thread(target=self._spawn_loop, daemon=True,
                                         name="singsynth-generator-prewarm")
        for t in self._threads + [self._spawner]:
            t.start()

    # ---- any thread ------------------------------------------------------------------
    def request(self, notes: Sequence[Note]) -> None:
        """Generate `notes` as soon as possible (played notes, one batch); never blocks."""
        self._requests.put((PLAYED, list(notes)))

    def request_prewarm(self, keys: Sequence[NoteKey]) -> None:
        """Generate `keys` in the prewarm child, whenever a CPU is free; never blocks."""
        self._requests.put((PREWARM, list(keys)))

    @property
    def slot_bytes(self) -> int:
        """Bytes of shared note slots held by the children running now."""
        return sum(child.slots.nbytes for child in self._children)

    @property
    def busy(self) -> int:
        """Notes queued or being generated."""
        return len(self.pending)

    @property
    def alive(self) -> bool:
        return self._played.proc.is_alive()

    @property
    def pid(self) -> int:
        """The played child's process id."""
        return self._played.proc.pid

    @property
    def prewarm_pid(self) -> Optional[int]:
        """The prewarm child's process id while it runs, else None."""
        child = self._prewarm
        return child.proc.pid if child is not None and child.proc.is_alive() else None

    def close(self) -> None:
        """Stop the child processes and the message threads."""
        if self._closed:
            return
        self._closed = True
        self._resume_prewarm()
        self._requests.put(None)  # the send thread stops the children, then the prewarm thread
        self._threads[0].join(timeout=5.0)
        self._spawner.join(timeout=5.0)
        for proc in self._procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
        self._threads[1].join(timeout=5.0)
        for child in list(self._children):
            child.up.close()

    # ---- prewarm thread: starts the prewarm child and writes to it --------------------
    def _spawn_loop(self) -> None:
        # Not a lower priority for this thread: it takes this process's GIL, and starved
        # while holding it, it would stall the audio callback.
        while (item := self._spawn.get()) is not None:
            if item[0] == "send":
                _, child, msg = item
                if not child.stopping or msg is None:
                    try:
                        child.down.send(msg)
                    except OSError:  # it is gone: the receive thread fails what it owed
                        pass
                if msg is None:  # reaped here: its exit can take a while on a busy machine
                    child.proc.join(timeout=10.0)
                continue
            try:
                child = _Child(self._ctx, "prewarm", min(self._n_slots, 2 * self._batch()),
                               self._capacity, self._args)
            except Exception:  # played notes go on; prewarm notes stay uncached
                log.exception("the prewarm process did not start")
                child = None
            if child is not None:
                try:  # its start-up (imports, the model) gives way too (see `_serve`)
                    os.setpriority(os.PRIO_PROCESS, child.proc.pid, 19)
                except (AttributeError, OSError):
                    pass
            if self._closed and child is not None:  # nobody is left to stop it
                child.stop()
                child.proc.join(timeout=5.0)
                continue
            self._requests.put(("child", child))

    def _to_prewarm(self, child: _Child, msg) -> None:
        """Write `msg` to the prewarm child from the prewarm thread (None: stop it)."""
        if msg is None:
            child.stopping = True
            if self._paused is child:  # it must run to read the message
                self._resume_prewarm()
        self._spawn.put(("send", child, msg))

    def _batch(self) -> int:
        return int(self._args[2].get("batch_size", 16))

    # ---- send thread: requests down ----------------------------------------------------
    def _helper_start(self) -> None:
        if self.helper_priority is not None and realtime_thread(self.helper_priority):
            self.realtime_helpers += 1

    def _send_loop(self) -> None:
        self._helper_start()
        while (item := self._requests.get()) is not None:
            kind, what = item[0], item[1]
            try:
                if kind == "free":
                    child = item[1]
                    if child is not self._played:
                        self._to_prewarm(child, ("free", item[2]))
                    elif not child.stopping:
                        child.down.send(("free", item[2]))
                elif kind == PLAYED:
                    self._send_played([n for n in what if not n.done])
                elif kind == PREWARM:
                    # Once per key: a child skips a key it already has, and a second id
                    # for it would wait in `pending` forever.
                    keys = [k for k in dict.fromkeys(what)
                            if k not in self.pending and not self.is_cached(k)]
                    if keys:
                        self._backlog.extend(Note(k) for k in keys)
                        for note in self._backlog[-len(keys):]:
                            self.pending[note.key] = note
                        self._send_prewarm()
                elif kind == "child":
                    self._spawning = False
                    if what is not None:
                        self._prewarm = what
                        self._children.append(what)
                        self._procs.append(what.proc)
                    self._send_prewarm()
                elif kind == "retire":
                    if what is self._prewarm and not what.owed and not self._backlog:
                        self._prewarm = None
                        self._to_prewarm(what, None)
            except OSError:  # a child is gone: the receive thread fails what it owed
                pass
        for child in list(self._children):
            if child is self._played:
                child.stop()
            else:
                self._to_prewarm(child, None)
        self._spawn.put(None)

    def _send_played(self, notes: List[Note]) -> None:
        """Ask the played child for `notes`; a prewarm note among them changes child."""
        drop = []
        for note in notes:
            nid = self._id_of.get(note)
            if nid is not None and self._child_of.get(nid) is not self._played:
                old = self._child_of.pop(nid, None)
                self._notes.pop(nid, None)
                del self._id_of[note]
                if old is not None:
                    old.owed.discard(nid)
                    drop.append((old, nid))
                note.available = 0  # counted in the prewarm child's slot, not the new one
            elif nid is None and note in self._backlog:
                self._backlog.remove(note)
        for old, nid in drop:
            self._to_prewarm(old, ("drop", [nid]))
        if notes:
            tracked = [self._track(n, self._played) for n in notes]
            self._pause_prewarm()
            self._played.down.send(("played", tracked))

    def _send_prewarm(self) -> None:
        """Hand the backlog to the prewarm child, starting one if none runs."""
        if not self._backlog:
            return
        child = self._prewarm
        if child is None or not child.proc.is_alive():
            if not self._spawning and not self._closed:
                self._spawning = True
                self._spawn.put(("spawn",))
            return
        notes, self._backlog = self._backlog, []
        self._to_prewarm(child, ("prewarm", [self._track(n, child) for n in notes]))

    def _track(self, note: Note, child: _Child):
        """(id, key) for `child`; a Note asked for again keeps its id, which the played
        child reads as "move it up"."""
        nid = self._id_of.get(note)
        if nid is None:
            nid = self._id_of[note] = next(self._ids)
            self._notes[nid] = note
            self._child_of[nid] = child
        child.owed.add(nid)
        self.pending[note.key] = note
        return nid, note.key

    # ---- receive thread: progress up ----------------------------------------------------
    def _receive_loop(self) -> None:
        self._helper_start()
        cooling: deque = deque()  # (time freed, child, slot)
        while True:
            now = time.monotonic()
            while cooling and now - cooling[0][0] > QUARANTINE:
                _, child, slot = cooling.popleft()
                self._requests.put(("free", child, slot))
            child = self._prewarm
            if (child is not None and not child.owed and not child.stopping
                    and now - child.idle_since > self.prewarm_linger):
                child.idle_since = now  # asked once per linger period at most
                self._requests.put(("retire", child))
            children = list(self._children)
            ready = mp_wait([c.up for c in children], timeout=0.1)
            for child in children:
                if child.up not in ready:
                    continue
                msg = child.recv()
                if msg is None:
                    self._child_ended(child)
                else:
                    self._handle(child, msg, cooling)
            if self._played not in self._children:
                break
        for child in list(self._children):
            self._child_ended(child)

    def _handle(self, child: _Child, msg, cooling: deque) -> None:
        kind = msg[0]
        if kind == "start":
            _, nid, slot = msg
            child.slot[nid] = slot
            note = self._owned(child, nid)
            if note is not None and not note.done:
                note.data = child.slots[slot]
                note.begin()
        elif kind == "data":
            for nid, available, playable in msg[1]:
                note = self._owned(child, nid)
                if note is not None and not note.done:
                    note.available = available
                    if playable:
                        note.make_playable()
        elif kind == "done":
            _, nid, available = msg
            slot = child.slot.pop(nid)
            note = self._owned(child, nid)
            if note is not None:
                self._forget(nid, note)
            if note is not None and not note.done:  # (done: the other child finished it)
                note.data = child.slots[slot][:available].copy()
                note.available = available
                note.finish()
                self.generated += 1
                self._release(note)
            self._settled(child, nid)
            cooling.append((time.monotonic(), child, slot))
        elif kind == "failed":
            self.errors += 1
            for nid in msg[1]:
                note = self._owned(child, nid)
                if note is not None:
                    self._forget(nid, note)
                    note.fail()
                    self._release(note)
                self._settled(child, nid)
                if nid in child.slot:
                    cooling.append((time.monotonic(), child, child.slot.pop(nid)))
        elif kind == "error":  # the prewarm child could not load the model
            log.error("the prewarm process failed: %s", msg[2])

    def _owned(self, child: _Child, nid: int) -> Optional[Note]:
        """The Note `nid` stands for, if `child` is still the one making it."""
        if self._child_of.get(nid) is child:
            return self._notes.get(nid)
        return None

    def _forget(self, nid: int, note: Note) -> None:
        self._notes.pop(nid, None)
        self._child_of.pop(nid, None)
        if self._id_of.get(note) == nid:
            del self._id_of[note]

    def _settled(self, child: _Child, nid: int) -> None:
        child.owed.discard(nid)
        if not child.owed:
            child.idle_since = time.monotonic()
            if child is self._played:
                self._resume_prewarm()

    def _pause_prewarm(self) -> None:
        """Stop the prewarm child until the played child owes nothing (send thread).

        Why: on a 2-core machine the played child, the audio process and JACK already
        share the CPUs; a prewarm child computing beside them (at a lower priority, but
        still taking its share) made a cold note 5-15 ms later whenever a prewarm ran,
        after a program change most of all. Stopped, it holds only its own memory, and it
        resumes where it was; prewarm waits as long as played notes are being made.
        """
        with self._pause_lock:
            child = self._prewarm
            if child is None or self._paused is child or child.stopping:
                return
            try:
                os.kill(child.proc.pid, signal.SIGSTOP)
            except (OSError, TypeError):  # gone, or not started
                return
            self._paused = child
            self.pauses += 1

    def _resume_prewarm(self) -> None:
        """Let a stopped prewarm child go on (receive thread, close, or before stopping it)."""
        with self._pause_lock:
            child, self._paused = self._paused, None
            if child is not None:
                try:
                    os.kill(child.proc.pid, signal.SIGCONT)
                except (OSError, TypeError):
                    pass

    def _child_ended(self, child: _Child) -> None:
        """A child is gone: whatever it still owed will not come."""
        if child is self._played:
            self._resume_prewarm()
        if child in self._children:
            self._children.remove(child)
        for nid in list(child.owed):
            note = self._owned(child, nid)
            if note is not None:
                self._forget(nid, note)
                note.fail()
                self._release(note)
        child.owed.clear()
        if self._prewarm is child:
            self._prewarm = None
        if child is self._played and not self._closed:
            log.error("the note generator process stopped (exit code %s); uncached notes "
                      "stay silent", child.proc.exitcode)
        elif child.role == "prewarm" and not child.stopping:
            log.error("the prewarm process stopped (exit code %s)", child.proc.exitcode)
        # Not joined here (a process exiting on a busy machine can take 0.5 s, and this
        # thread delivers the played notes): the prewarm thread or `close` reaps it.

    def _release(self, note: Note) -> None:
        if self.pending.get(note.key) is note:
            del self.pending[note.key]
        self.done.append(note)
