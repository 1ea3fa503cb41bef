"""Benchmark `singsynth export`: time and size of an exported instrument, and how close
real samplers' renderings of it are to singsynth's own.

1. One instrument, the GM preset's piano (program 0), 88 keys (21-108) x 5 velocity layers
   = 440 notes, from an empty note cache (cold: every note generated), then again (warm:
   every note from the disk cache, so the time is the writing), as .sf2 and as .sfz (FLAC).
2. A short song (the one tests/test_export.py plays: every layer, a note held past the
   loop start) rendered by singsynth, by FluidSynth with the .sf2 and by sfizz with the
   .sfz: log-mel distance to singsynth's render (dB, see singsynth/export/compare.py),
   largest pitch difference over its notes (cents, spectral peak), and the same distance
   for a wrong instrument (the violin, as program 0) as the scale of "different".
3. With --bank LO-HI: the GM bank (--all-programs: 128 presets over the model's distinct
   instruments) over those pitches, its time and size; with 21-108 also examples/demo.mid
   rendered by FluidSynth with the bank against singsynth's render (drums skipped by
   both), with a bank whose every program is the piano as the control.

    python benchmarks/export.py [--model FILE] [--bank 60-64] [--keep DIR]

Pause other CPU work first: generation uses every core.
"""
import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SR = 48000


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(label, fn):
    w, c = time.perf_counter(), cpu()
    result = fn()
    print(f"{label}: {time.perf_counter() - w:.1f} s wall, {cpu() - c:.1f} s CPU", flush=True)
    return result


def size(path: Path) -> float:
    """MiB of a file, or of a folder's files."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir()) / 2**20
    return path.stat().st_size / 2**20


def compare(label, theirs, control, ours):
    from test_export import segments  # the song's note segments

    from singsynth.export.compare import cents, log_mel_distance, peak_hz
    from singsynth.notes import midi_to_hz

    worst = max(abs(cents(peak_hz(theirs, SR, s, e, midi_to_hz(p)),
                          peak_hz(ours, SR, s, e, midi_to_hz(p)))) for p, s, e in segments())
    print(f"{label}: log-mel distance {log_mel_distance(theirs, ours, SR):.2f} dB "
          f"(wrong instrument {log_mel_distance(control, ours, SR):.2f} dB), largest pitch "
          f"difference {worst:.2f} cents", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--bank", default=None, metavar="LO-HI",
                    help="also export the GM bank (--all-programs) over these pitches")
    ap.add_argument("--keep", default=None, help="keep the files in this folder")
    args = ap.parse_args()
    from test_export import gm_program_instrument, song_file

    from singsynth.export import export_file
    from singsynth.export.compare import fluidsynth_render, sfizz_render
    from singsynth.hosts.render import render_file

    work = Path(args.keep or tempfile.mkdtemp(prefix="export-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    common = dict(model=args.model, cache_dir=cache, overwrite=True)
    try:
        rep = timed("piano .sf2, 88 keys x 5 layers, cold cache",
                    lambda: export_file(work / "piano.sf2", program=0, **common))
        print(f"  {rep.summary()}; file {size(work / 'piano.sf2'):.1f} MiB")
        rep = timed("piano .sf2, warm cache", lambda: export_file(work / "piano.sf2", program=0,
                                                                    **common))
        rep = timed("piano .sfz (FLAC 24-bit), warm cache",
                    lambda: export_file(work / "piano.sfz", program=0, **common))
        print(f"  samples folder {size(work / 'piano_samples'):.1f} MiB")
        violin = gm_program_instrument(40)  # GM program 40's instrument, as program 0
        timed("violin .sf2 + .sfz (the control), cold cache",
              lambda: (export_file(work / "violin.sf2", instrument=violin, **common),
                       export_file(work / "violin.sfz", instrument=violin, **common)))
        song = song_file(work / "song.mid")
        render_file(song, work / "singsynth.wav", model=args.model, cache_dir=cache,
                    progress=False, overwrite=True)
        import soundfile
        ours, _ = soundfile.read(work / "singsynth.wav")
        compare("FluidSynth 2.3 / .sf2",
                fluidsynth_render(work / "piano.sf2", song, work / "fs.wav", SR),
                fluidsynth_render(work / "violin.sf2", song, work / "fs-violin.wav", SR), ours)
        try:
            compare("sfizz (pysfizz) / .sfz", sfizz_render(work / "piano.sfz", song, SR),
                    sfizz_render(work / "violin.sfz", song, SR), ours)
        except ImportError:
            print("sfizz: pysfizz is not installed; skipped")
        if args.bank:
            bank(work, common, args.bank)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def bank(work, common, pitches):
    import soundfile

    from singsynth.export import export_file, parse_pitches
    from singsynth.export.compare import fluidsynth_render, log_mel_distance
    from singsynth.hosts.render import render_file

    lo, hi = parse_pitches(pitches)
    rep = timed(f"GM bank .sf2, 128 programs x keys {lo}-{hi} x 5 layers",
                lambda: export_file(work / "gm.sf2", all_programs=True, preset="gm",
                                    pitches=(lo, hi), **common))
    print(f"  {rep.summary()}; file {size(work / 'gm.sf2'):.1f} MiB")
    if (lo, hi) != (21, 108):
        return
    # examples/demo.mid through FluidSynth and the bank against singsynth's render (drums
    # skipped by both: the bank has no kit); the control plays every program as a piano.
    control = work / "piano-everywhere.yaml"
    control.write_text("defaults: {instrument: yamaha_grand_piano_000}\n")
    export_file(work / "control.sf2", all_programs=True, preset=str(control), **common)
    demo = ROOT / "examples" / "demo.mid"
    render_file(demo, work / "demo.wav", model=common["model"], cache_dir=common["cache_dir"],
                progress=False, overwrite=True)
    ours, _ = soundfile.read(work / "demo.wav")
    theirs = fluidsynth_render(work / "gm.sf2", demo, work / "demo-fs.wav", SR)
    wrong = fluidsynth_render(work / "control.sf2", demo, work / "demo-control.wav", SR)
    print(f"demo.mid, FluidSynth with the GM bank: log-mel distance "
          f"{log_mel_distance(theirs, ours, SR):.2f} dB (every program a piano: "
          f"{log_mel_distance(wrong, ours, SR):.2f} dB)", flush=True)


if __name__ == "__main__":
    main()
