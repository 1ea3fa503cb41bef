"""The generator in its own process (live play's) makes exactly the thread's notes."""
import subprocess
import sys
import os
import time
from pathlib import Path

import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.generation.process import QUARANTINE, realtime_thread
from singsynth.generation.testing import SineSource
from singsynth.model.source import ModelSource
from tests.engine_fixtures import pump, wait_until

ROOT = Path(__file__).resolve().parents[1]  # the child imports `tests` from here


def cached_note(source, generator, pitch=60, velocity=100):
    with Synth(source, 48000, generator=generator, cold="stream") as synth:
        synth.note_on(0, pitch, velocity)
        key = synth.note_key(0, pitch, velocity)
        blocks = pump(synth, lambda out: key in synth.cache)
        return synth.cache.get(key), np.concatenate(blocks)


def test_cold_note_from_the_process_equals_the_thread_note_sample_for_sample():
    src = SineSource(note_samples=16000)
    by_thread, _ = cached_note(src, "thread")
    by_process, _ = cached_note(src, "process")
    assert by_process.length == by_thread.length > 47000
    np.testing.assert_array_equal(by_process.data, by_thread.data)
    np.testing.assert_array_equal(by_process.tail, by_thread.tail)
    assert (by_process.loop_start, by_process.loop_end) == (by_thread.loop_start, by_thread.loop_end)


def test_cold_note_sounds_while_the_process_is_still_generating_it():
    src = SineSource(note_samples=16000, chunk_delay=0.01)  # 1 s of audio in about 0.65 s
    with Synth(src, 48000, generator="process", cold="stream") as synth:
        synth.note_on(0, 69, 100)
        key = synth.note_key(0, 69, 100)
        pump(synth, lambda out: np.abs(out).max() > 0)
        assert key not in synth.cache and synth.stats()["generating"] == 1
        rest = pump(synth, lambda out: key in synth.cache)
        assert len(rest) > 20  # it sounded for a good part of its generation
        assert all(np.abs(b).max() > 0 for b in rest)  # without a gap
        assert synth.stats()["stalls"] == 0


def test_a_prefetched_note_is_made_once_by_the_process_and_played():
    src = SineSource(note_samples=16000)
    with Synth(src, 48000, generator="process", cold="stream") as synth:
        synth.prefetch(0, 64, 100)
        time.sleep(0.05)  # the child is already generating it
        synth.note_on(0, 64, 100)
        key = synth.note_key(0, 64, 100)
        pump(synth, lambda out: key in synth.cache)
        assert synth.stats()["generated"] == 1 and synth.stats()["voices"] == 1


def test_prewarm_with_repeated_keys_makes_each_once_and_finishes():
    src = SineSource(note_samples=4000)
    with Synth(src, 48000, generator="process") as synth:
        keys = [synth.note_key(0, p, 100) for p in (60, 62, 60, 64, 62, 60)]
        synth.prewarm(keys)
        pump(synth, lambda out: all(k in synth.cache for k in keys))
        pump(synth, lambda out: synth.stats()["generating"] == 0, limit=2.0)
        assert synth.stats()["generated"] == 3


def test_prewarm_through_the_process_fills_the_cache_with_the_thread_notes():
    src = SineSource(note_samples=8000)
    notes = {}
    for generator in ("thread", "process"):
        with Synth(src, 44100, generator=generator) as synth:
            keys = [synth.note_key(0, p, 90) for p in range(60, 72)]
            synth.generator.request_prewarm(keys)
            pump(synth, lambda out: all(k in synth.cache for k in keys))
            assert synth.stats()["generating"] == 0
            notes[generator] = [synth.cache.get(k).data for k in keys]
    for a, b in zip(notes["thread"], notes["process"]):
        np.testing.assert_array_equal(a, b)


def test_slots_are_reused_after_quarantine_without_corrupting_finished_notes():
    src = SineSource(note_samples=4000)
    with Synth(src, 48000, generator="process", batch_size=2) as synth:
        synth.generator.close()  # a small pool: 3 slots for 10 notes
        from singsynth.generation.process import ProcessGenerator
        synth.generator = ProcessGenerator(src, 48000, slots=3, batch_size=2,
                                           is_cached=synth.cache.__contains__)
        keys = [synth.note_key(0, p, 100) for p in range(50, 60)]
        synth.generator.request_prewarm(keys)
        start = time.monotonic()
        # Prewarm runs in the lowest-priority child, which busy cores starve: a long limit.
        pump(synth, lambda out: all(k in synth.cache for k in keys), limit=120)
        # 10 notes through 3 slots: slots were freed and reused, each after its quarantine.
        assert time.monotonic() - start > 2 * QUARANTINE
        for key in keys:
            expected = synth._render([key])[0]
            np.testing.assert_allclose(synth.cache.get(key).data[:len(expected) - 64],
                                       expected[:len(expected) - 64], atol=2e-3)


def test_a_failing_model_leaves_the_note_silent_and_counts_the_error():
    src = SineSource(note_samples=8000, fail_after=3)
    with Synth(src, 48000, generator="process", cold="stream") as synth:
        synth.note_on(0, 60, 100)
        key = synth.note_key(0, 60, 100)
        pump(synth, lambda out: synth.generator.errors > 0 and not synth.notes.inflight)
        assert key not in synth.cache
        assert synth.generator.alive  # one bad batch does not end the process
        synth.note_on(0, 62, 100)
        pump(synth, lambda out: not synth.notes.inflight)
        assert synth.generator.errors == 2


def test_close_ends_the_child_process():
    with Synth(SineSource(), 48000, generator="process") as synth:
        gen = synth.generator
        assert gen.alive
    assert not gen.alive


def test_checkpoint_source_loads_the_same_file_in_the_child(tiny_checkpoint):
    from singsynth.model.checkpoint import load_model
    src = ModelSource(load_model(tiny_checkpoint), device="cpu")
    by_thread, _ = cached_note(src, "thread", pitch=57)
    by_process, _ = cached_note(src, "process", pitch=57)
    assert np.abs(by_thread.data).max() > 0
    np.testing.assert_allclose(by_process.data, by_thread.data, atol=1e-5)


def test_the_audio_process_never_imports_torch_with_a_lazy_checkpoint(tiny_checkpoint):
    # What `play` runs: the header is read here, the weights load only in the child.
    code = f"""
import sys
import numpy as np
from singsynth.engine import Synth
from singsynth.model.files import open_source
from tests.engine_fixtures import pump
src = open_source({str(tiny_checkpoint)!r})
with Synth(src, 48000, generator="process", cold="stream") as synth:
    synth.note_on(0, 57, 100)
    key = synth.note_key(0, 57, 100)
    pump(synth, lambda out: key in synth.cache, limit=60)
    note = synth.cache.get(key)
print("torch" in sys.modules, note.length, float(np.abs(note.data).max()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True).stdout.split()
    assert out[0] == "False"
    assert int(out[1]) > 190000 and float(out[2]) > 0  # a whole 4 s note at 48 kHz, not silent


def test_a_corrupt_checkpoint_fails_in_the_parent_with_the_loader_message(tiny_checkpoint,
                                                                          tmp_path):
    from singsynth.errors import CheckpointError
    from singsynth.model.files import LazySource, open_source
    bad = tmp_path / "cut.safetensors"
    data = tiny_checkpoint.read_bytes()
    bad.write_bytes(data[:len(data) - 1000])  # header intact, tensors cut short
    src = open_source(bad)
    assert isinstance(src, LazySource)
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable safetensors"):
        Synth(src, 48000, generator="process")


def test_unknown_generator_kind_is_refused():
    with pytest.raises(ValueError, match="thread.*process"):
        Synth(SineSource(), 48000, generator="fiber")


def rt_allowed() -> bool:
    """Whether a thread of this process may take SCHED_FIFO (root or an rtprio limit)."""
    import threading
    result = []
    t = threading.Thread(target=lambda: result.append(realtime_thread(1)))
    t.start()
    t.join()
    return result[0]


def test_the_message_threads_run_real_time_when_asked_and_the_model_does_not():
    """`play` asks for SCHED_FIFO 1 on the two threads that take the audio process's GIL
    for every message; the child running the model must stay an ordinary process."""
    import os
    if not rt_allowed():
        pytest.skip("real-time scheduling is not allowed here (needs root or an rtprio limit)")
    with Synth(SineSource(note_samples=4000), 48000, generator="process",
               helper_priority=1) as synth:
        gen = synth.generator
        wait_until(lambda: gen.realtime_helpers == 2, poll=0.01)
        assert gen.realtime_helpers == 2
        for thread in gen._threads:
            assert os.sched_getscheduler(thread.native_id) == os.SCHED_FIFO
        assert os.sched_getscheduler(gen.pid) == os.SCHED_OTHER
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread is untouched
        synth.note_on(0, 60, 100)  # and notes still flow through those threads
        key = synth.note_key(0, 60, 100)
        pump(synth, lambda out: key in synth.cache)
    with Synth(SineSource(note_samples=4000), 48000, generator="process") as synth:
        time.sleep(0.1)
        assert synth.generator.realtime_helpers == 0
        assert all(os.sched_getscheduler(t.native_id) == os.SCHED_OTHER
                   for t in synth.generator._threads)


def test_the_generator_loop_says_once_when_it_runs_out_of_work():
    """`went_idle` is where the process generator hands its freed heap back to the system
    (worker.trim_heap: its PSS after a prewarm 342-360 -> 300 MB, benchmarks/README.md)."""
    from singsynth.generation.thread import ThreadGenerator
    from singsynth.notes import NoteKey, single

    class Counting(ThreadGenerator):
        idle_with = []

        def went_idle(self):
            self.idle_with.append((len(self.done), len(self.pending)))

    gen = Counting(SineSource(note_samples=1600), 48000, batch_size=2)
    try:
        assert not wait_until(lambda: Counting.idle_with, timeout=0.3)  # no work, no call
        gen.request_prewarm([NoteKey(single(0), p, 2.0) for p in range(60, 65)])
        assert wait_until(lambda: Counting.idle_with)
        time.sleep(0.3)  # idle on: no second call
        assert Counting.idle_with == [(5, 0)]  # after all five notes, not between batches
    finally:
        gen.close()


def test_a_played_note_does_not_wait_for_the_prewarm_chunk_in_progress():
    """Prewarm runs in a process of its own: a note played meanwhile starts at once.

    Each prewarm chunk here (16 notes x 16,000 samples) takes 1.5 s, a played chunk 1.5
    ms. With prewarm in the played notes' loop, the note struck 0.3 s into a prewarm
    chunk waited the 1.2 s left of it (measured before the change: 1.2-1.3 s).
    """
    from tests.slow_source import WorkSineSource
    src = WorkSineSource(cost=1.5 / (16 * 16000), note_samples=16000)
    with Synth(src, 48000, generator="process", cold="stream") as synth:
        gen = synth.generator
        prewarm = [synth.note_key(0, p, 100) for p in range(40, 72)]
        gen.request_prewarm(prewarm)
        # The first prewarm batch has its slots: its first chunk is being made.
        assert wait_until(lambda: any(len(getattr(gen.queued(k), "data", ())) for k in prewarm),
                          timeout=30, poll=0.01)
        time.sleep(0.3)
        synth.note_on(0, 90, 100)  # not a prewarm key
        key = synth.note_key(0, 90, 100)
        struck = time.monotonic()
        pump(synth, lambda out: np.abs(out).max() > 0, limit=10)
        waited = time.monotonic() - struck
        assert key not in synth.cache or waited < 0.5
        assert waited < 0.5, f"the played note took {waited:.2f} s to sound"
        assert not any(k in synth.cache for k in prewarm[:16])  # that chunk still runs


def test_a_prewarm_note_played_before_it_is_made_moves_to_the_played_process():
    from tests.slow_source import WorkSineSource
    src = WorkSineSource(cost=1.5 / (16 * 16000), note_samples=16000)
    with Synth(src, 48000, generator="process", cold="stream") as synth:
        gen = synth.generator
        prewarm = [synth.note_key(0, p, 100) for p in range(40, 72)]
        gen.request_prewarm(prewarm)
        assert wait_until(lambda: any(len(getattr(gen.queued(k), "data", ())) for k in prewarm),
                          timeout=30, poll=0.01)
        for pitch in (40, 71):  # in the batch being made; still queued behind it
            synth.note_on(0, pitch, 100)
        keys = [synth.note_key(0, p, 100) for p in (40, 71)]
        struck = time.monotonic()
        pump(synth, lambda out: all(k in synth.cache for k in keys), limit=10)
        assert time.monotonic() - struck < 1.0  # made by the played process, not waited for
        for key in keys:
            # (a played note is resampled by a streaming sinc, whose first ms differ)
            np.testing.assert_allclose(synth.cache.get(key).data[4800:40000],
                                       synth._render([key])[0][4800:40000], atol=2e-3)
        pump(synth, lambda out: all(k in synth.cache for k in prewarm), limit=30)
        assert synth.stats()["generating"] == 0


def test_the_prewarm_process_runs_at_the_lowest_priority_and_leaves_when_done():
    import os
    src = SineSource(note_samples=4000)
    with Synth(src, 48000, generator="process") as synth:
        gen = synth.generator
        gen.prewarm_linger = 0.3
        assert gen.prewarm_pid is None  # none before there is prewarm work
        keys = [synth.note_key(0, p, 100) for p in range(50, 60)]
        synth.prewarm(keys)
        assert wait_until(lambda: gen.prewarm_pid is not None, timeout=30)
        if hasattr(os, "SCHED_IDLE"):  # (set as soon as the child runs its own code)
            assert wait_until(lambda: os.sched_getscheduler(gen.prewarm_pid) == os.SCHED_IDLE,
                              timeout=30)
        assert os.sched_getscheduler(gen.pid) == os.SCHED_OTHER
        pump(synth, lambda out: all(k in synth.cache for k in keys), limit=30)
        assert wait_until(lambda: gen.prewarm_pid is None, timeout=10)
        more = [synth.note_key(0, p, 100) for p in range(60, 63)]
        synth.prewarm(more)  # a later prewarm (a program change) starts it again
        pump(synth, lambda out: all(k in synth.cache for k in more), limit=30)
        assert synth.stats()["generating"] == 0


def test_auto_mode_streams_again_once_a_slow_moment_has_passed():
    """`cold="auto"` tries a whole render when streams start slowly; under a passing
    load (play's start-up on a busy machine) that used to lock render in for good, and
    every later cold note took a whole render (~95 ms for the default model here)."""
    class SlowRender(SineSource):
        def render(self, keys):
            time.sleep(0.02)
            return super().render(keys)

    src = SlowRender(note_samples=8000, chunk_delay=0.03)  # a busy moment: slow streams
    with Synth(src, 48000, cold="auto") as synth:
        def play(pitch):
            synth.note_on(0, pitch, 100)
            key = synth.note_key(0, pitch, 100)
            pump(synth, lambda out: key in synth.cache)
            synth.note_off(0, pitch)

        play(60)
        play(61)
        src.chunk_delay = 0.0  # quiet again: streaming is the faster by far
        for pitch in range(62, 76):
            play(pitch)
        kinds = [kind for kind, _ in src.calls]
        assert kinds[:2] == ["stream", "render"]
        first = kinds.index("stream", 1)  # streamed again after `recheck` renders...
        assert first == 2 + synth.generator.recheck
        assert set(kinds[first:]) == {"stream"}  # ...and kept streaming


def test_a_played_note_does_not_wait_for_a_prewarm_child_that_is_still_loading():
    """A prewarm request larger than a pipe holds (64 KB: ~1,900 keys) reaches a child
    that reads nothing until its model is loaded (3 s here). The played note asked for
    meanwhile must not queue behind that write."""
    from tests.slow_source import SlowLoadingSource
    src = SlowLoadingSource(3.0, note_samples=4000)
    with Synth(src, 48000, generator="process", cold="stream") as synth:
        gen = synth.generator
        from singsynth.notes import NoteKey, single
        keys = [NoteKey(single(i), p, v / 4) for i in range(4) for p in range(20, 110)
                for v in range(17)]  # 6,120 keys, ~210 KB pickled
        gen.request_prewarm(keys)
        assert wait_until(lambda: gen.prewarm_pid is not None, timeout=30)
        time.sleep(0.5)  # the prewarm child is loading; the keys are being written to it
        synth.note_on(0, 12, 100)  # not a prewarm key
        key = synth.note_key(0, 12, 100)
        struck = time.monotonic()
        pump(synth, lambda out: np.abs(out).max() > 0, limit=10)
        waited = time.monotonic() - struck
        assert waited < 1.0, f"the played note took {waited:.2f} s to sound"


def test_above_normal_priority_the_played_child_keeps_it_and_prewarm_runs_at_normal():
    """`play` raises its priority (nice -10, where allowed): the played child keeps it and
    the prewarm child runs at normal priority, below it but with a normal share of a busy
    machine (SCHED_IDLE would get little)."""
    import os
    import threading
    made = {}

    def build():
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -5)  # this thread only (Linux)
        except OSError:
            return
        made["synth"] = Synth(SineSource(note_samples=4000), 48000, generator="process")

    t = threading.Thread(target=build)
    t.start()
    t.join()
    if "synth" not in made:
        pytest.skip("raising the priority is not allowed here (needs root or a nice limit)")
    with made["synth"] as synth:
        gen = synth.generator
        assert os.getpriority(os.PRIO_PROCESS, gen.pid) == -5
        keys = [synth.note_key(0, p, 100) for p in range(50, 60)]
        synth.prewarm(keys)
        assert wait_until(lambda: gen.prewarm_pid is not None, timeout=30)
        pid = gen.prewarm_pid
        assert wait_until(lambda: os.getpriority(os.PRIO_PROCESS, pid) == 0, timeout=30)
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        pump(synth, lambda out: all(k in synth.cache for k in keys), limit=30)


def test_both_generators_keep_the_generator_contract():
    """The engine talks to either generator through `NoteGenerator` only."""
    from singsynth.generation.generator import NoteGenerator
    from singsynth.generation.process import ProcessGenerator
    from singsynth.generation.thread import ThreadGenerator
    for kind, cls in (("thread", ThreadGenerator), ("process", ProcessGenerator)):
        with Synth(SineSource(note_samples=1600), 48000, generator=kind) as synth:
            assert isinstance(synth.generator, cls)
            assert isinstance(synth.generator, NoteGenerator)


def test_a_disk_cached_source_plays_through_the_process_generator(tmp_path):
    """The child prepares any source through `prepare()`. It used to call `load()` on
    whatever had one, and `DiskCachedSource.load(key)` (a note from disk) then crashed the
    child, reported as "did not start"."""
    from singsynth.generation.diskcache import DiskCachedSource
    from singsynth.generation.source import NoteSource
    src = DiskCachedSource(SineSource(note_samples=4000), tmp_path)
    assert isinstance(src, NoteSource)
    with Synth(src, 48000, generator="process") as synth:
        synth.note_on(0, 60, 100)
        key = synth.note_key(0, 60, 100)
        pump(synth, lambda out: key in synth.cache)
        # Played, so streamed through the sinc resampler: within its error of soxr's.
        expected = synth._render([key])[0]
        got = synth.cache.get(key).data[:len(expected) - 64]
        assert np.abs(got - expected[:len(got)]).max() < 0.02
        assert np.abs(got).max() > 0.1


def process_state(pid: int) -> str:
    """The one-letter state of a process (R, S, T for stopped, ...), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_prewarm_stops_while_a_played_note_is_made_and_then_goes_on():
    """A played note has the CPUs to itself: the prewarm child is stopped (SIGSTOP) while
    the played child owes notes, resumed after, and prewarm still completes."""
    from tests.slow_source import WorkSineSource
    # A played note takes 0.2 s to make (a prewarm batch 3.2 s): long enough to see the
    # prewarm child stopped on a loaded machine too.
    src = WorkSineSource(cost=0.2 / 64000, note_samples=64000)
    with Synth(src, 48000, generator="process", cold="stream") as synth:
        gen = synth.generator
        prewarm = [synth.note_key(0, p, 100) for p in range(40, 72)]
        gen.request_prewarm(prewarm)
        assert wait_until(lambda: gen.prewarm_pid is not None and any(
            len(getattr(gen.queued(k), "data", ())) for k in prewarm), timeout=30, poll=0.01)
        pid = gen.prewarm_pid
        states = []
        synth.note_on(0, 90, 100)  # not a prewarm key
        key = synth.note_key(0, 90, 100)
        while key not in synth.cache:
            synth.process(256)
            states.append(process_state(pid))
            time.sleep(0.002)
        assert "T" in states, states  # stopped while the played note was made
        assert gen.pauses >= 1
        assert wait_until(lambda: process_state(pid) != "T", timeout=5, poll=0.01)
        pump(synth, lambda out: all(k in synth.cache for k in prewarm), limit=120)


def test_closing_while_prewarm_is_stopped_ends_the_children():
    from tests.slow_source import WorkSineSource
    src = WorkSineSource(cost=0.5 / (16 * 16000), note_samples=16000)
    synth = Synth(src, 48000, generator="process", cold="stream")
    gen = synth.generator
    gen.request_prewarm([synth.note_key(0, p, 100) for p in range(40, 72)])
    assert wait_until(lambda: gen.prewarm_pid is not None, timeout=30, poll=0.01)
    proc = gen._prewarm.proc
    gen._pause_prewarm()
    assert wait_until(lambda: process_state(proc.pid) == "T", timeout=5, poll=0.01)
    synth.close()
    # Continued before its stop message (left stopped it could not read it, and close
    # would wait for it in vain before killing it), and gone. Whether it then ended on
    # its own or was killed depends on the CPU it gets: in tests it runs at the lowest
    # priority, which two busy cores starve.
    assert gen._paused is None
    assert not proc.is_alive()
