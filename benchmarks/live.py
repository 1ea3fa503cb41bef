"""Live play measured from outside: note-on -> first audible sample, and xruns under a storm.

A JACK dummy server runs at 48 kHz / 256 frames. `singsynth play --virtual` runs as its own
process; this script is another JACK client (JACK-Client) that sends MIDI into singsynth's
port and records singsynth's audio ports, both stamped on JACK's frame clock, so latency
is counted in JACK frames from the frame the note-on was written at to the first sample
above -60 dBFS. That includes JACK MIDI delivery, rtmidi, the event scheduler's fixed
one-block latency, the engine starting the note and PortAudio's JACK output.

Runs, each a fresh `singsynth play`, in one sitting so that they share the machine's mood:
  0. the storm with no synth at all: the xruns of the harness and the machine alone;
  1. sine floor: a trivial Python sine synth in place of the engine (same path), its
     latency and then the same storm;
  2. the model as a musician meets it: `play` with its default (GM) preset and prewarm,
     cold notes (keys never played, on 4 GM programs that prewarm does not cover) in
     three phases: (a) from the moment the port opens, while the start-up prewarm runs;
     (b) once `play` says prewarm is done; (c) each 100 ms after a program change to a
     program whose prewarm range that change starts (the benchmark's preset gives 4
     programs one, `SWITCH_PROGRAMS`), the note outside that range; then the phase-(b)
     notes again, warm; then, once that prewarm is done, a storm of 50 note-ons/s over 4
     channels set to 4 more programs (cold at first, as in the storm of earlier runs),
     counting xruns.
Each xrun is attributed twice: by jackd's log (which client was late) and by time, against
the stalls of each CPU that a SCHED_FIFO 20 sleeper pinned to it saw (`tests/stall_monitor.py`).

With --cpu-sleep-pairs N, then N pairs of storms alone, the model's `play` holding the CPUs
out of sleep (its default) and with --cpu-sleep, alternating, side by side.

Usage: .venv/bin/python benchmarks/live.py [--model FILE] [--storm 60] [--notes 16]
                                           [--cpu-sleep-pairs N] [--generators process]
Without --model, models/default.safetensors, else a random-init `small` checkpoint (the
same compute per note as a trained one; played with --preset default).
"""
import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from singsynth.hosts.cpu_awake import CpuAwake
from singsynth.notes import midi_to_hz
from tests.jack_fixtures import (JackProbe, Play, StallMonitor, late_clients,  # noqa: E402
                                 not_at_stalls, singsynth_late, start_jack, xrun_times)

RATE = 48000
THRESHOLD = 1e-3  # -60 dBFS
COLD_PROGRAMS = (24, 40, 56, 73)    # guitar, violin, trumpet, flute: channels 1-4, no prewarm
SWITCH_PROGRAMS = (16, 32, 48, 66)  # organ, bass, strings, sax: a prewarm range here
SWITCH_RANGE = (54, 78)             # ... which the notes after the change stay out of
STORM_PROGRAMS = (4, 8, 29, 57)     # rhodes, vibraphone, overdrive guitar, brass: channels 0-3
SINE_PLAY = ("import sys; sys.path.insert(0, 'benchmarks'); from live import SineSynth; "
             "from singsynth.cli import play; "
             "sys.exit(play.main(sys.argv[1:], make_synth=SineSynth))")


class SineSynth:
    """A trivial Python sine synth with the engine's interface: the floor of the live path."""

    def __init__(self, sample_rate):
        self.rate = sample_rate
        self.queue = collections.deque()
        self.voices = {}  # (channel, pitch) -> [Hz, phase, amplitude]

    def handle(self, msg, offset=0):
        self.queue.append((offset, msg))

    def process(self, frames):
        out = np.zeros((frames, 2), np.float32)
        pos = 0
        events = sorted((self.queue.popleft() for _ in range(len(self.queue))),
                        key=lambda e: e[0])
        for offset, msg in events + [(frames, None)]:
            offset = min(offset, frames)
            self._render(out, pos, offset)
            pos = offset
            if msg is None:
                break
            key = (getattr(msg, "channel", 0), getattr(msg, "note", 0))
            if msg.type == "note_on" and msg.velocity:
                self.voices[key] = [midi_to_hz(msg.note), 0.0, 0.2]
            elif msg.type in ("note_on", "note_off"):
                self.voices.pop(key, None)
        out[:, 1] = out[:, 0]
        return out

    def _render(self, out, a, b):
        if b <= a:
            return
        t = np.arange(b - a)
        for v in self.voices.values():
            w = 2 * np.pi * v[0] / self.rate
            out[a:b, 0] += v[2] * np.sin(v[1] + w * t)
            v[1] = (v[1] + w * (b - a)) % (2 * np.pi)

    def prewarm(self):
        return []

    def stats(self):
        return dict(voices=len(self.voices), cache_hits=0, cache_misses=0, generating=0)

    def close(self):
        pass


def model_path(arg, tmp):
    """The checkpoint to play and a description of it."""
    if arg:
        return arg, arg
    default = ROOT / "models" / "default.safetensors"
    if default.exists():
        return str(default), "models/default.safetensors"
    import torch

    from singsynth.model.checkpoint import save_model
    from singsynth.model.sing import build
    torch.manual_seed(0)
    path = Path(tmp) / "small.safetensors"
    save_model(path, build("small", ["piano", "organ", "guitar", "strings"]),
               {"dataset": "none (random init, benchmark)", "stage": "init"})
    return str(path), "random-init `small` (models/default.safetensors does not exist yet)"


def wait_quiet(probe, seconds=0.05, timeout=3.0):
    """Wait until the last `seconds` recorded are below the threshold.

    A note-off can be lost at an xrun (JACK drops a cycle's MIDI when its reader misses
    that cycle), and a SING note sustains until released: after `timeout`, send all sound
    off (CC 120) on every channel and wait once more.
    """
    n = int(seconds * RATE)
    for _ in range(2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            end = probe.recorded
            if end > n and np.abs(probe.audio[end - n:end]).max() < THRESHOLD:
                return
            time.sleep(0.02)
        for channel in range(16):
            probe.send([0xB0 | channel, 120, 0])


def latencies(probe, pitches, velocity=100, hold=0.25):
    """Play each pitch alone; ms from the note-on's JACK frame to the first audible sample.

    NaN where nothing was heard within 1 s, or where the 10 ms before the note-on were not
    silent (a note left sounding: that note's onset cannot be measured).
    """
    frames = []
    for pitch in pitches:
        wait_quiet(probe)
        frames.append(probe.note_on(pitch, velocity))
        time.sleep(hold)
        probe.send([0x80, pitch, 0])
    time.sleep(0.5)
    audio = np.abs(probe.audio).max(axis=1)
    before = int(0.01 * RATE)
    result = []
    for f in frames:
        at = f - probe.record_start
        seg = audio[at:at + RATE]
        hits = np.flatnonzero(seg > THRESHOLD)
        quiet = audio[max(0, at - before):at].max(initial=0.0) <= THRESHOLD
        result.append(1000.0 * hits[0] / RATE if len(hits) and quiet else float("nan"))
    return np.array(result)


def storm(probe, seconds, rate=50, channels=4, seed=1):
    """`rate` note-ons per second round-robin over `channels`, each released after 0.2 s,
    sent by the probe's JACK callback from a timeline (this thread just waits)."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(int(seconds * rate)):
        ch, pitch = i % channels, int(rng.integers(36, 97))
        t = i / rate
        events.append((t, [0x90 | ch, pitch, int(rng.integers(40, 128))]))
        events.append((t + 0.2, [0x80 | ch, pitch, 0]))
    events.sort(key=lambda e: e[0])
    probe.play_timeline(events)
    time.sleep(0.3)


def yes_no(flag):
    return "unknown" if flag is None else "yes" if flag else "no"


def summary(values):
    v = values[~np.isnan(values)]
    missing = len(values) - len(v)
    text = f"median {np.median(v):5.1f} ms, p95 {np.percentile(v, 95):5.1f} ms, " \
           f"max {v.max():5.1f} ms (n={len(v)})" if len(v) else "no onsets"
    return text + (f", {missing} not measured (not heard within 1 s, or sound before the "
                   "note-on)" if missing else "")


def session(server, args, code=None, notes=16, storm_seconds=0, seconds=120):
    """One `singsynth play` process: latencies (cold, then warm) and an optional storm.

    With `args` None, no synth at all: only the storm, into the probe's unconnected port,
    with the CPUs held out of sleep as `play` holds them (`singsynth.hosts.cpu_awake`).
    """
    logged_before = len(late_clients(server))
    monitor = StallMonitor()
    probe = JackProbe(seconds=seconds)
    play = None if args is None else Play(["--virtual", "--midi-api", "jack", *args], code=code)
    awake = CpuAwake() if play is None else None
    result = {"phases": [("start-up", time.monotonic())]}
    try:
        if play:
            play.wait_ready(timeout=300)
            probe.wait_for_ports("^singsynth:out_", 2)
            probe.wait_for_ports("^singsynth-midi:", 1, is_midi=True)
            probe.connect_to("singsynth-midi:singsynth", ["singsynth:out_0", "singsynth:out_1"])
        probe.recording = True
        time.sleep(0.5)
        if play and notes:
            pitches = list(range(48, 48 + 2 * notes, 2))  # distinct keys, never played before
            result["phases"].append(("cold", time.monotonic()))
            result["cold"] = latencies(probe, pitches)
            result["phases"].append(("warm", time.monotonic()))
            result["warm"] = latencies(probe, pitches)
        if storm_seconds:
            time.sleep(0.5)
            before = len(late_clients(server))
            start = time.monotonic()
            result["phases"].append(("storm", start))
            storm(probe, storm_seconds)
            result["storm_window"] = (start, time.monotonic())
            result["storm_jack"] = late_clients(server)[before:]
            result["storm_times"] = xrun_times(server)[before:]
    finally:
        result["phases"].append(("stop", time.monotonic()))
        if play:
            play.stop()
        if awake:
            awake.close()
        probe.close()
        result["stalls"] = monitor.stop()
    if play:
        result["xruns"] = play.xruns()
        result["line"] = [line for line in play.out if "stopped after" in line][-1]
    result["jack_xruns"] = late_clients(server)[logged_before:]
    result["jack_times"] = xrun_times(server)[logged_before:]
    return result


def switch_preset(tmp):
    """presets/gm.yaml with the prewarm range `SWITCH_RANGE` on `SWITCH_PROGRAMS`, so that
    a program change to one of them starts a prewarm (gm.yaml gives one to piano only)."""
    import re
    text = (ROOT / "presets" / "gm.yaml").read_text()
    for program in SWITCH_PROGRAMS:
        text, n = re.subn(rf"^(  {program}: {{instrument: [^}},]+)}}",
                          rf"\1, prewarm: [{SWITCH_RANGE[0]}, {SWITCH_RANGE[1]}]}}", text,
                          flags=re.M)
        assert n == 1, program
    path = Path(tmp) / "gm-switch.yaml"
    path.write_text(text.replace("name: gm", "name: gm-switch"))
    return str(path)


def onset_ms(probe, frames, before=0.01):
    """ms from each note-on frame to the first audible sample (NaN: none within 1 s, or
    sound in the `before` s before it), and how many were each of those two."""
    audio = np.abs(probe.audio).max(axis=1)
    result, silent, sounding = [], 0, 0
    for f in frames:
        at = f - probe.record_start
        seg = audio[at:at + RATE]
        hits = np.flatnonzero(seg > THRESHOLD)
        quiet = audio[max(0, at - int(before * RATE)):at].max(initial=0.0) <= THRESHOLD
        silent += not len(hits)
        sounding += not quiet
        result.append(1000.0 * hits[0] / RATE if len(hits) and quiet else float("nan"))
    return result, (silent, sounding)


def strike(probe, channel, pitch, velocity=100, hold=0.25):
    """One note alone: wait for silence, note-on, hold, note-off; its note-on frame."""
    wait_quiet(probe)
    frame = probe.note_on(pitch, velocity, channel=channel)
    time.sleep(hold)
    probe.send([0x80 | channel, pitch, 0])
    return frame


def descendants_cpu(pid):
    """CPU seconds (user + system) used so far by the processes below `pid`."""
    import os
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    below, total = {pid}, 0.0
    for _ in range(4):  # children, grandchildren, ...
        below |= {p for p, pp in parent.items() if pp in below}
    return sum(cpu[p] for p in below - {pid})


def prewarm_running(play, count):
    """Whether `play` has said "prewarmed" fewer than `count` times."""
    return sum("prewarmed" in line for line in play.out + play.err) < count


def wait_prewarm(play, count, timeout=600.0, quiet=3.0):
    """Wait until `play` says "prewarmed" for the `count`-th time, or (a `play` that does
    not say it: --baseline) until its child processes used under 2 % of a CPU for `quiet`
    s. Returns the line, or how long it waited."""
    start = time.monotonic()
    last, since = descendants_cpu(play.proc.pid), time.monotonic()
    while time.monotonic() - start < timeout:
        lines = [l for l in play.out + play.err if "prewarmed" in l]
        if len(lines) >= count:
            return lines[count - 1].strip()
        time.sleep(0.25)
        now, cpu = time.monotonic(), descendants_cpu(play.proc.pid)
        if cpu - last > 0.02 * (now - since):
            last, since = cpu, now
        elif now - since > quiet:
            return f"generator idle {since - start:.1f} s after this wait began"
    raise RuntimeError("prewarm did not end")


def model_session(server, path, preset, notes=16, storm_seconds=0, kind="process", root=None):
    """One `singsynth play` of the model, prewarm on: cold notes in three phases, warm
    notes, a storm (see the module docstring). `root`: run the singsynth found there (an
    earlier version, for a baseline) instead of this one."""
    logged_before = len(late_clients(server))
    monitor = StallMonitor()
    probe = JackProbe(seconds=420 + storm_seconds)  # prewarm may take minutes on a busy host
    args = ["--model", path, "--generator", kind, "--preset", preset or "default"]
    code = None if root is None else (
        f"import sys; sys.path.insert(0, {str(root)!r}); from singsynth.cli import play; "
        "sys.exit(play.main(sys.argv[1:]))")
    play = Play(["--virtual", "--midi-api", "jack", *args], code=code)
    res = {"phases": [("start-up", time.monotonic())]}
    try:
        play.wait_ready(timeout=300)
        ready = time.monotonic()
        probe.wait_for_ports("^singsynth:out_", 2)
        probe.wait_for_ports("^singsynth-midi:", 1, is_midi=True)
        probe.connect_to("singsynth-midi:singsynth", ["singsynth:out_0", "singsynth:out_1"])
        probe.recording = True
        for i, program in enumerate(COLD_PROGRAMS):
            probe.send([0xC0 | (i + 1), program])
        # Distinct keys, never played: 4 programs x pitches 40, 43, 46, ... per phase.
        series = [[(1 + i % 4, 40 + 3 * (i // 4) + 12 * phase) for i in range(notes)]
                  for phase in range(2)]
        res["phases"].append(("cold during start-up prewarm", time.monotonic()))
        res["first_after_ready"] = time.monotonic() - ready
        frames = [strike(probe, c, p) for c, p in series[0]]
        res["prewarm_during_a"] = prewarm_running(play, 1)
        res["a"] = frames
        res["prewarm_line"] = wait_prewarm(play, 1)
        res["prewarm_line"] += f"; {time.monotonic() - ready:.1f} s after the port opened"
        res["phases"].append(("cold after prewarm", time.monotonic()))
        res["b"] = [strike(probe, c, p) for c, p in series[1]]
        res["phases"].append(("cold after a program change", time.monotonic()))
        frames = []
        outside = [p for p in range(36, 97, 5) if not SWITCH_RANGE[0] <= p <= SWITCH_RANGE[1]]
        for i in range(notes):
            channel = 5 + i % 4
            wait_quiet(probe)
            probe.send([0xC0 | channel, SWITCH_PROGRAMS[i % 4]])
            time.sleep(0.1)
            frames.append(strike(probe, channel, outside[i % len(outside)] + i // len(outside)))
        res["c"] = frames
        res["prewarm_during_c"] = prewarm_running(play, 2)
        if root is not None:  # an earlier `play` does not say when prewarm is done
            res["prewarm_during_a"] = res["prewarm_during_c"] = None
        res["phases"].append(("warm", time.monotonic()))
        res["warm"] = [strike(probe, c, p) for c, p in series[1]]
        time.sleep(0.5)
        for key in ("a", "b", "c", "warm"):
            onsets, res[key + "_missed"] = onset_ms(probe, res[key])
            res[key] = np.array(onsets)
        if storm_seconds:
            # As the storms of earlier runs (and the sine synth's): nothing else working.
            res["storm_wait"] = wait_prewarm(play, 2)
            for i, program in enumerate(STORM_PROGRAMS):
                probe.send([0xC0 | i, program])
            time.sleep(0.5)
            before = len(late_clients(server))
            start = time.monotonic()
            res["phases"].append(("storm", start))
            res["prewarm_at_storm"] = prewarm_running(play, 2) if root is None else None
            storm(probe, storm_seconds)
            res["storm_window"] = (start, time.monotonic())
            res["storm_jack"] = late_clients(server)[before:]
            res["storm_times"] = xrun_times(server)[before:]
    finally:
        res["phases"].append(("stop", time.monotonic()))
        play.stop()
        probe.close()
        res["stalls"] = monitor.stop()
    res["xruns"] = play.xruns()
    res["line"] = [line for line in play.out if "stopped after" in line][-1]
    res["jack_xruns"] = late_clients(server)[logged_before:]
    res["jack_times"] = xrun_times(server)[logged_before:]
    return res


def stall_text(logged, times, stalls, window=None):
    """How many xruns (all, and those with singsynth late) jackd logged at a CPU stall.

    `stalls`: [(time.monotonic() s, ms, cpu)] from `StallMonitor`. With `window` (start,
    end) in time.monotonic() s, stalls are counted inside it only.
    """
    if window:
        stalls = [s for s in stalls if window[0] <= s[0] <= window[1]]
    at = len(times) - len(not_at_stalls(times, stalls))
    ours = [t for t, late in zip(times, logged) if singsynth_late(late)]
    ours_at = len(ours) - len(not_at_stalls(ours, stalls))
    worst = max((s[1] for s in stalls), default=0.0)
    per_cpu = collections.Counter(s[2] for s in stalls)
    return (f"within 50 ms of a CPU stall: {at} of {len(times)} xruns, {ours_at} of the "
            f"{len(ours)} with singsynth late (stalls of >= 4 ms in the "
            f"{'storm' if window else 'session'}: "
            + ", ".join(f"cpu{cpu} {n}" for cpu, n in sorted(per_cpu.items()))
            + f"; longest {worst:.0f} ms)")


def storm_report(res, seconds):
    """Print a session's storm xruns: who jackd blamed, and how many came at CPU stalls."""
    if not seconds:
        return
    print(f"  storm {seconds:.0f} s, 50 note-ons/s over 4 channels: "
          f"{blame_text(res['storm_jack'])}")
    stalls = stall_text(res["storm_jack"], res["storm_times"], res["stalls"], res["storm_window"])
    print(f"    {stalls}")


def phase_text(res):
    """JACK xruns and CPU stalls counted per phase of a session (start-up, cold, ...)."""
    edges = [t for _, t in res["phases"][1:]]

    def counts(times):
        idx = np.searchsorted(edges, [t for t in times if t is not None])
        return [int((idx == i).sum()) for i in range(len(res["phases"]))]
    xruns = counts(res["jack_times"])
    stalls = counts([s[0] for s in res["stalls"]])
    return "per phase, JACK xruns / CPU stalls: " + ", ".join(
        f"{name} {x}/{s}" for (name, _), x, s in zip(res["phases"], xruns, stalls))


def blame_text(logged):
    """Who jackd found late at each xrun: singsynth's own work, the probe, or nobody running."""
    ours = sum(singsynth_late(x) for x in logged)
    probe = sum(not singsynth_late(x) and x.get("singsynth-probe") == "Running" for x in logged)
    idle = len(logged) - ours - probe
    return (f"{len(logged)} JACK xruns: {ours} with a singsynth client late in its own work, "
            f"{probe} with only the probe late, {idle} with no client running (machine busy)")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (default: models/default, else random small)")
    parser.add_argument("--storm", type=float, default=60.0, help="storm seconds (default 60)")
    parser.add_argument("--notes", type=int, default=16, help="notes per latency series")
    parser.add_argument("--cpu-sleep-pairs", type=int, default=0,
                        help="then N pairs of model storms: CPUs held awake, then --cpu-sleep")
    parser.add_argument("--baseline", help="a folder holding another singsynth (e.g. `git "
                        "archive` of an earlier commit): its model session runs too, last")
    parser.add_argument("--generators", default="process",
                        help="play's --generator values to compare, side by side in one run")
    args = parser.parse_args()
    # The probe is a Python JACK client too: give it the priority `singsynth play` asks
    # for, so that its own lateness does not stand in for singsynth's.
    from singsynth.hosts.live import raise_priority
    raise_priority()
    with tempfile.TemporaryDirectory() as tmp, start_jack() as server:
        path, about = model_path(args.model, tmp)
        preset = switch_preset(tmp) if path.endswith("default.safetensors") else None
        print(f"JACK dummy 48000 Hz / 256 frames; model: {about}", flush=True)

        if args.storm:
            alone = session(server, None, storm_seconds=args.storm, seconds=10 + args.storm)
            print("no synth at all (the harness and the machine alone):")
            storm_report(alone, args.storm)

        sine = session(server, [], code=SINE_PLAY, notes=args.notes, storm_seconds=args.storm,
                       seconds=60 + args.storm)
        print(f"sine floor (trivial Python synth): {summary(sine['cold'])}")
        storm_report(sine, args.storm)
        print(f"  whole session: singsynth reported xruns {sine['xruns']}; "
              f"{blame_text(sine['jack_xruns'])}")
        print(f"  {phase_text(sine)}", flush=True)

        runs = [(kind, None) for kind in args.generators.split(",")]
        if args.baseline:
            runs.append(("process", args.baseline))
        for kind, root in runs:
            res = model_session(server, path, preset, notes=args.notes,
                                storm_seconds=args.storm, kind=kind, root=root)
            print(f"{'BASELINE ' + root + ', ' if root else ''}--generator {kind}, "
                  f"{'GM preset' if preset else '--preset default'} "
                  f"with prewarm ({res['prewarm_line'].strip()}):")
            print(f"  first cold note {res['first_after_ready']:.1f} s after the port opened")
            for key, what in (("a", "cold, during start-up prewarm "
                                    f"(prewarm still running after them: "
                                    f"{yes_no(res['prewarm_during_a'])})"),
                              ("b", "cold, after prewarm"),
                              ("c", "cold, 100 ms after a program change (its prewarm "
                                    f"still running after them: "
                                    f"{yes_no(res['prewarm_during_c'])})"),
                              ("warm", "warm (the after-prewarm notes again)")):
                silent, sounding = res[key + "_missed"]
                print(f"  {what}: {summary(res[key])}"
                      + (f" [not heard within 1 s: {silent}; sound before: {sounding}]"
                         if silent or sounding else ""))
                print(f"    per note: {' '.join(f'{ms:.0f}' for ms in res[key])} ms")
            if args.storm:
                print(f"  storm, after the program changes' prewarm ({res['storm_wait']}; "
                      f"still running: {yes_no(res['prewarm_at_storm'])}):")
            storm_report(res, args.storm)
            print(f"  whole session: singsynth reported xruns {res['xruns']}; "
                  f"{blame_text(res['jack_xruns'])}")
            print(f"  {phase_text(res)}")
            print(f"  {res['line']}", flush=True)

        model = ["--model", path, "--no-prewarm", "--generator", "process",
                 "--preset", preset or "default"]
        for _ in range(args.cpu_sleep_pairs):
            for extra in ([], ["--cpu-sleep"]):
                res = session(server, model + extra, notes=0, storm_seconds=args.storm,
                              seconds=30 + args.storm)
                print("model, " + ("--cpu-sleep" if extra else "CPUs held out of sleep") + ":")
                storm_report(res, args.storm)


if __name__ == "__main__":
    main()
