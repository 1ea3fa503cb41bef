"""`singsynth render INPUT.mid -o OUTPUT.wav`: render MIDI files to audio, offline.

FluidSynth users can keep their habit: `-F OUTPUT` is accepted for `-o OUTPUT`.
In pipelines `-` is standard input (a MIDI file) or standard output (the audio):
`singsynth render - -o - < song.mid > song.wav`; then only audio reaches standard
output, and every line (progress, warnings, the summary) goes to standard error.
Several inputs render into a folder: `singsynth render a.mid b.mid --out-dir out/`
(or `-o out/`), each to `<its name>.<--format>`.
"""
import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from singsynth.cli.types import seconds
from singsynth.errors import SingsynthError
from singsynth.files import ignore_interrupts

STDIO = "-"
EXTENSIONS = {"wav": ".wav", "flac": ".flac", "ogg": ".ogg"}  # --format -> file extension
MAX_STDIN_BYTES = 64 << 20  # a MIDI file is kilobytes; this bounds a wrong pipe


def decibels(text: str) -> float:
    """A finite gain in dB (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of dB") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of dB")
    return value


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="singsynth render",
        description="Render standard MIDI files (format 0 or 1) to .wav, .flac or .ogg with a "
                    "SING model, faster than real time. Prints the render time and real-time "
                    "factor. '-' reads the MIDI file from standard input; '-o -' writes the "
                    "audio to standard output (WAV unless --format says otherwise).")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="the .mid file(s); '-' for standard input")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "-F", "--output", dest="output",
                       help="output file (.wav, .flac or .ogg), '-' for standard output, or a "
                            "folder ending in '/' (-F as in fluidsynth)")
    where.add_argument("--out-dir", help="folder for the outputs, one <input name>.<format> "
                                         "each (needed for several inputs)")
    p.add_argument("--format", choices=sorted(EXTENSIONS),
                   help="audio format: must match the -o file's extension; sets it for "
                        "-o -, --out-dir and -o FOLDER/ (default wav)")
    p.add_argument("--bits", choices=("16", "24", "32f"),
                   help="sample format: 16 or 24-bit integers, or 32f (32-bit float, .wav "
                        "only); default 24; not for .ogg (Vorbis)")
    p.add_argument("--gain", type=decibels, default=0.0, metavar="DB",
                   help="gain in dB applied last, after --normalize (default 0); samples "
                        "pushed past full scale are clipped, with a warning")
    p.add_argument("--preset", default=None,
                   help="preset name or YAML file mapping programs to instruments (default: gm)")
    p.add_argument("--model", default=None,
                   help="checkpoint name or .safetensors path (default: the shipped 'default')")
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
    p.add_argument("--json", action="store_true",
                   help="print the render report as JSON, one object per line and input, "
                        "instead of the summary line (not with -o -)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite outputs that exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def plan_outputs(args) -> list:
    """[(input, output)] for the command line, checked before anything is rendered.

    Raises SingsynthError for two stdin inputs, stdout with several inputs, several
    inputs without a folder, --format against the -o extension, or two inputs that
    would write the same output.
    """
    inputs = args.inputs
    if inputs.count(STDIO) > 1:
        raise SingsynthError("'-' (standard input) can be given only once")
    folder = args.out_dir
    if args.output is not None and (args.output.endswith(("/", os.sep))
                                    or (args.output != STDIO and os.path.isdir(args.output))):
        folder = args.output
    if folder is None:
        if len(inputs) > 1:
            what = "standard output" if args.output == STDIO else args.output
            raise SingsynthError(f"{len(inputs)} inputs cannot all go to {what}; give a folder "
                                 "with --out-dir DIR (or -o DIR/)")
        if args.output == STDIO:
            return [(inputs[0], STDIO)]
        ext = Path(args.output).suffix.lower()
        if args.format and ext != EXTENSIONS[args.format]:
            raise SingsynthError(f"--format {args.format} does not match -o {args.output} "
                                 f"({ext or 'no extension'}); name the output "
                                 f"{Path(args.output).stem}{EXTENSIONS[args.format]} or drop "
                                 "--format")
        return [(inputs[0], args.output)]
    ext = EXTENSIONS[args.format or "wav"]
    pairs, seen = [], {}
    for name in inputs:
        stem = "stdin" if name == STDIO else Path(name).stem
        out = str(Path(folder) / f"{stem}{ext}")
        if out in seen:
            raise SingsynthError(f"{seen[out]} and {name} would both be written to {out}; "
                                 "render them in two calls or rename one")
        seen[out] = name
        pairs.append((name, out))
    return pairs


def check_pairs(pairs, args) -> None:
    """Refuse, before rendering anything, an output in the way or an input that is not a
    MIDI file: a batch does not stop half-way over something known up front."""
    from singsynth.hosts.midifile import read_midi
    from singsynth.hosts.audiofile import output_format

    for name, out in pairs:
        if out != STDIO:
            output_format(out, args.bits)
            if os.path.lexists(out) and not args.force:  # a name too long: render_file says
                raise SingsynthError(f"{out} already exists; pass -f to overwrite it")
        if name != STDIO and len(pairs) > 1:
            read_midi(name)  # MidiFileError: one line naming the file


def read_stdin(folder: Path) -> str:
    """Standard input's MIDI bytes, saved as `folder`/stdin.mid -> that path."""
    if sys.stdin is None or sys.stdin.isatty():
        raise SingsynthError("input '-' reads a MIDI file from standard input, which is a "
                             "terminal; pipe one in: singsynth render - -o out.wav < song.mid")
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise SingsynthError(f"standard input holds more than {MAX_STDIN_BYTES >> 20} MiB; "
                             "that is not a MIDI file")
    path = folder / "stdin.mid"
    path.write_bytes(data)
    return str(path)


@contextlib.contextmanager
def stdout_for_audio():
    """Yield a file descriptor on the real standard output; until the block ends, fd 1
    (print, libraries, C code alike) goes to standard error, so only audio reaches the pipe."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def report_dict(report, input_name: str, output_name: str) -> dict:
    """The render report as plain JSON types, with '-' for standard input or output."""
    data = asdict(report)
    data.update(input=input_name, output=output_name,
                realtime_factor=round(report.realtime_factor, 3))
    return data


def main(argv=None):
    # Intermixed: `render a.mid -o out/ b.mid` as well as `render a.mid b.mid -o out/`.
    args = get_parser().parse_intermixed_args(argv)
    from singsynth.hosts.render import render_file

    logging.basicConfig(level=logging.WARNING, format="singsynth render: %(message)s")
    if args.max_duration <= 0:
        raise SingsynthError(f"--max-duration {args.max_duration:g} must be positive (seconds)")
    pairs = plan_outputs(args)
    to_stdout = pairs[0][1] == STDIO
    if to_stdout and args.json:
        raise SingsynthError("--json prints to standard output, where -o - writes the audio; "
                             "drop one of them")
    check_pairs(pairs, args)
    source = None
    if len(pairs) > 1:  # one model for the whole batch
        from singsynth.model.files import open_source
        source = open_source(args.model)

    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="singsynth-render-")))
        stdin_path = read_stdin(scratch) if STDIO in args.inputs else None
        audio_fd = stack.enter_context(stdout_for_audio()) if to_stdout else None
        lines_to = sys.stderr if to_stdout else sys.stdout

        def shown(text: str) -> str:  # the scratch files' names, as the user gave them
            text = text if stdin_path is None else text.replace(stdin_path, "stdin")
            return text.replace(str(scratch / "stdout"), "stdout")

        for n, (name, out) in enumerate(pairs):
            last = n == len(pairs) - 1
            real_in = stdin_path if name == STDIO else name
            real_out = str(scratch / f"stdout{EXTENSIONS[args.format or 'wav']}") \
                if out == STDIO else out

            def warn(line):
                print(f"singsynth render: warning: {shown(line)}", file=sys.stderr)
            try:
                report = render_file(
                    real_in, real_out, model=args.model, preset=args.preset,
                    sample_rate=args.sample_rate, tail=args.tail, normalize=args.normalize,
                    channels=args.channels, cache_dir=args.cache_dir,
                    use_cache=not args.no_cache, max_duration=args.max_duration,
                    overwrite=args.force, gain_db=args.gain, bits=args.bits, source=source,
                    progress=not args.quiet and sys.stderr.isatty(), warn=warn,
                    # the last file complete: a late Ctrl-C must not say otherwise
                    done=ignore_interrupts if last and not to_stdout else None)
            except SingsynthError as exc:
                raise type(exc)(shown(str(exc))) from None
            if to_stdout:
                with open(real_out, "rb") as f, open(audio_fd, "wb", closefd=False) as sink:
                    shutil.copyfileobj(f, sink)
                ignore_interrupts()
            if args.json:
                print(json.dumps(report_dict(report, name, out)), file=lines_to, flush=True)
            else:
                report.input = "stdin" if name == STDIO else name
                report.output = "stdout" if out == STDIO else out
                print(report.summary(), file=lines_to, flush=True)
    return 0
