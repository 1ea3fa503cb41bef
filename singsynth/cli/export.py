"""`singsynth export -o OUT.sf2|OUT.sfz`: an instrument as a SoundFont or SFZ for any sampler."""
import argparse
import sys

from singsynth.cli.types import positive_int


def program_number(text: str) -> int:
    """A General MIDI program number 0-127."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 127:
        raise argparse.ArgumentTypeError(f"{text} is out of range; give 0-127")
    return value


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="singsynth export",
        description="Export an instrument (a preset's program, or a model's instrument or "
                    "blend) as a SoundFont 2 (.sf2) or SFZ (.sfz + NAME_samples/ folder) "
                    "that FluidSynth, sfizz and DAW samplers play: one looped sample per "
                    "pitch and velocity layer, with the preset's release.")
    p.add_argument("-o", "--output", required=True,
                   help="output file, .sf2 or .sfz (an .sfz gets its samples in NAME_samples/)")
    p.add_argument("--model", default=None,
                   help="checkpoint name or .safetensors path "
                        "(default: models/default.safetensors)")
    p.add_argument("--preset", default=None,
                   help="preset name or YAML file (default: gm, else default)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--program", type=program_number, default=None,
                      help="the preset's program to export, 0-127 (default 0)")
    what.add_argument("--instrument", default=None,
                      help="a model instrument by name or index, or a blend 'a:0.7,b:0.3'")
    what.add_argument("--all-programs", action="store_true",
                      help=".sf2 only: every program 0-127 of the preset, one bank of 128 presets")
    p.add_argument("--pitches", default="21-108",
                   help="MIDI pitches LO-HI, one sample each per layer (default 21-108, 88 "
                        "keys); keys outside play the nearest sample, transposed")
    p.add_argument("--velocities", default="25,50,75,100,127",
                   help="velocity layers, MIDI 1-127 (default 25,50,75,100,127: the trained ones)")
    p.add_argument("--sample-rate", "-r", type=positive_int, default=None,
                   help="sample rate of the samples in Hz (default: the model's own)")
    p.add_argument("--sample-format", choices=("flac", "wav"), default="flac",
                   help="file format of an .sfz's samples (default flac, 24-bit)")
    p.add_argument("--name", default=None, help="the instrument's name in the file")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the on-disk note cache (~/.cache/singsynth/notes)")
    p.add_argument("--cache-dir", default=None, help="on-disk note cache folder")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    from singsynth.export import export_file, parse_pitches, parse_velocities

    report = export_file(
        args.output, model=args.model, preset=args.preset, program=args.program,
        instrument=args.instrument, all_programs=args.all_programs,
        pitches=parse_pitches(args.pitches), velocities=parse_velocities(args.velocities),
        sample_rate=args.sample_rate, sample_format=args.sample_format, name=args.name,
        cache_dir=args.cache_dir, use_cache=not args.no_cache, overwrite=args.force,
        progress=not args.quiet and sys.stderr.isatty())
    print(report.summary())
    return 0
