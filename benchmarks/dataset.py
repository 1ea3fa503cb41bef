"""Dataset speed and render quality: `python benchmarks/dataset.py [--programs N]`.

1. Render rate: FluidSynth at 16 kHz directly vs 32/44.1 kHz + soxr to 16 kHz, timed,
   and compared with a 96 kHz render (+ soxr) as the reference, by magnitude-
   spectrogram SNR (phase-insensitive) on high notes where aliasing shows.
2. `dataset build` throughput on FluidR3_GM: N programs x 88 pitches x 5 velocities
   with 2 parallel FluidSynth runs, extrapolated to all 128 programs.
3. Decode throughput of NSynthDataset.arrays() on that build, in notes per second.
Pause the background training first (see benchmarks/README.md).
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from singsynth.data import NSynthDataset
from singsynth.data import soundfont as sfr
from singsynth.data.build import build
from singsynth.model.dsp import power_spectrogram

FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SPREAD = [0, 16, 24, 40, 56, 73, 80, 88, 104, 112, 4, 33, 48, 64, 96, 120]  # across GM families


def cpu_seconds():
    """User + system CPU seconds of this process and its finished children (FluidSynth)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def render_at(rate, inst, notes, tmp):
    midi = Path(tmp) / f"{rate}.mid"
    onsets = sfr.write_midi(midi, inst, notes)
    t = cpu_seconds()
    audio, _, found = sfr.cut_notes(sfr.stream_fluidsynth(FLUIDR3, midi, rate), rate, onsets)
    return audio, found, cpu_seconds() - t


def spectral_snr(x, ref):
    """10 log10(sum |R|^2 / sum (|X| - |R|)^2) over magnitude spectrograms, in dB."""
    mx = power_spectrogram(torch.from_numpy(x)).sqrt()
    mr = power_spectrogram(torch.from_numpy(ref)).sqrt()
    return float(10 * torch.log10(mr.square().sum() / (mx - mr).square().sum()))


def compare_rates():
    print("render rate vs a 96 kHz reference (programs 0, 40, 73, 80; pitches 72-108, vel 127)")
    notes = [(p, 127) for p in range(72, 109, 6)]
    results = {r: [[], 0.0] for r in (16000, 32000, 44100)}
    with tempfile.TemporaryDirectory() as tmp:
        for prog in (0, 40, 73, 80):
            inst = sfr.Instrument(f"p{prog}", "", 0, prog)
            ref, sounding, _ = render_at(96000, inst, notes, tmp)
            for rate in results:
                audio, _, dt = render_at(rate, inst, notes, tmp)
                results[rate][0] += [spectral_snr(a, r) for a, r, ok in zip(audio, ref, sounding) if ok]
                results[rate][1] += dt
    for rate, (snrs, dt) in results.items():
        print(f"  {rate:6d} Hz: median spectral SNR {np.median(snrs):5.1f} dB, "
              f"worst {min(snrs):5.1f} dB; {dt:.2f} CPU s for {4 * len(notes)} notes "
              f"(render + cut + resample)")


def bench_build(n_programs, keep):
    out = Path(tempfile.mkdtemp(prefix="singsynth-bench-"))
    programs = SPREAD[:n_programs]
    try:
        t, cpu = time.perf_counter(), cpu_seconds()
        summary = build(FLUIDR3, out / "ds", programs=programs, jobs=2, progress=False)
        dt, cpu = time.perf_counter() - t, cpu_seconds() - cpu
        notes = n_programs * 88 * 5
        full, idle = dt / n_programs * 128, cpu / 2 / n_programs * 128
        print(f"build FluidR3_GM, programs {programs}, 88 pitches x 5 velocities, -j 2: "
              f"{dt:.1f} s for {notes} notes ({notes / dt:.0f} notes/s, "
              f"{notes * 4 / dt:.0f}x real time); kept {summary['notes']}, "
              f"dropped {summary['dropped']}")
        print(f"  {cpu:.1f} CPU s ({cpu / n_programs:.2f} per instrument); load average "
              f"during the run {os.getloadavg()[0]:.1f}")
        print(f"  extrapolated to 128 programs x 88 x 5 = 56,320 notes: {full / 60:.1f} min as "
              f"measured, {idle / 60:.1f} min on 2 otherwise idle cores (CPU s / 2)")
        for workers in (1, 2, 4):
            ds = NSynthDataset(out / "ds", split="all")
            t = time.perf_counter()
            ds.arrays(workers=workers)
            dt = time.perf_counter() - t
            print(f"  arrays() decode, {workers} thread(s): {len(ds) / dt:.0f} notes/s "
                  f"({len(ds)} notes, {len(ds) * 64000 * 4 / dt / 2**30:.2f} GiB/s float32, "
                  f"page cache warm)")
    finally:
        if keep:
            print(f"  kept {out / 'ds'}")
        else:
            shutil.rmtree(out, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=8, help="programs to build (max 16)")
    parser.add_argument("--skip-rates", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the built dataset")
    args = parser.parse_args()
    if not Path(FLUIDR3).exists():
        sys.exit(f"{FLUIDR3} missing: apt-get install fluid-soundfont-gm")
    if not args.skip_rates:
        compare_rates()
    bench_build(min(args.programs, len(SPREAD)), args.keep)


if __name__ == "__main__":
    main()
