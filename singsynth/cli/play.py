"""`singsynth play`: play live from a MIDI input to an audio device.

MIDI thread -> `EventScheduler` (stamped with the stream clock) -> audio callback, which
dispatches the events due in its block and calls `Synth.process`. A cold note-on also
starts generating from the MIDI thread (`Synth.prefetch`) while its event waits, and a
program change starts prewarming the patch it selects. The main thread only shows the
status line (and a line when prewarm is done), follows the MIDI port coming and going,
and stops cleanly on Ctrl-C or SIGTERM (stream closed, recording finalised).
"""
import argparse
import os
import signal
import sys
import threading
import time

from singsynth.errors import DeviceError

STATUS_EVERY = 0.25   # seconds between status line updates and MIDI port checks (a
                      # port that goes and comes back faster than this is not noticed)
STALLED = 2.0         # seconds without an audio callback before giving up on the device
# The audio callback needs the GIL; a thread holding it waits this long before handing it
# over (CPython's default is 5 ms, about a whole 256-frame block at 48 kHz).
SWITCH_INTERVAL = 0.0005
PRIORITY = -10        # nice value asked for the process's threads (see raise_priority)
HELPER_PRIORITY = 1   # SCHED_FIFO of the process generator's message threads (below JACK's)


def get_parser():
    from singsynth.io.midi_in import MIDI_APIS
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


def build_synth(args, sample_rate, source=None):
    """The engine for `args`. `source` replaces the checkpoint (Python API and tests only)."""
    from singsynth.engine import Synth
    if source is None and args.generator == "process":
        # Only the header is read here: the child loads the weights, so this (audio)
        # process never imports torch (~360 MB and a GIL-holding thread pool less).
        from singsynth.modelfiles import open_model_source
        source = open_model_source(args.model)
    elif source is None:
        import torch
        if not os.environ.get("OMP_NUM_THREADS"):
            # Leave a core to the audio thread (the process generator does the same in its
            # child): with torch's pool on every core the callback misses blocks.
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        from singsynth.checkpoint import load_model
        from singsynth.engine.model_source import ModelSource
        source = ModelSource(load_model(args.model))
    preset = play_preset(args.preset, source)
    return Synth(source, sample_rate=sample_rate, preset=preset, generator=args.generator,
                 helper_priority=HELPER_PRIORITY if args.generator == "process" else None)


def play_preset(name, source):
    """The preset `name`, or with None the GM preset as render uses (ConfigError, in one
    line saying what to pass, when the GM preset does not fit the model)."""
    from singsynth.errors import ConfigError
    from singsynth.presets import PRESET_DIR, load_preset
    if name is not None:
        return load_preset(name, list(source.instruments))
    name = "gm" if (PRESET_DIR / "gm.yaml").is_file() else "default"
    try:
        return load_preset(name, list(source.instruments))
    except ConfigError as exc:
        # The GM preset names the default model's instruments; another model has its own.
        raise ConfigError(f"{exc} (the default preset {name!r} is made for the default "
                          "model: pass --preset default to play this model's first "
                          "instrument, or a preset naming its instruments)") from None


def patch_keys(synth, patch):
    """The keys of `patch`'s prewarm range at every velocity level, centre first (as
    `Synth.prewarm_keys` orders a whole preset's)."""
    from singsynth.engine.source import NoteKey, level_velocity, velocity_index
    if not patch.prewarm:
        return []
    levels = synth.velocity_levels
    lo, hi = patch.prewarm
    mid = (lo + hi) / 2
    order = sorted((abs(p - mid), abs(l - 0.6 * levels), p, l)
                   for p in range(lo, hi + 1) for l in range(levels))
    keys = [NoteKey(patch.instrument, min(max(p + patch.transpose, 0), 127),
                    round(velocity_index(level_velocity(l, levels)), 6))
            for _, _, p, l in order]
    return list(dict.fromkeys(keys))


class Prewarm:
    """What `play` prewarms: the patches the 16 channels start on (program 0), then each
    patch a program change selects, once each. A note played meanwhile does not wait for
    it (the process generator prewarms in a process of its own, at the lowest priority).
    """

    def __init__(self, synth):
        self.synth = synth
        self.done = []  # patches already asked for (Patch compares by value)
        self.since = None  # time.monotonic() of the request being waited for, if any
        self.busy = False  # notes were generating since then

    def patch(self, patch) -> int:
        """Queue `patch`'s prewarm range unless already asked; returns how many keys."""
        if not patch.prewarm or patch in self.done:
            return 0
        self.done.append(patch)
        keys = patch_keys(self.synth, patch)
        if self.since is None:
            self.since, self.busy = time.monotonic(), False
        self.synth.prewarm(keys)
        return len(keys)

    def check(self):
        """A line once all asked is made ("prewarmed: N notes cached S s after the request"),
        else None. Main thread, every status tick."""
        if self.since is None:
            return None
        stats = self.synth.stats()
        if stats.get("generating", 0):
            self.busy = True
            return None
        if not self.busy:  # not begun yet, or there was nothing to make
            if time.monotonic() - self.since > 5.0:
                self.since = None
            return None
        seconds, self.since = time.monotonic() - self.since, None
        return (f"prewarmed: {stats.get('cache_notes', 0)} notes cached "
                f"{seconds:.1f} s after the request")

    def start(self) -> int:
        preset = self.synth.preset
        return sum(self.patch(preset.patch(c, 0)) for c in range(16))

    def program(self, channel: int, program: int) -> int:
        return self.patch(self.synth.preset.patch(channel, program))


def arrival(synth, scheduler, prewarm=None):
    """The MIDI thread's handler: a note-on starts its note generating at once (the
    scheduler holds every event a block, for exact timing), a program change prewarms
    the patch it selects (`prewarm`, a `Prewarm`), then the event is queued."""
    prefetch = getattr(synth, "prefetch", None)

    def on_message(stamp, msg):
        if prefetch is not None and msg.type == "note_on":
            prefetch(msg.channel, msg.note, msg.velocity)
        elif prewarm is not None and msg.type == "program_change":
            prewarm.program(msg.channel, msg.program)
        scheduler.push(stamp, msg)
    return on_message


def quiet_gc():
    """Keep the cyclic garbage collector's long pauses out of the audio callback.

    A full collection walks every tracked object while holding the GIL, in whichever
    thread happens to allocate, often the audio callback. With the modules and the engine
    loaded that is some 10^5 objects and 20-40 ms, several whole blocks. What exists after
    start-up lives as long as the process, so it is frozen out of the collector's reach:
    later collections walk only what playing creates.
    """
    import gc
    gc.collect()
    gc.freeze()


def raise_priority(nice=PRIORITY):
    """Have the OS prefer the threads this thread starts from now on (nice `nice`).

    The audio callback must take the GIL, and waits whenever the thread holding it (the
    note generator) has been preempted by another program. Allowed as root or with a nice
    limit (e.g. an `audio` group in limits.conf); silently skipped otherwise. On Linux the
    nice value is per thread and inherited, so call this before any thread is started.
    """
    if not hasattr(os, "setpriority"):
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass


def status_line(synth, audio, scheduler):
    """One line: voices, cache hit rate, notes generating, xruns, callback load."""
    s = synth.stats()
    asked = s.get("cache_hits", 0) + s.get("cache_misses", 0)
    hits = f"{100.0 * s['cache_hits'] / asked:5.1f}%" if asked else "    -"
    return (f"voices {s.get('voices', 0):3d} | cache hits {hits} | generating "
            f"{s.get('generating', 0):3d} | xruns {audio.xruns} | late {scheduler.late} | "
            f"cpu {100 * audio.load:3.0f}% (peak {100 * audio.peak_load:3.0f}%)")


def main(argv=None, *, source=None, make_synth=None):
    """Run until Ctrl-C / SIGTERM.

    Python API and tests only: `source` (a NoteSource) replaces --model; `make_synth`
    (`f(sample_rate) -> synth`) replaces the engine, e.g. the benchmark's bare sine synth.
    """
    args = get_parser().parse_args(argv)
    if not args.virtual and not args.port:
        raise DeviceError("give --port NAME (see `singsynth ports`) or --virtual")
    if args.sample_rate is not None and not 8000 <= args.sample_rate <= 192000:
        raise DeviceError(f"--sample-rate {args.sample_rate}: use 8000-192000 Hz, or leave it "
                          "out for the device's own rate")
    if args.blocksize < 0 or args.blocksize > 8192:
        raise DeviceError(f"--blocksize {args.blocksize}: use 0 (host's choice) to 8192 frames")
    from singsynth.io import audio as audio_io
    from singsynth.io.cpu_awake import CpuAwake
    from singsynth.io.midi_in import MidiInput
    from singsynth.io.record import check_record_path
    from singsynth.io.timing import EventScheduler

    if args.record:
        check_record_path(args.record, args.force)

    raise_priority()
    # Check every device before the (slow) model load, so a typo fails at once.
    audio_io.set_jack_client_name("singsynth")
    device = audio_io.find_device(args.device)
    latency = audio_io.parse_latency(args.latency)
    sample_rate = int(args.sample_rate or device["default_samplerate"])
    audio_io.check_device(device, sample_rate)
    midi = MidiInput(None, port=args.port, virtual=args.virtual, api=args.midi_api)
    midi.resolve()
    synth = make_synth(sample_rate) if make_synth else build_synth(args, sample_rate, source)
    sys.setswitchinterval(SWITCH_INTERVAL)
    scheduler = EventScheduler(synth.handle, sample_rate, args.blocksize or 256)
    audio = None
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    ok = False
    awake = None if args.cpu_sleep else CpuAwake()  # never raises: held or not
    try:
        audio = audio_io.AudioOutput(synth.process, device, sample_rate=sample_rate,
                                     blocksize=args.blocksize, latency=latency,
                                     before_block=scheduler.dispatch, recorder_path=args.record)
        # MIDI opens before the stream starts: on JACK a client joining the graph can cost
        # an xrun, which must not land in the middle of playing.
        prewarm = None if args.no_prewarm or not hasattr(synth, "preset") else Prewarm(synth)
        midi.connect_to(arrival(synth, scheduler, prewarm), audio.time)
        port_name = midi.open()
        quiet_gc()
        audio.start()
        if prewarm is not None:
            prewarm.start()
        print(f"singsynth play: MIDI {port_name!r} -> {device['name']!r} "
              f"[{device['hostapi']}] at {sample_rate} Hz, {args.blocksize or 'host'}-frame "
              f"blocks, output latency {1000 * audio.latency:.1f} ms"
              f"{', CPUs kept out of sleep' if awake and awake.held else ''}; Ctrl-C stops",
              flush=True)
        run(stop, synth, audio, midi, scheduler, prewarm)
        ok = True
    finally:
        # The signal handlers stay until everything is closed: a second Ctrl-C or
        # SIGTERM (`timeout`, a service manager) must not cut the recording's finalising.
        try:
            # The stream stops first: a JACK MIDI client leaving the graph can cost an xrun.
            if audio is not None:
                audio.close(keep=ok)
        finally:
            midi.close()
            synth.close()
            if awake is not None:
                awake.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    recorded = ""
    if audio.recorder is not None:
        recorded = f", recorded {audio.recorder.frames / sample_rate:.1f} s to {args.record}"
        if audio.recorder.dropped:
            recorded += f" ({audio.recorder.dropped} frames dropped: disk too slow)"
    print(f"singsynth play: stopped after {time.monotonic() - started:.1f} s; "
          f"{scheduler.events} MIDI events, xruns {audio.xruns}, late events {scheduler.late}, "
          f"peak callback load {100 * audio.peak_load:.0f}%{recorded}", flush=True)
    return 0


def run(stop, synth, audio, midi, scheduler, prewarm=None):
    """Main thread loop: status line, MIDI port checks, prewarm done, audio failure
    detection."""
    tty = sys.stderr.isatty()
    width = 0
    blocks, moved = audio.blocks, time.monotonic()
    told_record = False
    while not stop.wait(STATUS_EVERY):
        if audio.error or not audio.active:
            raise DeviceError(audio.error or f"the audio stream on {audio.device['name']!r} "
                              "stopped (sound server gone or device unplugged); restart "
                              "singsynth play")
        # A vanished JACK server or a wedged driver leaves the stream "active" without
        # callbacks; no block for STALLED seconds means the device is gone.
        if audio.blocks != blocks:
            blocks, moved = audio.blocks, time.monotonic()
        elif time.monotonic() - moved > STALLED:
            raise DeviceError(f"the audio device {audio.device['name']!r} stopped asking for "
                              f"audio for {STALLED:.0f} s (sound server gone or device "
                              "unplugged); restart singsynth play")
        message = midi.check()
        done = prewarm.check() if prewarm is not None else None
        if done:
            message = (message + "\n" if message else "") + done
        if audio.recorder is not None and audio.recorder.error and not told_record:
            message = (message + "\n" if message else "") + (
                f"recording stopped: {audio.recorder.error}; sound continues")
            told_record = True
        if message:
            # A port change goes on a line of its own, above the status line.
            print(("\r" + " " * width + "\r" if tty else "") + message, file=sys.stderr, flush=True)
        if tty:
            line = status_line(synth, audio, scheduler)
            sys.stderr.write("\r" + line.ljust(width))
            sys.stderr.flush()
            width = len(line)
    if tty:
        sys.stderr.write("\n")
