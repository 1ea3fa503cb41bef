"""Live play as a library object: a MIDI input drives the engine into an audio device.

MIDI thread -> `EventScheduler` (stamped with the stream clock) -> audio callback, which
dispatches the events due in its block and calls `Synth.process`. A cold note-on also
starts generating from the MIDI thread (`Synth.prefetch`) while its event waits, and a
program change starts prewarming the patch it selects. `LivePlayer.run` (the caller's
thread) shows the status line (and a line when prewarm is done), follows the MIDI port
coming and going, and returns when asked to stop; `close` stops the stream and finalises
the recording.

Everything that makes the audio process behave in real time is set here and nowhere
else: thread priorities, the interpreter's GIL switch interval, the frozen garbage
collector, CPUs kept out of sleep.

    player = LivePlayer(port="Keystation", preset="gm")
    player.load()                    # devices checked, engine and model ready
    player.start()                   # port open, stream running, prewarm queued
    player.run(stop_event)           # until stop_event is set
    print(player.close())            # the summary line
"""
import gc
import os
import sys
import threading
import time

from singsynth.engine import Synth
from singsynth.errors import DeviceError
from singsynth.generation.thread import leave_a_core
from singsynth.hosts import audio as audio_io
from singsynth.hosts.cpu_awake import CpuAwake
from singsynth.hosts.midi_in import MidiInput
from singsynth.hosts.record import check_record_path
from singsynth.hosts.timing import EventScheduler
from singsynth.model.files import open_source
from singsynth.notes import NoteKey, level_velocity, velocity_index
from singsynth.presets import host_preset

STATUS_EVERY = 0.25   # seconds between status line updates and MIDI port checks (a
                      # port that goes and comes back faster than this is not noticed)
STALLED = 2.0         # seconds without an audio callback before giving up on the device
# The audio callback needs the GIL; a thread holding it waits this long before handing it
# over (CPython's default is 5 ms, about a whole 256-frame block at 48 kHz).
SWITCH_INTERVAL = 0.0005
PRIORITY = -10        # nice value asked for the process's threads (see raise_priority)
HELPER_PRIORITY = 1   # SCHED_FIFO of the process generator's message threads (below JACK's)


def build_synth(sample_rate, model=None, preset=None, generator="process", source=None):
    """The engine for live play. `source` replaces the checkpoint (Python API and tests)."""
    if source is None and generator == "process":
        # Only the header is read here: the child loads the weights, so this (audio)
        # process never imports torch (~360 MB and a GIL-holding thread pool less).
        source = open_source(model)
    elif source is None:
        source = open_source(model, lazy=False)
        leave_a_core()
    preset = host_preset(preset, list(source.instruments))
    return Synth(source, sample_rate=sample_rate, preset=preset, generator=generator,
                 helper_priority=HELPER_PRIORITY if generator == "process" else None)


def patch_keys(synth, patch):
    """The keys of `patch`'s prewarm range at every velocity level, centre first (as
    `Synth.prewarm_keys` orders a whole preset's)."""
    if not patch.prewarm:
        return []
    levels = synth.velocity_levels
    lo, hi = patch.prewarm
    mid = (lo + hi) / 2
    order = sorted((abs(p - mid), abs(l - 0.6 * levels), p, l)
                   for p in range(lo, hi + 1) for l in range(levels))
    keys = [NoteKey(patch.instrument, min(max(p + patch.transpose, 0), 127),
                    round(velocity_index(level_velocity(l, levels), synth.velocities), 6))
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


class LivePlayer:
    """Live play from a MIDI input to an audio device, until stopped.

    Args:
        port: MIDI input, a case-insensitive substring of its name; or
        virtual: open a virtual input named 'singsynth' instead.
        midi_api: MIDI system (None: $MIDO_BACKEND, else the platform's own).
        device: audio output, index or name substring (None: the system default).
        blocksize: frames per audio block (0: the host's choice).
        latency: "low", "high" or seconds (PortAudio's suggested output latency).
        sample_rate: Hz (None: the device's own; the engine resamples).
        preset: preset YAML file or name (None: gm, as render).
        model: checkpoint file or name (None: models/default).
        record: also write what is sent to the device to this .wav (float32).
        force: overwrite `record`.
        generator: "process" (the model in child processes) or "thread".
        prewarm: pre-generate the prewarm notes of the starting patches and of each patch
            a program change selects.
        cpu_sleep: let idle CPUs sleep (by default they are kept polling where allowed).
        source: a NoteSource replacing `model` (Python API and tests).
        make_synth: `f(sample_rate) -> synth` replacing the engine (the benchmark's sine).
    """

    def __init__(self, port=None, virtual=False, midi_api=None, device=None, blocksize=256,
                 latency="low", sample_rate=None, preset=None, model=None, record=None,
                 force=False, generator="process", prewarm=True, cpu_sleep=False,
                 source=None, make_synth=None):
        if not virtual and not port:
            raise DeviceError("give --port NAME (see `singsynth ports`) or --virtual")
        if sample_rate is not None and not 8000 <= sample_rate <= 192000:
            raise DeviceError(f"--sample-rate {sample_rate}: use 8000-192000 Hz, or leave it "
                              "out for the device's own rate")
        if blocksize < 0 or blocksize > 8192:
            raise DeviceError(f"--blocksize {blocksize}: use 0 (host's choice) to 8192 frames")
        self.port, self.virtual, self.midi_api = port, virtual, midi_api
        self.device_name, self.blocksize, self.latency = device, blocksize, latency
        self.sample_rate, self.preset, self.model = sample_rate, preset, model
        self.record, self.force, self.generator = record, force, generator
        self.do_prewarm, self.cpu_sleep = prewarm, cpu_sleep
        self.source, self.make_synth = source, make_synth
        self.synth = self.audio = self.midi = self.scheduler = self.prewarm = None
        self.awake = None
        self.started = time.monotonic()

    def load(self) -> None:
        """Check every device, then build the engine (the model loads: seconds)."""
        if self.record:
            check_record_path(self.record, self.force)
        raise_priority()
        # Every device is checked before the (slow) model load, so a typo fails at once.
        audio_io.set_jack_client_name("singsynth")
        self.device = audio_io.find_device(self.device_name)
        self.latency = audio_io.parse_latency(self.latency)
        self.sample_rate = int(self.sample_rate or self.device["default_samplerate"])
        audio_io.check_device(self.device, self.sample_rate)
        self.midi = MidiInput(None, port=self.port, virtual=self.virtual, api=self.midi_api)
        self.midi.resolve()
        if self.make_synth:
            self.synth = self.make_synth(self.sample_rate)
        else:
            self.synth = build_synth(self.sample_rate, self.model, self.preset, self.generator,
                                     self.source)
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.scheduler = EventScheduler(self.synth.handle, self.sample_rate, self.blocksize or 256)

    def start(self) -> str:
        """Open the MIDI port and start the stream (and prewarm); returns the start line."""
        self.awake = None if self.cpu_sleep else CpuAwake()  # never raises: held or not
        self.audio = audio_io.AudioOutput(self.synth.process, self.device,
                                          sample_rate=self.sample_rate, blocksize=self.blocksize,
                                          latency=self.latency,
                                          before_block=self.scheduler.dispatch,
                                          recorder_path=self.record)
        # MIDI opens before the stream starts: on JACK a client joining the graph can cost
        # an xrun, which must not land in the middle of playing.
        if self.do_prewarm and hasattr(self.synth, "preset"):
            self.prewarm = Prewarm(self.synth)
        self.midi.connect_to(arrival(self.synth, self.scheduler, self.prewarm), self.audio.time)
        port_name = self.midi.open()
        quiet_gc()
        self.audio.start()
        if self.prewarm is not None:
            self.prewarm.start()
        awake = ", CPUs kept out of sleep" if self.awake and self.awake.held else ""
        return (f"singsynth play: MIDI {port_name!r} -> {self.device['name']!r} "
                f"[{self.device['hostapi']}] at {self.sample_rate} Hz, "
                f"{self.blocksize or 'host'}-frame blocks, output latency "
                f"{1000 * self.audio.latency:.1f} ms{awake}; Ctrl-C stops")

    def close(self, keep: bool = True) -> str:
        """Stop the stream, the MIDI input and the engine; returns the summary line.
        `keep`: keep the recording (False: an error stopped play, drop it)."""
        try:
            # The stream stops first: a JACK MIDI client leaving the graph can cost an xrun.
            if self.audio is not None:
                self.audio.close(keep=keep)
        finally:
            if self.midi is not None:
                self.midi.close()
            if self.synth is not None:
                self.synth.close()
            if self.awake is not None:
                self.awake.close()
        if self.audio is None:
            return ""
        audio, scheduler = self.audio, self.scheduler
        recorded = ""
        if audio.recorder is not None:
            recorded = (f", recorded {audio.recorder.frames / self.sample_rate:.1f} s to "
                        f"{self.record}")
            if audio.recorder.dropped:
                recorded += f" ({audio.recorder.dropped} frames dropped: disk too slow)"
        return (f"singsynth play: stopped after {time.monotonic() - self.started:.1f} s; "
                f"{scheduler.events} MIDI events, xruns {audio.xruns}, late events "
                f"{scheduler.late}, peak callback load {100 * audio.peak_load:.0f}%{recorded}")

    def status_line(self) -> str:
        """One line: voices, cache hit rate, notes generating, xruns, callback load."""
        s, audio = self.synth.stats(), self.audio
        asked = s.get("cache_hits", 0) + s.get("cache_misses", 0)
        hits = f"{100.0 * s['cache_hits'] / asked:5.1f}%" if asked else "    -"
        return (f"voices {s.get('voices', 0):3d} | cache hits {hits} | generating "
                f"{s.get('generating', 0):3d} | xruns {audio.xruns} | late "
                f"{self.scheduler.late} | cpu {100 * audio.load:3.0f}% "
                f"(peak {100 * audio.peak_load:3.0f}%)")

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set: status line, MIDI port checks, prewarm done, audio failure
        detection (DeviceError when the device is gone)."""
        audio, midi, prewarm = self.audio, self.midi, self.prewarm
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
                raise DeviceError(f"the audio device {audio.device['name']!r} stopped asking "
                                  f"for audio for {STALLED:.0f} s (sound server gone or device "
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
                print(("\r" + " " * width + "\r" if tty else "") + message, file=sys.stderr,
                      flush=True)
            if tty:
                line = self.status_line()
                sys.stderr.write("\r" + line.ljust(width))
                sys.stderr.flush()
                width = len(line)
        if tty:
            sys.stderr.write("\n")
