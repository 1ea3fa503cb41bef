"""`singsynth dataset build|info|check`: NSynth-style datasets."""
import argparse
import sys

from singsynth.errors import DatasetError


def parse_list(text: str, what: str) -> list[int]:
    """'0,24,40' or '21-108' or a mix ('0-7,24') -> sorted unique ints."""
    values = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                values.update(range(lo, hi + 1))
            elif part:
                values.add(int(part))
    except ValueError:
        raise DatasetError(f"cannot read {what} {text!r}; write numbers and ranges like 0,24,40-47")
    if not values:
        raise DatasetError(f"{what} {text!r} is empty")
    return sorted(values)


def get_parser():
    parser = argparse.ArgumentParser(prog="singsynth dataset", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="render a SoundFont into NSynth's layout with FluidSynth, "
                       "or turn a folder of samples into it")
    source = b.add_mutually_exclusive_group(required=True)
    source.add_argument("--soundfont", help=".sf2 file")
    source.add_argument("--samples", metavar="DIR",
                        help="folder of sample files (WAV, FLAC, AIFF, OGG), one note each, "
                             "named like Cello_G3_v100.wav or cello-55-100.flac; one instrument "
                             "per subfolder or per name prefix")
    source.add_argument("--sfz", metavar="FILE.sfz",
                        help="an SFZ instrument, rendered with sfizz (pip install pysfizz) at "
                             "--pitches and --velocities")
    b.add_argument("--out", required=True, help="dataset folder to write")
    which = b.add_mutually_exclusive_group()
    which.add_argument("--programs", help="GM programs, e.g. 0,24,40 or 0-7 (default: --all)")
    which.add_argument("--all", action="store_true", help="every bank-0 preset (default)")
    b.add_argument("--pitches", default="21-108", help="MIDI pitches (default 21-108)")
    b.add_argument("--velocities", default="25,50,75,100,127", help="MIDI velocities")
    b.add_argument("--drums", action="store_true",
                   help="also render drum kits (kit 0; with --all every kit of bank 128)")
    b.add_argument("-j", "--jobs", type=int, default=2, help="parallel FluidSynth runs (default 2)")
    b.add_argument("--sample-rate", type=int, default=16000,
                   help="the notes' rate in Hz: 16000 (as NSynth, default) or 48000 for "
                        "full-band models (also 32000, 44100); 384 KB a note at 48 kHz")
    b.add_argument("--render-rate", type=int, default=None,
                   help="FluidSynth's rate in Hz before soxr resampling to --sample-rate "
                        "(default 44100 for 16 kHz datasets, else the sample rate itself)")
    b.add_argument("-f", "--force", action="store_true", help="overwrite an existing --out")
    b.add_argument("--map", metavar="FILE.csv",
                   help="with --samples: CSV with columns file,pitch[,velocity][,instrument] "
                        "for files whose names do not say (pitch: 55 or G3)")
    b.add_argument("--instrument", metavar="NAME",
                   help="with --samples or --sfz: one instrument name for every file")
    b.add_argument("--skip-bad", action="store_true",
                   help="with --samples: build from the good files, listing the others")
    b.add_argument("--no-pitch-check", action="store_true",
                   help="with --samples: do not compare each named pitch with the one heard")
    i = sub.add_parser("info", help="instruments, notes, pitch ranges, split sizes, hours")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true",
                   help="print one JSON object (notes, hours, pitches, velocities, split "
                        "sizes, instruments) instead of text, for scripts")
    c = sub.add_parser("check", help="read every file and list each problem")
    c.add_argument("dir")
    return parser


def run_samples(args) -> int:
    """`dataset build --samples DIR`: every problem file on its own line, then the error."""
    from singsynth.data.samples import SamplesError, build_samples
    try:
        summary = build_samples(args.samples, args.out, instrument=args.instrument,
                                map_file=args.map, sample_rate=args.sample_rate,
                                force=args.force, skip_bad=args.skip_bad,
                                check_pitch=not args.no_pitch_check)
    except SamplesError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise
    for line in summary["remarks"]:
        print(line)
    for line in summary["problems"]:
        print(f"left out: {line}")
    if summary["ignored"]:
        print(f"not audio, ignored: {', '.join(summary['ignored'][:5])}"
              + (f" and {len(summary['ignored']) - 5} more" if len(summary["ignored"]) > 5 else ""))
    print(f"{args.out}: {summary['notes']} notes from {summary['instruments']} instruments"
          + (f"; {len(summary['problems'])} files left out" if summary["problems"] else ""))
    return 0


def run_sfz(args) -> int:
    from singsynth.data.sfz import build_sfz
    summary = build_sfz(args.sfz, args.out, pitches=parse_list(args.pitches, "--pitches"),
                        velocities=parse_list(args.velocities, "--velocities"),
                        sample_rate=args.sample_rate, instrument=args.instrument,
                        force=args.force)
    drops = ", ".join(f"{n} {r}" for r, n in summary["dropped"].items())
    print(f"{args.out}: {summary['notes']} notes from {args.sfz}; dropped out-of-range "
          f"notes: {drops}")
    return 0


def run_build(args) -> int:
    if args.samples:
        return run_samples(args)
    for given, option in ((args.map, "--map"), (args.skip_bad, "--skip-bad"),
                          (args.no_pitch_check, "--no-pitch-check"),
                          (args.instrument and not args.sfz, "--instrument")):
        if given:
            raise DatasetError(f"{option} goes with --samples DIR, not --soundfont or --sfz")
    if args.sfz:
        return run_sfz(args)
    from singsynth.data.build import build
    programs = None if args.programs is None else parse_list(args.programs, "--programs")
    summary = build(args.soundfont, args.out, programs=programs,
                    pitches=parse_list(args.pitches, "--pitches"),
                    velocities=parse_list(args.velocities, "--velocities"),
                    drums=args.drums, jobs=args.jobs, render_rate=args.render_rate,
                    force=args.force, sample_rate=args.sample_rate)
    drops = ", ".join(f"{n} {r}" for r, n in summary["dropped"].items())
    print(f"{args.out}: {summary['notes']} notes from {summary['instruments']} instruments "
          f"({summary['rendered']} rendered, {summary['skipped']} resumed); "
          f"dropped out-of-range notes: {drops}")
    return 0


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.action == "build":
        return run_build(args)
    if args.action == "info":
        if args.json:
            import json
            from singsynth.data.report import summary
            print(json.dumps(summary(args.dir)))
            return 0
        from singsynth.data.report import info
        print(info(args.dir))
        return 0
    from singsynth.data.report import check
    from singsynth.files import shown
    problems = check(args.dir)
    for p in problems:
        print(p)
    print(f"{shown(args.dir)}: {len(problems)} problem(s)")
    return 1 if problems else 0
