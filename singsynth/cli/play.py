"""`singsynth play`: play live from a MIDI input to an audio device.

Argument parsing and one-line errors; the work is `singsynth.hosts.live.LivePlayer`.
Stops cleanly on Ctrl-C or SIGTERM (stream closed, recording finalised).
"""
import argparse
import signal
import threading


def get_parser():
    from singsynth.hosts.midi_in import MIDI_APIS
    parser = argparse.ArgumentParser(prog="singsynth play", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", help="MIDI input: a case-insensitive substring of its name "
                        "(see `singsynth ports`)")
    parser.add_argument("--virtual", action="store_true",
                        help="open a virtual MIDI input named 'singsynth' for other programs")
    parser.add_argument("--midi-api", choices=sorted(MIDI_APIS),
                        help="MIDI system (default: $MIDO_BACKEND, else the platform's own)")
    parser.add_argument("--device", help="audio output: index or name substring (default: "
                        "the system default)")
    parser.add_argument("--blocksize", type=int, default=256,
                        help="frames per audio block (default 256; JACK uses its own period)")
    parser.add_argument("--latency", default="low",
                        help="low, high or seconds: PortAudio's suggested output latency")
    parser.add_argument("--sample-rate", type=int,
                        help="Hz (default: the device's own; the engine resamples)")
    parser.add_argument("--preset", help="preset YAML file or name (default: gm, General "
                        "MIDI for the default model; `default` plays a model's first "
                        "instrument on every channel and program)")
    parser.add_argument("--model", help="checkpoint file or name (default: models/default)")
    parser.add_argument("--record", help="also write what is sent to the device (.wav float32)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite --record")
    parser.add_argument("--generator", choices=("process", "thread"), default="process",
                        help="where the model runs: a child process (default; torch never "
                             "holds the audio thread's GIL) or a thread of this one")
    parser.add_argument("--no-prewarm", action="store_true",
                        help="do not pre-generate the prewarm notes of the patches the "
                             "channels start on, nor of those a program change selects")
    parser.add_argument("--cpu-sleep", action="store_true",
                        help="let idle CPUs sleep while playing (saves power). By default "
                             "play asks Linux to keep them polling, where allowed: a CPU "
                             "waking from sleep makes blocks late, on a virtual machine by "
                             "milliseconds")
    return parser


def main(argv=None, *, source=None, make_synth=None):
    """Run until Ctrl-C / SIGTERM.

    Python API and tests only: `source` (a NoteSource) replaces --model; `make_synth`
    (`f(sample_rate) -> synth`) replaces the engine, e.g. the benchmark's bare sine synth.
    """
    from singsynth.hosts.live import LivePlayer
    args = get_parser().parse_args(argv)
    player = LivePlayer(port=args.port, virtual=args.virtual, midi_api=args.midi_api,
                        device=args.device, blocksize=args.blocksize, latency=args.latency,
                        sample_rate=args.sample_rate, preset=args.preset, model=args.model,
                        record=args.record, force=args.force, generator=args.generator,
                        prewarm=not args.no_prewarm, cpu_sleep=args.cpu_sleep,
                        source=source, make_synth=make_synth)
    ok = False
    stop = threading.Event()
    handlers = {}
    try:
        player.load()
        handlers = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        print(player.start(), flush=True)
        player.run(stop)
        ok = True
    finally:
        # The signal handlers stay until everything is closed: a second Ctrl-C or
        # SIGTERM (`timeout`, a service manager) must not cut the recording's finalising.
        try:
            summary = player.close(keep=ok)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    print(summary, flush=True)
    return 0
