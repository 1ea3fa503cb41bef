"""Benchmark timbre morphing (issue 24): grid cost, mixing cost, controller-to-sound latency.

    python benchmarks/morph.py [--model PATH] [--share 0.25] [--pitches 55 67] [--blocks 3000] [--live 12]

At 48 kHz with 256-frame blocks (5.33 ms), the shipped `presets/morph.yaml` (flute to
overdrive guitar on the mod wheel, 16 steps) and the default model.

1. grid: generate the morph channel's prewarm keys (its pitch range x every velocity level x
   `--share` of the 16 steps) in batches, as `render` does (`Synth.prepare`, all cores), and
   report the time and the note cache's bytes; the whole grid's figures follow per note.
2. mix: `process(256)` with 32 held morphing voices (every step cached), thread CPU time
   p50/p99, with the wheel parked at 0 (one step a voice), parked half-way (two steps) and
   sweeping 0 -> 127 -> 0 with one controller message every block; 32 plain voices beside.
3. latency, warm steps: the first output sample that differs from the unmoved note, after a
   controller change at a random offset of a block (samples; deterministic, offline).
4. latency, cold steps: with the generator thread and the model, a held note, then the wheel
   to 127 with no step there cached: wall time (paced at real time) until the voice is heading
   for the step (the whole note made), and until it sounds it alone (plus the 10 ms glide).
5. with --live N: latency live on a JACK dummy server, `singsynth play` driven by a JACK probe
   client (`live_latency`); --live-only runs just that.
Pause other CPU-heavy jobs first: timings are wall-clock (CPU times excepted).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

RATE, BLOCK = 48000, 256
BLOCK_S = BLOCK / RATE


def model_source(path):
    import torch

    from singsynth.model.files import open_source
    torch.set_num_threads(int(os.environ.get("MORPH_BENCH_THREADS", "1")))
    return open_source(path, lazy=False)


def morph_preset(instruments, share, pitches):
    from dataclasses import replace

    from singsynth.presets import load_preset
    preset = load_preset("morph", instruments)
    morph = replace(preset.defaults.morph, prewarm=share)
    preset.defaults = replace(preset.defaults, morph=morph, prewarm=tuple(pitches))
    preset.programs, preset.channels = {}, {}
    preset.__post_init__()
    return preset


def grid_cost(source, share, pitches):
    from singsynth.engine import Synth
    from singsynth.generation.note import note_nbytes
    preset = morph_preset(source.instruments, share, pitches)
    synth = Synth(source, RATE, preset, offline=True, cache_bytes=64 << 30)
    keys = synth.prewarm_keys()
    t0 = time.perf_counter()
    synth.prepare(keys, progress=False)
    seconds = time.perf_counter() - t0
    per_note = note_nbytes(synth.cache.get(keys[0]).length)
    full = morph_preset(source.instruments, 1.0, pitches)
    whole = len(Synth(source, RATE, full, offline=True).prewarm_keys())
    print(f"grid: {len(keys)} notes ({pitches[0]}-{pitches[1]} x every velocity level x share "
          f"{share} of the 16 steps) in {seconds:.1f} s ({1000 * seconds / len(keys):.1f} ms a note); "
          f"note cache {synth.cache.bytes / 2**20:.0f} MB ({per_note / 2**20:.2f} MB a note). "
          f"The whole grid over that range: {whole} notes, {whole * per_note / 2**30:.2f} GB, "
          f"about {whole * seconds / len(keys):.0f} s at that speed")
    return synth


def mix_cost(blocks):
    """Thread CPU of process(256) with 32 held voices: plain, and morphing three ways."""
    from singsynth.engine import Synth
    from singsynth.generation.testing import SineSource
    from singsynth.presets import parse_preset

    # Mixing cost does not depend on what the notes sound like: sine notes of SING's length.
    source = SineSource(["flute", "guitar"], note_samples=64000)
    pitches = range(44, 76)
    results = {}
    for label, spec in (("32 plain voices", {"instrument": "flute"}),
                        ("32 morphing voices, wheel at 0", "morph 0"),
                        ("32 morphing voices, wheel parked half-way (2 steps each)", "morph 64"),
                        ("32 morphing voices, wheel sweeping 0-127-0, a message every block", "sweep")):
        patch = spec if isinstance(spec, dict) else {"morph": {"instruments": ["flute", "guitar"]}}
        synth = Synth(source, RATE, parse_preset({"defaults": patch}, source.instruments),
                      offline=True, cache_bytes=2 << 30)
        if "morph" in patch:
            from singsynth.engine.morph import step_key
            morph = synth.preset.defaults.morph
            synth.prepare([step_key(morph, k, synth.note_key(0, p, 100)) for p in pitches
                           for k in range(morph.steps)], progress=False)
        value = int(spec.split()[1]) if isinstance(spec, str) and spec.startswith("morph") else 0
        synth.control_change(0, 1, value)
        for p in pitches:
            synth.note_on(0, p, 100)
        synth.process(BLOCK)
        assert synth.stats()["voices"] == 32
        cpu = []
        for i in range(blocks):
            if spec == "sweep":
                synth.control_change(0, 1, abs(i % 254 - 127), offset=i * 37 % BLOCK)
            c0 = time.thread_time()
            synth.process(BLOCK)
            cpu.append((time.thread_time() - c0) * 1000)
        misses = synth.cache.misses
        cpu = np.array(cpu)
        results[label] = cpu
        print(f"process(256), {label}: thread CPU p50 {np.percentile(cpu, 50):.3f} ms, "
              f"p99 {np.percentile(cpu, 99):.3f} ms, max {cpu.max():.3f} ms "
              f"(target p99 <= {BLOCK_S * 200:.2f} ms, 20 % of the block; cache misses {misses})")
    return results


def warm_latency(trials=20):
    """Samples from a controller change to the first changed output sample (warm steps)."""
    from singsynth.engine import Synth
    from singsynth.generation.testing import SineSource
    from singsynth.presets import parse_preset
    source = SineSource(["flute", "guitar"], note_samples=64000)
    preset = parse_preset({"defaults": {"morph": {"instruments": ["flute", "guitar"]}}},
                          source.instruments)
    rng = np.random.default_rng(1)
    lags = []
    for _ in range(trials):
        outs = []
        offset, value = int(rng.integers(0, BLOCK)), int(rng.integers(1, 128))
        for move in (False, True):
            synth = Synth(source, RATE, preset, offline=True)
            synth.note_on(0, 60, 100)
            out = [synth.process(BLOCK) for _ in range(10)]
            if move:
                synth.control_change(0, 1, value, offset=offset)
            out += [synth.process(BLOCK) for _ in range(4)]
            outs.append(np.concatenate(out)[:, 0])
        changed = int(np.flatnonzero(outs[0] != outs[1])[0])
        lags.append(changed - (10 * BLOCK + offset))
    lags = np.array(lags)
    print(f"latency, warm steps: the output changes {lags.min()}-{lags.max()} samples after the "
          f"controller's sample ({1000 * lags.max() / RATE:.2f} ms; the limiter's look-ahead), "
          f"and reaches the new position {GLIDE_MS:.0f} ms later (the glide); live, `play` holds "
          f"each MIDI event one block (5.33 ms) for its timing inside the block")


def cold_latency(source, trials):
    """Wall ms from a wheel move to a cold step being used (generator thread, the model)."""
    from singsynth.engine import Synth
    from singsynth.presets import parse_preset
    names = ["flute_073", "overdrive_guitar_029"]
    preset = parse_preset({"defaults": {"morph": {"instruments": names}}}, source.instruments)
    heading, alone = [], []
    with Synth(source, RATE, preset, generator="thread") as synth:
        for t in range(trials):
            pitch = 50 + 3 * t  # a pitch not generated before: its steps are cold
            synth.control_change(0, 1, 0)
            synth.process(BLOCK)  # the wheel back at 0 before asking for the note it starts from
            synth.prepare([synth.note_key(0, pitch, 100)], progress=False)
            synth.note_on(0, pitch, 100)
            start = time.perf_counter()
            for i in range(8):
                synth.process(BLOCK)
                time.sleep(max(0.0, start + (i + 1) * BLOCK_S - time.perf_counter()))
            voice = synth.voices[-1]
            synth.control_change(0, 1, 127)
            t0 = time.perf_counter()
            got_head = None
            for i in range(4000):
                synth.process(BLOCK)
                if got_head is None and not voice.waiting and i > 0:
                    got_head = time.perf_counter() - t0
                if got_head is not None and len(voice.parts) == 1 and voice.parts[0][0] == 15:
                    alone.append(1000 * (time.perf_counter() - t0))
                    break
                time.sleep(max(0.0, t0 + (i + 1) * BLOCK_S - time.perf_counter()))
            heading.append(1000 * got_head)
            synth.control_change(0, 120, 0)
            for _ in range(4):
                synth.process(BLOCK)
    heading, alone = np.array(heading), np.array(alone)
    print(f"latency, cold steps ({trials} moves 0 -> 127 on a held note, nothing of step 15 cached): "
          f"heading for the step after p50 {np.median(heading):.0f} ms, max {heading.max():.0f} ms; "
          f"sounding it alone after p50 {np.median(alone):.0f} ms, max {alone.max():.0f} ms "
          f"(a step joins only once whole: the model makes the 4-s note)")


def live_latency(trials, seconds_held=0.6):
    """Live on a JACK dummy server (48 kHz, 256 frames): `singsynth play` with a morph preset
    whose whole grid at middle C and velocity 100 is prewarmed; a probe client strikes the
    note twice per trial, once left alone and once with the wheel sent to 127 mid-note, and
    records singsynth's output. Aligned on their note-on frames, the two takes are the same
    samples until the move is heard: ms from the controller message's JACK frame to the
    first sample where they differ by more than -60 dBFS."""
    import tempfile
    from pathlib import Path

    from tests.jack_fixtures import JackProbe, Play, jackd_missing_reason, start_jack
    reason = jackd_missing_reason()
    if reason:
        print(f"latency live on JACK: skipped ({reason})")
        return
    names = ["flute_073", "overdrive_guitar_029"]
    with tempfile.TemporaryDirectory() as tmp, start_jack():
        preset = Path(tmp) / "morph-live.yaml"
        preset.write_text("defaults:\n  morph: {instruments: [%s, %s], prewarm: 1.0}\n"
                          "  prewarm: [60, 60]\n" % tuple(names))
        play = Play(["--virtual", "--midi-api", "jack", "--preset", str(preset)])
        probe = None
        try:
            play.wait_ready(timeout=300)
            deadline = time.monotonic() + 600
            while not any("prewarmed" in l for l in play.out + play.err):
                if time.monotonic() > deadline:
                    raise RuntimeError("prewarm did not end")
                time.sleep(0.25)
            probe = JackProbe(seconds=12 * trials + 10)
            probe.wait_for_ports("^singsynth:out_", 2)
            probe.wait_for_ports("^singsynth-midi:", 1, is_midi=True)
            probe.connect_to("singsynth-midi:singsynth", ["singsynth:out_0", "singsynth:out_1"])
            probe.recording = True
            time.sleep(0.5)

            def send(data):
                n = len(probe.sent)
                probe.send(data)
                while len(probe.sent) == n:
                    time.sleep(0.001)
                return probe.sent[n][0]

            def take(move):
                send([0xB0, 1, 0])
                time.sleep(0.3)
                on = send([0x90, 60, 100])
                time.sleep(seconds_held / 2)
                cc = send([0xB0, 1, 127]) if move else None
                time.sleep(seconds_held / 2)
                send([0x80, 60, 0])
                time.sleep(0.8)  # the release dies away
                return on, cc

            pairs = [(take(False), take(True)) for _ in range(trials)]
            time.sleep(0.3)
            audio = probe.audio[:, 0]
            lags = []
            for (ref_on, _), (on, cc) in pairs:
                # Events reach the engine with a jitter of up to a block (rtmidi stamps them
                # on arrival): align the takes on their first audible sample instead.
                a = audio[ref_on - probe.record_start:][:int(seconds_held * RATE)]
                b = audio[on - probe.record_start:][:int(seconds_held * RATE)]
                sa, sb = (int(np.flatnonzero(np.abs(x) > 1e-3)[0]) for x in (a, b))
                n = min(len(a) - sa, len(b) - sb)
                differ = np.flatnonzero(np.abs(a[sa:sa + n] - b[sb:sb + n]) > 1e-3)
                if not len(differ) or on + sb + differ[0] < cc:  # not the same note until the move
                    print(f"  trial not measured: the takes differ from sample {differ[:1]} after "
                          f"their onsets, the move at {cc - on - sb}")
                    lags.append(float("nan"))
                else:
                    lags.append(1000.0 * (on + sb + differ[0] - cc) / RATE)
            lags = np.array(lags)
            ok = lags[~np.isnan(lags)]
            print(f"latency live on JACK, warm steps ({len(ok)} of {trials} trials measured, "
                  f"xruns {probe.xruns}): controller message -> first changed sample "
                  + (f"median {np.median(ok):.1f} ms, max {ok.max():.1f} ms" if len(ok) else "none")
                  + " (JACK MIDI, rtmidi, play's one-block hold, the limiter's look-ahead)")
        finally:
            if probe is not None:
                probe.close()
            play.stop()


GLIDE_MS = 10.0


def main(argv=None):
    global GLIDE_MS
    from singsynth.engine.morph import GLIDE
    GLIDE_MS = GLIDE * 1000
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--share", type=float, default=0.25, help="share of the grid prewarmed")
    parser.add_argument("--pitches", type=int, nargs=2, default=(55, 67))
    parser.add_argument("--blocks", type=int, default=3000)
    parser.add_argument("--cold", type=int, default=5, help="cold moves to time")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--live", type=int, default=0,
                        help="trials live on a JACK dummy server (0: not measured)")
    parser.add_argument("--live-only", action="store_true")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.live:
        live_latency(args.live)
    if args.live_only:
        return
    mix_cost(args.blocks)
    warm_latency()
    source = model_source(args.model)
    if args.cold:
        cold_latency(source, args.cold)
    if not args.skip_grid:
        grid_cost(source, args.share, args.pitches)


if __name__ == "__main__":
    main()
