"""`singsynth SUBCOMMAND ...`: dispatch to one module per subcommand.

Each subcommand module has the same shape: `get_parser()` and `main(argv=None)`.
Modules are imported lazily so that `render` and `train` never import sounddevice
or rtmidi, and `info` starts fast.
"""
import importlib
import os
import signal
import sys

from singsynth.errors import SingsynthError

# name -> (module, one-line help)
COMMANDS = {
    "info": ("singsynth.cli.info", "describe a checkpoint or a named model config"),
    "dataset": ("singsynth.cli.dataset", "build, inspect and check NSynth-style datasets"),
    "train": ("singsynth.cli.train", "train a SING checkpoint (three stages)"),
    "eval": ("singsynth.cli.eval", "evaluate a checkpoint and write a report"),
    "render": ("singsynth.cli.render", "render a .mid file to audio"),
    "play": ("singsynth.cli.play", "play live from a MIDI port to an audio device"),
    "ports": ("singsynth.cli.ports", "list MIDI inputs and audio outputs"),
    "export": ("singsynth.cli.export", "export an instrument as a SoundFont (.sf2) or SFZ"),
}


def usage() -> str:
    lines = ["usage: singsynth COMMAND [options]   (or singsynth --version)", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `singsynth COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    if argv[0] in ("-V", "--version"):
        from singsynth import __version__
        print(f"singsynth {__version__}")
        sys.exit(0)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"singsynth: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[name][0])
    # SIGTERM (a service manager, `timeout`, `kill`) unwinds like Ctrl-C, so that every
    # command's cleanup runs: no half-written output is left behind. `play` installs
    # handlers of its own.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = module.main(rest)
    except SingsynthError as exc:
        print(f"singsynth {name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Terminated:
        print(f"singsynth {name}: terminated", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print(f"singsynth {name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of our output went away (`singsynth info | head`): say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)
    sys.exit(code or 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()
