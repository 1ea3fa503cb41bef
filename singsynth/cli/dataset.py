"""`singsynth dataset build|info|check`: NSynth-style datasets."""
import argparse

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
    b = sub.add_parser("build", help="render a SoundFont into NSynth's layout with FluidSynth")
    b.add_argument("--soundfont", required=True, help=".sf2 file")
    b.add_argument("--out", required=True, help="dataset folder to write")
    which = b.add_mutually_exclusive_group()
    which.add_argument("--programs", help="GM programs, e.g. 0,24,40 or 0-7 (default: --all)")
    which.add_argument("--all", action="store_true", help="every bank-0 preset (default)")
    b.add_argument("--pitches", default="21-108", help="MIDI pitches (default 21-108)")
    b.add_argument("--velocities", default="25,50,75,100,127", help="MIDI velocities")
    b.add_argument("--drums", action="store_true",
                   help="also render drum kits (kit 0; with --all every kit of bank 128)")
    b.add_argument("-j", "--jobs", type=int, default=2, help="parallel FluidSynth runs (default 2)")
    b.add_argument("--render-rate", type=int, default=44100,
                   help="FluidSynth rate in Hz before soxr resampling to 16 kHz (default 44100)")
    b.add_argument("-f", "--force", action="store_true", help="overwrite an existing --out")
    i = sub.add_parser("info", help="instruments, notes, pitch ranges, split sizes, hours")
    i.add_argument("dir")
    c = sub.add_parser("check", help="read every file and list each problem")
    c.add_argument("dir")
    return parser


def run_build(args) -> int:
    from singsynth.data.build import build
    programs = None if args.programs is None else parse_list(args.programs, "--programs")
    summary = build(args.soundfont, args.out, programs=programs,
                    pitches=parse_list(args.pitches, "--pitches"),
                    velocities=parse_list(args.velocities, "--velocities"),
                    drums=args.drums, jobs=args.jobs, render_rate=args.render_rate,
                    force=args.force)
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
        from singsynth.data.report import info
        print(info(args.dir))
        return 0
    from singsynth.data.report import check
    problems = check(args.dir)
    for p in problems:
        print(p)
    print(f"{args.dir}: {len(problems)} problem(s)")
    return 1 if problems else 0
