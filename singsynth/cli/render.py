"""`singsynth render INPUT.mid -o OUTPUT.wav`: render a MIDI file to audio, offline.

FluidSynth users can keep their habit: `-F OUTPUT` is accepted for `-o OUTPUT`.
"""
import argparse
import logging
import sys

from singsynth.cli.types import seconds
from singsynth.errors import SingsynthError
from singsynth.files import ignore_interrupts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="singsynth render",
        description="Render a standard MIDI file (format 0 or 1) to .wav or .flac with a SING "
                    "model, faster than real time. Prints the render time and real-time factor.")
    p.add_argument("input", help="the .mid file")
    p.add_argument("-o", "-F", "--output", dest="output", required=True,
                   help="output file, .wav or .flac (-F as in fluidsynth)")
    p.add_argument("--preset", default=None,
                   help="preset name or YAML file mapping programs to instruments (default: gm)")
    p.add_argument("--model", default=None,
                   help="checkpoint name or .safetensors path (default: models/default.safetensors)")
    p.add_argument("--sample-rate", "-r", type=int, default=48000,
                   help="output sample rate in Hz (default 48000)")
    p.add_argument("--tail", type=seconds, default=None,
                   help="seconds rendered after the last event (default: until the last note "
                        "has died out, at most 5 s)")
    p.add_argument("--normalize", action="store_true",
                   help="scale the result so its peak is at -1 dBFS")
    p.add_argument("--channels", type=int, choices=(1, 2), default=2,
                   help="1 for mono, 2 for stereo (default 2)")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the on-disk note cache (~/.cache/singsynth/notes)")
    p.add_argument("--cache-dir", default=None,
                   help="on-disk note cache folder (default: $SINGSYNTH_CACHE or "
                        "~/.cache/singsynth/notes)")
    p.add_argument("--max-duration", type=seconds, default=3600.0,
                   help="refuse songs longer than this many seconds (default 3600)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    from singsynth.render import render_file

    def warn(line):
        print(f"singsynth render: warning: {line}", file=sys.stderr)

    logging.basicConfig(level=logging.WARNING, format="singsynth render: %(message)s")
    if args.max_duration <= 0:
        raise SingsynthError(f"--max-duration {args.max_duration:g} must be positive (seconds)")
    report = render_file(
        args.input, args.output, model=args.model, preset=args.preset,
        sample_rate=args.sample_rate, tail=args.tail, normalize=args.normalize,
        channels=args.channels, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        max_duration=args.max_duration, overwrite=args.force,
        progress=not args.quiet and sys.stderr.isatty(), warn=warn,
        done=ignore_interrupts)  # the file is complete: a late Ctrl-C must not say otherwise
    print(report.summary())
    return 0
