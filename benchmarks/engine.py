"""Benchmark the note engine: cold and warm note latency, mixing cost, prewarm time, memory.

    python benchmarks/engine.py [--model PATH] [--prewarm-pitches 21 108] [--cold-notes 20]

At 48 kHz with 256-frame blocks, with the default model (`models/default.safetensors`).
An "audio thread" calls `process(256)` paced at real time, as
a sound card would. Pause other CPU-heavy jobs first: timings are wall-clock.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from collections import deque

import numpy as np

RATE, BLOCK = 48000, 256
BLOCK_S = BLOCK / RATE


def rss_mb(pid="self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pss_mb(pid="self") -> float:
    """Proportional set size: pages shared between the two processes (the note slots)
    count half in each, so the two processes' PSS add up to the memory really used."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mb(pid)


def header_mb(path) -> float:
    """Parameter megabytes of a safetensors checkpoint, from its JSON header (no torch)."""
    from singsynth.model.header import read_header
    return sum(t["data_offsets"][1] - t["data_offsets"][0]
               for name, t in read_header(path).items() if name != "__metadata__") / 2**20


def thread_source(path):
    """The model loaded in this process, for the thread generator (imports torch)."""
    import torch

    from singsynth.model.files import open_source
    torch.set_num_threads(1)  # leave the other core to the audio thread (2-core machine)
    return open_source(path, lazy=False)


class AudioThread:
    """Calls synth.process(BLOCK) at real-time pace and timestamps every block."""

    def __init__(self, synth):
        self.synth = synth
        self.times = []       # wall time each process() call took
        self.log = []         # (wall time at the block's start, first non-zero index or -1)
        self.inbox = deque()  # note_on arguments to apply just before the next block
        self.struck = []      # wall time of each note_on made from the inbox
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.perf_counter()
        i = 0
        while not self._stop:
            t0 = time.perf_counter()
            if self.inbox:  # a plugin host: events reach the synth at the block's start
                self.struck.append(t0)
                self.synth.note_on(*self.inbox.popleft())
            out = self.synth.process(BLOCK)
            self.times.append(time.perf_counter() - t0)
            nz = np.flatnonzero(out[:, 0])
            self.log.append((t0, int(nz[0]) if len(nz) else -1))
            i += 1
            time.sleep(max(0.0, start + i * BLOCK_S - time.perf_counter()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()


def cold_latency(synth, count, host=False):
    """note_on -> first non-silent output sample, in ms, for `count` uncached notes; and
    the seconds each process() call took meanwhile.

    host=False: this thread calls note_on as a MIDI thread does, whenever a note comes.
    host=True: the audio thread calls it just before its next process(), as a plugin host
    does with the events of a block.
    """
    lat = []
    with AudioThread(synth) as audio:
        for i in range(count):
            pitch, velocity = 40 + (i * 7) % 48, 33 + (i * 13) % 90
            key = synth.note_key(0, pitch, velocity)
            assert key not in synth.cache
            mark = len(audio.log)
            if host:
                struck = len(audio.struck)
                audio.inbox.append((0, pitch, velocity))
                while len(audio.struck) == struck:
                    time.sleep(0.0005)
                t_on = audio.struck[-1]
            else:
                t_on = time.perf_counter()
                synth.note_on(0, pitch, velocity)
            while True:
                time.sleep(0.001)
                hits = [(t, k) for t, k in audio.log[mark:] if k >= 0 and t >= t_on]
                if hits:
                    t, k = hits[0]
                    lat.append((t - t_on + k / RATE) * 1000)
                    break
            while key not in synth.cache:
                time.sleep(0.01)
            synth.note_off(0, pitch)
            time.sleep(0.35)  # release ends: the next note starts from silence
    return np.array(lat), np.array(audio.times)


def fill(synth, keys):
    """Have the generator make `keys` and wait until the audio side has cached them all
    (through the generator, as `play` does: this process never runs the model)."""
    synth.prewarm(keys)
    while not all(k in synth.cache for k in keys):
        synth.process(BLOCK)
        time.sleep(0.01)


def warm_next_block(synth, count):
    """How many of `count` cached notes sound from sample `synth.latency` (the limiter's
    look-ahead, about 1 ms) of the block right after note_on."""
    keys = [synth.note_key(1, 60 + i, 100) for i in range(count)]
    fill(synth, keys)
    synth.process(BLOCK)
    ok = 0
    for i in range(count):
        synth.control_change(1, 120, 0)
        for _ in range(4):
            synth.process(BLOCK)
        synth.note_on(1, 60 + i, 100)
        lag = getattr(synth, "latency", 0)
        out = synth.process(BLOCK)
        ok += int(out[lag, 0] != 0 and not out[:lag].any())
    synth.control_change(1, 120, 0)
    return ok


def mix_cost(synth, blocks, background=None):
    """process(256) wall times (ms) with 128 held voices; optionally while prewarm generates."""
    keys = [(c, 30 + 8 * j + c % 8, 40 + (j * 16 + c) * 11 % 87) for j in range(8) for c in range(16)]
    fill(synth, [synth.note_key(c, p, v) for c, p, v in keys])
    synth.process(BLOCK)
    for c, p, v in keys:
        synth.note_on(c, p, v)
    for c in range(0, 16, 2):
        synth.pitch_bend(c, 700)  # half the channels read through the interpolating path
    synth.process(BLOCK)
    assert synth.stats()["voices"] == 128, synth.stats()
    if background:
        background()
    times, cpu = [], []
    start = time.perf_counter()
    for i in range(blocks):
        t0, c0 = time.perf_counter(), time.thread_time()
        synth.process(BLOCK)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        if background:  # paced: the generator thread gets the rest of each block
            time.sleep(max(0.0, start + (i + 1) * BLOCK_S - time.perf_counter()))
    for c in range(16):
        synth.control_change(c, 120, 0)
    for _ in range(8):
        synth.process(BLOCK)
    return np.array(times), np.array(cpu)


def report(label, wall, cpu):
    print(f"process(256) with 128 voices (half pitch-bent), {label}: wall p50 {np.percentile(wall, 50):.2f} ms, "
          f"p99 {np.percentile(wall, 99):.2f} ms, max {wall.max():.2f} ms; CPU time of the calling thread "
          f"p50 {np.percentile(cpu, 50):.2f} ms, p99 {np.percentile(cpu, 99):.2f} ms "
          f"(targets p99: 20% of the block = {BLOCK_S * 200:.2f} ms; the block = {BLOCK_S * 1000:.2f} ms)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint path or name (default: models/default.safetensors)")
    parser.add_argument("--cold-notes", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--prewarm-pitches", type=int, nargs=2, default=(21, 108))
    parser.add_argument("--cache-mb", type=int, default=1024)
    parser.add_argument("--cold-only", type=int, default=0, metavar="ROUNDS",
                        help="only the cold-note latency through the process generator, "
                             "ROUNDS rounds of --cold-notes notes")
    parser.add_argument("--mix-only", action="store_true",
                        help="only the warm note and process(256) with 128 voices, generator idle (mixing and limiter cost)")
    args = parser.parse_args(argv)

    from singsynth.engine import Synth
    from singsynth.hosts.live import SWITCH_INTERVAL
    from singsynth.model.files import open_source
    from singsynth.model.header import resolve
    from singsynth.presets import parse_preset

    sys.setswitchinterval(SWITCH_INTERVAL)  # as `play` (hosts.live.LivePlayer) sets it

    # As `play` does: this (audio) process reads the checkpoint's header only and the
    # generator process loads the weights, so torch is imported here only at the end,
    # for the thread generator's side-by-side figure.
    path = resolve(args.model)
    source = open_source(path)
    model_mb = header_mb(path)
    lo, hi = args.prewarm_pitches
    preset = parse_preset({"defaults": {"instrument": 0, "prewarm": [lo, hi]}},
                          source.instruments, origin="<benchmark>")
    print(f"engine benchmark: checkpoint {path}; {RATE} Hz, {BLOCK}-frame blocks ({BLOCK_S * 1000:.2f} ms)")
    print(f"model parameters: {model_mb:.0f} MB; audio process RSS before the synth: {rss_mb():.0f} MB")

    def cold(kind, source, host=False):
        with Synth(source, RATE, preset, cache_bytes=args.cache_mb << 20, generator=kind) as synth:
            lat, mix = cold_latency(synth, args.cold_notes, host)
        caller = "the audio thread (plugin host)" if host else "a MIDI thread"
        print(f"cold note, {kind} generator, note_on from {caller} -> first non-silent sample: "
              f"p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms, "
              f"max {lat.max():.0f} ms over {len(lat)} notes (target p95 <= 15 ms); "
              f"process() meanwhile p99 {np.percentile(mix, 99) * 1000:.2f} ms, "
              f"max {mix.max() * 1000:.2f} ms")

    if args.cold_only:
        for _ in range(args.cold_only):
            cold("process", source)
        return
    if not args.mix_only:
        cold("process", source)
        cold("process", source, host=True)
    synth = Synth(source, RATE, preset, cache_bytes=args.cache_mb << 20, generator="process")
    try:
        ok = warm_next_block(synth, 16)
        print(f"warm note audible at sample {getattr(synth, 'latency', 0)} of the next block "
              f"(the limiter's look-ahead): {ok}/16")
        report("idle generator", *mix_cost(synth, args.blocks))
        print(f"limiter: {synth.stats()['limiter_blocks']} blocks limited so far")
        if args.mix_only:
            return
        started = {}

        def start_prewarm():
            started["t"] = time.perf_counter()
            started["keys"] = synth.prewarm()

        report("while the generator process prewarms", *mix_cost(synth, args.blocks // 2, background=start_prewarm))
        keys = started["keys"]
        while synth.stats()["generating"] > 0:
            synth.process(BLOCK)
            time.sleep(0.05)
        synth.process(BLOCK)
        took = time.perf_counter() - started["t"]
        levels = synth.velocity_levels
        print(f"prewarm of one instrument, {hi - lo + 1} keys x {levels} velocity levels "
              f"({len(keys)} distinct notes): {took:.1f} s ({took / len(keys) * 1000:.0f} ms/note)")
        stats = synth.stats()
        pid = synth.generator.pid
        print(f"RSS: audio process {rss_mb():.0f} MB (torch imported: {'torch' in sys.modules}), "
              f"generator process {rss_mb(pid):.0f} MB (python, torch and the model); "
              f"both count the {synth.generator.slot_bytes / 2**20:.0f} MB of shared note slots")
        rss = pss_mb() + pss_mb(pid)
        print(f"PSS (shared pages counted once): audio process {pss_mb():.0f} MB, generator "
              f"process {pss_mb(pid):.0f} MB")
        used = stats["cache_bytes"] / 2**20
        print(f"memory: PSS of both processes {rss:.0f} MB; cache {used:.0f} MB ({stats['cache_notes']} notes, budget "
              f"{args.cache_mb} MB, {stats['cache_evictions']} evictions); cache used + model + 300 MB = "
              f"{used + model_mb + 300:.0f} MB: {'within' if rss <= used + model_mb + 300 else 'OVER'}; "
              f"budget + model + 300 MB = {args.cache_mb + model_mb + 300:.0f} MB: "
              f"{'within' if rss <= args.cache_mb + model_mb + 300 else 'OVER'}")
        print(f"stats: {stats}")
    finally:
        synth.close()
    # Side by side in the same run: the model in a thread of this process.
    cold("thread", thread_source(path))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
