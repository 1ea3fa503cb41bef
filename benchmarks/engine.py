"""Benchmark the note engine: cold and warm note latency, mixing cost, prewarm time, memory.

    python benchmarks/engine.py [--model PATH] [--prewarm-pitches 21 108] [--cold-notes 20]

At 48 kHz with 256-frame blocks, with the default model (`models/default.safetensors`), or,
while none exists, a randomly initialised `small` model (same size and speed as a trained
one; the output says which). An "audio thread" calls `process(256)` paced at real time, as
a sound card would. Pause other CPU-heavy jobs first: timings are wall-clock.
"""
from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from pathlib import Path

import numpy as np

RATE, BLOCK = 48000, 256
BLOCK_S = BLOCK / RATE


def rss_mb(pid="self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_source(model_arg):
    import torch

    from singsynth.engine.model_source import ModelSource
    torch.set_num_threads(1)  # leave the other core to the audio thread (2-core machine)
    default = Path("models/default.safetensors")
    if model_arg or default.exists():
        from singsynth.checkpoint import load_model
        model = load_model(model_arg)
        what = f"checkpoint {model_arg or default}"
    else:
        from singsynth.model import build
        torch.manual_seed(0)
        model = build("small", ["piano", "organ", "guitar", "strings"], with_encoder=False)
        what = "randomly initialised 'small' model (no models/default.safetensors yet)"
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return ModelSource(model, device="cpu"), what, model_mb


class AudioThread:
    """Calls synth.process(BLOCK) at real-time pace and timestamps every block."""

    def __init__(self, synth):
        self.synth = synth
        self.times = []       # wall time each process() call took
        self.log = []         # (wall time at the block's start, first non-zero index or -1)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.perf_counter()
        i = 0
        while not self._stop:
            t0 = time.perf_counter()
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


def cold_latency(synth, count):
    """note_on -> first non-silent output sample, in ms, for `count` uncached notes; and
    the seconds each process() call took meanwhile."""
    lat = []
    with AudioThread(synth) as audio:
        for i in range(count):
            pitch = 40 + (i * 7) % 48
            key = synth.note_key(0, pitch, 33 + (i * 13) % 90)
            assert key not in synth.cache
            mark = len(audio.log)
            t_on = time.perf_counter()
            synth.note_on(0, pitch, 33 + (i * 13) % 90)
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


def warm_next_block(synth, count):
    """How many of `count` cached notes sound at sample 0 of the block right after note_on."""
    keys = [synth.note_key(1, 60 + i, 100) for i in range(count)]
    synth.prepare(keys, progress=False)
    synth.process(BLOCK)
    ok = 0
    for i in range(count):
        synth.control_change(1, 120, 0)
        for _ in range(4):
            synth.process(BLOCK)
        synth.note_on(1, 60 + i, 100)
        ok += int(synth.process(BLOCK)[0, 0] != 0)
    synth.control_change(1, 120, 0)
    return ok


def mix_cost(synth, blocks, background=None):
    """process(256) wall times (ms) with 128 held voices; optionally while prewarm generates."""
    keys = [(c, 30 + 8 * j + c % 8, 40 + (j * 16 + c) * 11 % 87) for j in range(8) for c in range(16)]
    synth.prepare([synth.note_key(c, p, v) for c, p, v in keys], progress=False)
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
    args = parser.parse_args(argv)

    from singsynth.engine import Synth
    from singsynth.presets import parse_preset

    rss0 = rss_mb()
    source, what, model_mb = load_source(args.model)
    lo, hi = args.prewarm_pitches
    preset = parse_preset({"defaults": {"instrument": 0, "prewarm": [lo, hi]}},
                          source.instruments, origin="<benchmark>")
    print(f"engine benchmark: {what}; {RATE} Hz, {BLOCK}-frame blocks ({BLOCK_S * 1000:.2f} ms)")
    print(f"model parameters: {model_mb:.0f} MB; process RSS before the synth: {rss_mb():.0f} MB "
          f"(python + torch: {rss0:.0f} MB before loading the model)")

    # Side by side in one run: the model in a thread of this process, then in a child
    # process (live play's default).
    for kind in ("thread", "process"):
        with Synth(source, RATE, preset, cache_bytes=args.cache_mb << 20, generator=kind) as synth:
            lat, mix = cold_latency(synth, args.cold_notes)
        print(f"cold note, {kind} generator, note_on -> first non-silent sample: "
              f"p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms, "
              f"max {lat.max():.0f} ms over {len(lat)} notes (target p95 <= 15 ms); "
              f"process() meanwhile p99 {np.percentile(mix, 99) * 1000:.2f} ms, "
              f"max {mix.max() * 1000:.2f} ms")
    synth = Synth(source, RATE, preset, cache_bytes=args.cache_mb << 20, generator="process")
    try:
        ok = warm_next_block(synth, 16)
        print(f"warm note audible at sample 0 of the next block: {ok}/16")
        report("idle generator", *mix_cost(synth, args.blocks))
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
        child = rss_mb(synth.generator.pid)
        rss = rss_mb() + child
        print(f"generator process RSS: {child:.0f} MB (python, torch and the model, counted below)")
        used = stats["cache_bytes"] / 2**20
        print(f"memory: RSS {rss:.0f} MB; cache {used:.0f} MB ({stats['cache_notes']} notes, budget "
              f"{args.cache_mb} MB, {stats['cache_evictions']} evictions); cache used + model + 300 MB = "
              f"{used + model_mb + 300:.0f} MB: {'within' if rss <= used + model_mb + 300 else 'OVER'}; "
              f"budget + model + 300 MB = {args.cache_mb + model_mb + 300:.0f} MB: "
              f"{'within' if rss <= args.cache_mb + model_mb + 300 else 'OVER'}")
        print(f"stats: {stats}")
    finally:
        synth.close()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
