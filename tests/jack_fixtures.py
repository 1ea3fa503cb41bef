"""A real JACK server for tests and benchmarks, and a JACK client that plays a keyboard.

`jack_server` (pytest fixture) starts `jackd -d dummy -r 48000 -p 256` under a name of its
own, points this process and its children at it (`JACK_DEFAULT_SERVER`), and kills it at
teardown. The dummy backend needs no sound card but runs its cycles on the wall clock, so
PortAudio, python-rtmidi and JACK-Client all meet real JACK ports and a real frame clock.

`JackProbe` stands outside the program under test the way a keyboard and a recorder would:
it sends MIDI from a JACK MIDI port and records audio ports, both stamped in JACK frames
(`client.last_frame_time + offset`), so latency is measured on JACK's own clock.

Tests import it with `from tests.jack_fixtures import jack_server`.
"""
from __future__ import annotations

import collections
import contextlib
import gc
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

RATE = 48000
PERIOD = 256
ROOT = Path(__file__).resolve().parents[1]


def jackd_missing_reason():
    """Why JACK tests cannot run here, or None when they can."""
    if shutil.which("jackd") is None:
        return "jackd is not installed (Debian package jackd2; `make apt` installs it)"
    try:
        import jack  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"JACK-Client is not usable ({exc}); `pip install -e '.[dev]'` installs it"
    return None


def _wait_until_up(name, proc, timeout=15.0):
    """Poll until a client can connect to server `name`; False if jackd died or timed out."""
    import jack

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            client = jack.Client("singsynth-probe-up", no_start_server=True, servername=name)
        except jack.JackError:
            time.sleep(0.1)
            continue
        client.close()
        return True
    return False


@contextlib.contextmanager
def start_jack(name=None, rate=RATE, period=PERIOD):
    """Run `jackd -d dummy` as server `name` for the duration of the block.

    Sets JACK_DEFAULT_SERVER (so PortAudio, rtmidi and child processes find it) and
    JACK_NO_START_SERVER (so nothing silently starts a second server), restoring both after.
    Real-time scheduling is tried first; without the privilege it falls back to
    `--no-realtime`. Yields the server name.
    """
    name = name or f"singsynth-test-{os.getpid()}"
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
    # jackd's messages name the clients that were late at each xrun (see `late_clients`).
    log_path = os.environ.get("SINGSYNTH_JACK_LOG") or tempfile.mkstemp(
        prefix=f"{name}.", suffix=".log")[1]
    log = open(log_path, "ab")
    proc = None
    for realtime in (["--realtime"], ["--no-realtime"]):
        cmd = ["jackd", *realtime, "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # A process of its own stamps each line (a thread here would take this GIL); it
        # ends when jackd does.
        stamper = subprocess.Popen([sys.executable, "-u", "-c", STAMP_LINES],
                                   stdin=proc.stdout, stdout=log)
        proc.stdout.close()
        if _wait_until_up(name, proc):
            break
        _stop(proc)
        stamper.wait(timeout=10)
        proc = None
    if proc is None:
        log.close()
        raise RuntimeError(f"jackd -n {name} -d dummy did not start")
    LOGS[name] = log_path
    SERVERS[name] = proc
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield name
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _stop(proc)
        stamper.wait(timeout=10)
        log.close()
        # Clients still registered when the server stopped leave semaphores behind.
        for leftover in glob.glob(f"/dev/shm/jack_sem.*_{name}_*"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        LOGS.pop(name, None)
        SERVERS.pop(name, None)
        if not os.environ.get("SINGSYNTH_JACK_LOG"):
            os.unlink(log_path)


LOGS = {}  # server name -> jackd log file
SERVERS = {}  # server name -> jackd process


def kill_jack(name):
    """Shut server `name` down under its clients (SIGTERM), for error-path tests.

    Not SIGKILL: a killed jackd keeps its slot in JACK's shared-memory registry, and after
    a few such slots no new server can start on the machine.
    """
    _stop(SERVERS[name])


# Copies jackd's output to its log, each line prefixed with time.monotonic() on arrival;
# SCHED_FIFO 15 (above jackd's clients, where allowed) so a busy machine does not delay it.
STAMP_LINES = """
import os, sys, time
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(15))
except OSError:
    pass
for line in sys.stdin:
    sys.stdout.write(f"{time.monotonic():.4f} {line}")
"""


def xrun_times(name):
    """time.monotonic() (s) at which jackd `name` logged each xrun, in `late_clients` order."""
    times = []
    with open(LOGS[name], errors="replace") as f:
        for line in f:
            if "Process error" in line or "XRun =" in line:
                stamp = line.split(" ", 1)[0]
                times.append(float(stamp) if stamp.replace(".", "", 1).isdigit() else None)
    return times


def singsynth_late(late):
    """Whether a `late_clients` entry found a singsynth client (audio or MIDI) Running."""
    return "Running" in (late.get("singsynth"), late.get("singsynth-midi"))


def late_clients(name):
    """For each xrun jackd `name` logged so far, {client: state} of the unfinished clients.

    State "Running": the client's thread was inside its cycle, i.e. its own work was late.
    "Triggered": it was woken but never got a CPU (or waited on a late client before it),
    which is the machine's or another client's fault. An empty dict: the driver woke late.
    """
    xruns, current = [], {}
    with open(LOGS[name], errors="replace") as f:
        for line in f:
            if "was not finished" in line:
                client = line.split("client = ", 1)[1].split(" was not finished")[0]
                current[client] = line.rsplit("state = ", 1)[-1].strip()
            elif "Process error" in line or "XRun =" in line:
                xruns.append(current)
                current = {}
    return xruns


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def jack_server():
    """Name of a running JACK dummy server (48 kHz, 256 frames) for this test module."""
    reason = jackd_missing_reason()
    if reason:
        pytest.skip(reason)
    with start_jack() as name:
        yield name


class JackProbe:
    """A JACK client that sends MIDI and records audio, both on JACK's frame clock.

    Args:
        name: JACK client name.
        channels: audio input ports to record (`in_0`, `in_1`, ...).
        seconds: capacity of the recording in seconds.

    MIDI: `send(bytes)` queues a message; the next process cycle writes it at a random
    offset within the cycle (a keyboard's timing is not aligned to cycles) and stores its
    absolute frame in `sent` as (frame, bytes).
    Health: `xruns` counts the xruns JACK announced; `stalls` the cycles that began more than
    three periods late (the machine, not a client, was too busy).
    Audio: while `recording`, each cycle's input is stored; `audio` (frames, channels) float32
    starts at JACK frame `record_start`.
    """

    def __init__(self, name="singsynth-probe", channels=2, seconds=30.0, seed=0):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.midi_out = self.client.midi_outports.register("midi_out")
        self.inputs = [self.client.inports.register(f"in_{i}") for i in range(channels)]
        self.rate = self.client.samplerate
        self.audio = np.zeros((int(seconds * self.rate), channels), np.float32)
        # Touch every page now. numpy asks for transparent huge pages on big arrays, and the
        # first write into each 2 MiB (every 1,024 cycles here) would otherwise fault and
        # zero a huge page inside the callback: a late probe, an xrun every 5.46 s.
        self.audio.fill(0.0)
        self.record_start = None
        self.recorded = 0
        self.recording = False
        self.pending = collections.deque()
        self.sent = []
        self.xruns = 0
        self.stalls = 0
        self.xrun_times = []   # time.monotonic() of each xrun, for diagnostics
        self._last_cycle = None
        # Precomputed: the process callback should do as little Python as possible.
        self._offsets = np.random.default_rng(seed).integers(0, 1 << 16, 4096)
        self._cycle = 0
        self._timeline = None      # [(frame from its start, bytes)] played by the callback
        self._timeline_base = None
        self._next = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        # A full garbage collection in the callback (this process has ~10^5 objects) takes
        # tens of ms, a late probe that jackd counts as an xrun. The probe lives a few
        # minutes and builds no cycles worth collecting: freeze what exists, collect no more.
        gc.collect()
        gc.freeze()
        gc.disable()
        self.client.activate()

    def _xrun(self, delay):
        self.xruns += 1
        self.xrun_times.append(time.monotonic())

    def _process(self, frames):
        # A cycle starting more than 3 periods after the previous one means the whole
        # machine stalled (JACK's driver woke late): xruns then are nobody's fault here.
        now = time.monotonic()
        if self._last_cycle is not None and now - self._last_cycle > 3 * frames / self.rate:
            self.stalls += 1
        self._last_cycle = now
        start = self.client.last_frame_time
        self.midi_out.clear_buffer()
        self._cycle += 1
        offset = int(self._offsets[self._cycle % len(self._offsets)]) % frames
        while self.pending:
            data = self.pending.popleft()
            self.midi_out.write_midi_event(offset, data)
            self.sent.append((start + offset, bytes(data)))
        timeline = self._timeline
        if timeline is not None:
            if self._timeline_base is None:
                self._timeline_base = start
            end = start + frames
            while self._next < len(timeline) and self._timeline_base + timeline[self._next][0] < end:
                at, data = timeline[self._next]
                pos = max(0, self._timeline_base + at - start)  # late events go out at once
                self.midi_out.write_midi_event(pos, data)
                self.sent.append((start + pos, data))
                self._next += 1
        if self.recording:
            if self.record_start is None:
                self.record_start = start
            pos = start - self.record_start
            n = max(0, min(frames, len(self.audio) - pos))
            for ch, port in enumerate(self.inputs):
                self.audio[pos:pos + n, ch] = port.get_array()[:n]
            self.recorded = pos + n

    def send(self, data):
        """Queue one MIDI message (3 bytes) for the next cycle."""
        self.pending.append(bytes(data))

    def play_timeline(self, events):
        """Send `events` [(seconds from now, 3 bytes)], sorted, from the process callback
        on JACK's frame clock; returns when the last has gone out.

        No Python thread of this process takes the GIL meanwhile (this one sleeps), so the
        callback never waits for one that the OS preempted: the probe keeps its cycles
        under load, and a storm's xruns are the program under test's.
        """
        self._next, self._timeline_base = 0, None
        self._timeline = [(int(round(t * self.rate)), bytes(d)) for t, d in events]
        length = self._timeline[-1][0] / self.rate if self._timeline else 0.0
        time.sleep(length + 0.1)
        while self._next < len(self._timeline):
            time.sleep(0.05)
        self._timeline = None

    def note_on(self, pitch, velocity, channel=0):
        """Send a note-on and return the JACK frame it went out at (waits for the cycle)."""
        n = len(self.sent)
        self.send([0x90 | channel, pitch, velocity])
        while len(self.sent) == n:
            time.sleep(0.001)
        return self.sent[n][0]

    def now(self):
        """JACK's current frame time (frames)."""
        return self.client.frame_time

    def connect_to(self, midi_port, audio_ports):
        """Connect our MIDI out to `midi_port` and `audio_ports` to our inputs."""
        self.client.connect(self.midi_out, midi_port)
        for src, dst in zip(audio_ports, self.inputs):
            self.client.connect(src, dst)

    def wait_for_ports(self, pattern, count, timeout=60.0, **kwargs):
        """Names of the ports matching `pattern` once at least `count` exist."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = [p.name for p in self.client.get_ports(pattern, **kwargs)]
            if len(names) >= count:
                return names
            time.sleep(0.1)
        raise TimeoutError(f"no {count} JACK ports matching {pattern!r} after {timeout} s")

    def recorded_audio(self):
        """(frames, channels) float32 recorded so far, and the JACK frame of its first row."""
        return self.audio[:self.recorded], self.record_start

    def close(self):
        self.client.deactivate()
        self.client.close()
        gc.unfreeze()
        gc.enable()


class StallMonitor:
    """`tests/stall_monitor.py`, one subprocess pinned to each CPU: when did a CPU stall?

    `stop()` returns [(time.monotonic() s, milliseconds, cpu)] of the stalls seen since
    start, in time order.
    """

    def __init__(self):
        self.cpus = sorted(os.sched_getaffinity(0))
        self.procs = [subprocess.Popen([sys.executable, "-m", "tests.stall_monitor", str(cpu)],
                                       cwd=ROOT, stdout=subprocess.PIPE, text=True)
                      for cpu in self.cpus]
        for proc in self.procs:
            proc.stdout.readline()  # "ready": it is watching

    def stop(self):
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        stalls = []
        for cpu, proc in zip(self.cpus, self.procs):
            out, _ = proc.communicate(timeout=30)
            stalls += [(at, ms, cpu) for at, ms in json.loads(out or "[]")]
        return sorted(stalls)


# An xrun this close (s) to a stall of a CPU is the machine's: jackd notices at the end of
# the cycle the stall broke, and tells its clients soon after. With 2 CPUs, a stalled one
# holds part of every cycle's work (jackd, a client, or the thread with the GIL).
STALL_WINDOW = 0.05


def not_at_stalls(xrun_times, stalls, window=STALL_WINDOW):
    """The xrun times (time.monotonic() s) that no CPU stall [(s, ms, ...)] explains."""
    return [t for t in xrun_times if t is None
            or not any(s[0] - window <= t <= s[0] + s[1] / 1000 + window for s in stalls)]


class Play:
    """`singsynth play ARGS` in a subprocess (MIDI over JACK); collects its output lines.

    With `code`, runs `python -c code ARGS` instead: a script calling `play.main` with a
    test source or synth.
    """

    def __init__(self, args, code=None, session=False):
        env = dict(os.environ, MIDO_BACKEND="mido.backends.rtmidi/UNIX_JACK",
                   PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-c", code, *args] if code else \
            [sys.executable, "-m", "singsynth", "play", *args]
        # `session`: a process group of its own, signalled whole as a terminal's Ctrl-C is.
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     start_new_session=session)
        self.out, self.err = [], []
        self._threads = [threading.Thread(target=self._read, args=(s, l), daemon=True)
                         for s, l in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("Ctrl-C stops" in line for line in self.out):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"play did not start: {self.out + self.err}")

    def wait_for(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.out + self.err):
                return True
            time.sleep(0.05)
        return False

    def stop(self, signal_first=True, sig=signal.SIGTERM):
        """Send `sig` (unless `signal_first` is False), wait for exit; the return code."""
        if signal_first and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        return self.proc.returncode

    def xruns(self):
        line = [l for l in self.out if "stopped after" in l][-1]
        return int(line.split("xruns ")[1].split(",")[0])
