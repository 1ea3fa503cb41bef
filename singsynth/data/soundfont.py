"""Render a SoundFont into an NSynth-style dataset with the real FluidSynth CLI.

One FluidSynth run per instrument: a MIDI file holds all its notes one after the
other, each held 3 s (a drum hit 100 ms: `DRUM_HOLD_MS`), released, then cut with All
Sound Off (CC 120) after its 4-second window so that no release tail bleeds into the
next note. FluidSynth renders dry (reverb and chorus off), streaming raw float32 at `render_rate` through
a pipe; each note's onset is found exactly (the gaps between notes are digital
silence), its window is resampled to 16 kHz with soxr, notes outside the
instrument's range are dropped, and one gain per instrument brings it to a common
loudness while keeping the differences between velocities.
"""
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import soxr

from singsynth.data import gm
from singsynth.data.sf2 import read_presets
from singsynth.errors import DatasetError
from singsynth.files import atomic_path, os_error_line, write_sound
from singsynth.notes import TRAINED_VELOCITIES

SAMPLE_RATE = 16000
NOTE_SAMPLES = 64000           # 4 s at 16 kHz, as NSynth
VELOCITIES = TRAINED_VELOCITIES
HOLD_MS = 3000                 # key held 3 s, then released for 1 s
DRUM_HOLD_MS = 100             # a drum hit: key released after 100 ms, the kit's own release
                               # then rings out in the window (GM drums are one-shots; songs
                               # send short notes; in FluidR3's kit cymbals and open hi-hat end
                               # up 3-9 dB lower at 1 s, 6-19 dB at 2 s, than held 3 s)
LEAD_MS = 100                  # silence before the first note
KILL_MS = 4040                 # All Sound Off, after the window (onsets land a few ms late)
PERIOD_MS = 4100               # note-on to note-on
TARGET_RMS = 0.1               # -20 dBFS: median RMS of an instrument's loudest notes
PEAK_MAX = 0.99                # ... unless that would push any of its samples above this
SILENCE_DB = -80.0             # this far below the instrument's loudest: no sample zone, "out of range"
ABS_FLOOR = 1e-5               # RMS under this (float full scale 1.0) is silence
BAND_RATIO = 0.3               # lost >91% of its energy above 8 kHz: sample stretched past the band
DROP_REASONS = ("silent", "above 8 kHz")


@dataclass(frozen=True)
class Instrument:
    """One preset to render. `instrument` is the NSynth-style integer id."""
    name: str          # instrument_str, e.g. "yamaha_grand_piano_000"
    preset: str        # the SoundFont's own preset name
    bank: int
    program: int
    drums: bool = False

    @property
    def instrument(self) -> int:
        return 128 + self.program if self.drums else self.program


@dataclass
class Rendered:
    """Result of one instrument: NSynth examples and dropped notes by reason."""
    examples: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)


def sanitise(name: str) -> str:
    """Preset name -> lowercase [a-z0-9_] (no '-', which separates note_str fields)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "preset"


def plan_instruments(soundfont, programs=None, drums=False) -> list[Instrument]:
    """The instruments to render: bank-0 programs (None = all present) and, with
    drums, the drum kits of bank 128 (all kits when programs is None, else kit 0)."""
    presets = read_presets(soundfont)
    melodic = {p.program: p for p in presets if p.bank == 0}
    kits = {p.program: p for p in presets if p.bank == 128}
    chosen = sorted(melodic) if programs is None else list(programs)
    out = []
    for prog in chosen:
        if not 0 <= prog <= 127:
            raise DatasetError(f"program {prog} is outside 0-127; pass GM program numbers")
        if prog not in melodic:
            raise DatasetError(f"{soundfont} has no bank-0 preset for program {prog}; "
                               f"it has {sorted(melodic)}")
        p = melodic[prog]
        out.append(Instrument(f"{sanitise(p.name)}_{prog:03d}", p.name, 0, prog))
    if drums:
        if not kits:
            raise DatasetError(f"{soundfont} has no drum kits (bank 128); drop --drums")
        for prog in (sorted(kits) if programs is None else [min(kits)]):
            p = kits[prog]
            out.append(Instrument(f"drums_{sanitise(p.name)}_{prog:03d}", p.name, 128, prog, True))
    return out


def note_str(inst: Instrument, pitch: int, velocity: int) -> str:
    return f"{inst.name}-{pitch:03d}-{velocity:03d}"


def write_midi(path, inst: Instrument, notes) -> list[int]:
    """Write a MIDI file playing `notes` [(pitch, velocity)] in turn; return onsets in ms.

    Tempo is set so that one tick is one millisecond.
    """
    channel = 9 if inst.drums else 0
    hold = DRUM_HOLD_MS if inst.drums else HOLD_MS
    events = [(0, mido.Message("program_change", channel=channel, program=inst.program))]
    onsets = []
    for i, (pitch, velocity) in enumerate(notes):
        t = LEAD_MS + i * PERIOD_MS
        onsets.append(t)
        events += [(t, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)),
                   (t + hold, mido.Message("note_off", channel=channel, note=pitch)),
                   (t + KILL_MS, mido.Message("control_change", channel=channel, control=120))]
    mid = mido.MidiFile(ticks_per_beat=1000)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=1_000_000, time=0)])
    last = 0
    for t, msg in sorted(events, key=lambda e: e[0]):  # stable: order within a tick kept
        track.append(msg.copy(time=t - last))
        last = t
    track.append(mido.MetaMessage("end_of_track", time=PERIOD_MS - KILL_MS))
    mid.tracks.append(track)
    mid.save(path)
    return onsets


def fluidsynth_command(soundfont, midi, rate: int, fluidsynth="fluidsynth") -> list[str]:
    """FluidSynth fast render of midi, dry (reverb, chorus off), raw float32 stereo to stdout."""
    return [fluidsynth, "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(rate),
            "-o", "synth.cpu-cores=1", "-o", "synth.dynamic-sample-loading=1", "-O", "float", "-T", "raw", "-F", "/dev/stdout",
            str(soundfont), str(midi)]


def stream_fluidsynth(soundfont, midi, rate: int, fluidsynth="fluidsynth", block=1 << 17):
    """Yield float32 mono blocks (mean of L and R) as FluidSynth renders them.

    Streaming through a pipe avoids writing and re-reading a ~600 MB WAV per
    instrument (that I/O cost more than the synthesis). The same output array is
    reused for every block: consumers copy what they keep. Raises DatasetError if
    FluidSynth is missing or fails.
    """
    raw = bytearray(8 * block)
    frames = np.frombuffer(raw, np.float32).reshape(-1, 2)
    mono = np.empty(block, np.float32)
    cmd = fluidsynth_command(soundfont, midi, rate, fluidsynth)
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        except FileNotFoundError as exc:
            raise DatasetError("fluidsynth not found; install it "
                               "(Debian: apt-get install fluidsynth)") from exc
        try:
            view, have = memoryview(raw), 0
            while True:
                got = proc.stdout.readinto(view[have:])
                if got:
                    have += got
                if have < len(raw) and got:
                    continue
                n = have // 8  # whole stereo float32 frames
                if n == 0:
                    break
                np.add(frames[:n, 0], frames[:n, 1], out=mono[:n])
                mono[:n] *= 0.5
                yield mono[:n]
                raw[:have - 8 * n] = raw[8 * n:have]  # a partial frame, if any
                have -= 8 * n
                if not got:
                    break
        finally:
            proc.stdout.close()
            code = proc.wait()
        err.seek(0)
        message = err.read().decode(errors="replace").strip()
    if code != 0 or "error" in message.lower():
        # FluidSynth writes several lines; its last error says what went wrong.
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines or ["no message"]
        raise DatasetError(f"fluidsynth failed on {soundfont} (exit {code}: {errors[-1][:200]}); "
                           "check that the file is a valid SoundFont 2 (does it load in "
                           "FluidSynth or Polyphone?)")


def cut_notes(blocks, rate: int, onsets_ms, sample_rate: int = SAMPLE_RATE
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each note's 4-second window out of a mono stream and resample it to `sample_rate`.

    Args:
        blocks: iterable of float32 mono blocks at `rate` Hz (or one whole array in a list).
        onsets_ms: nominal note-on times in ms, increasing.
        sample_rate: the dataset's rate (16 kHz as NSynth, or 48 kHz for full-band models).
    Returns:
        (audio float32 (n, 4 s) at `sample_rate`, raw RMS at `rate` (n,),
        found (n,) bool: False where the note made no sound at all).
    """
    n = len(onsets_ms)
    note_samples = 4 * sample_rate
    audio = np.zeros((n, note_samples), np.float32)
    raw_rms = np.zeros(n, np.float64)
    found = np.zeros(n, bool)
    span = note_samples * rate // sample_rate
    tail = rate // 100    # 10 ms more, so the resampler's filter has real context at the end
    search = rate * 3 // 100  # onsets land a FluidSynth block (<5 ms) after the nominal time;
    # search + span + tail stays before KILL_MS, so a window never includes the cut.

    def cut(i, buf, base):
        start = onsets_ms[i] * rate // 1000 - base
        nz = np.flatnonzero(buf[start:start + search])
        if len(nz) == 0:
            return
        begin = start + int(nz[0])
        seg = buf[begin:begin + span + tail]
        found[i] = True
        raw_rms[i] = np.sqrt(np.mean(np.square(seg[:span], dtype=np.float64)))
        if rate != sample_rate:
            seg = soxr.resample(seg, rate, sample_rate, quality="HQ")
        seg = seg[:note_samples]
        audio[i, :len(seg)] = seg

    # One preallocated buffer holding samples [base, base + fill) of the stream;
    # compacted in place instead of reallocated (allocations cost page faults).
    buf = np.empty(0, np.float32)
    base, fill, i = 0, 0, 0
    for block in blocks:
        if fill + len(block) > len(buf):
            buf = np.concatenate([buf[:fill], np.empty(max(len(block), 2 * span), np.float32)])
        buf[fill:fill + len(block)] = block
        fill += len(block)
        while i < n and onsets_ms[i] * rate // 1000 + search + span + tail <= base + fill:
            cut(i, buf[:fill], base)
            i += 1
            if i < n:  # drop what no later note needs (never past what was received)
                drop = min(onsets_ms[i] * rate // 1000 - base, fill)
                buf[:fill - drop] = buf[drop:fill]
                base, fill = base + drop, fill - drop
    while i < n:  # a stream that ended early: cut what there is
        cut(i, buf[:fill], base)
        i += 1
    return audio, raw_rms, found


def classify(audio: np.ndarray, raw_rms: np.ndarray, found: np.ndarray, resampled: bool) -> list:
    """Per note: None to keep it, or the reason it is dropped (see DROP_REASONS).

    "silent": no sound, or its loudest 64 ms (1,024-sample frame RMS) is SILENCE_DB
    below the instrument's loudest; frames, not the whole 4 s, so that a soft short
    pluck still counts as a note. "above 8 kHz": resampling to 16 kHz removed most
    of its energy (a sample stretched past the band).
    """
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=1))
    # 64 ms frames at the notes' rate (4 s = 62.5 of them)
    frame = audio.shape[1] // 62 // 256 * 256
    frames = audio[:, :audio.shape[1] // frame * frame].reshape(len(audio), -1, frame)
    level = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=2)).max(axis=1, initial=0.0)
    floor = max(ABS_FLOOR, level.max(initial=0.0) * 10 ** (SILENCE_DB / 20))
    reasons = []
    for i in range(len(audio)):
        if not found[i] or level[i] < floor:
            reasons.append("silent")
        elif resampled and rms[i] < BAND_RATIO * raw_rms[i]:
            reasons.append("above 8 kHz")
        else:
            reasons.append(None)
    return reasons


def instrument_gain(audio: np.ndarray, velocities) -> float:
    """One gain for the whole instrument (keeps velocity differences).

    The median RMS of the notes at the loudest velocity goes to TARGET_RMS, unless
    that would push a sample above PEAK_MAX. audio: kept notes (n, 64000).
    """
    velocities = np.asarray(velocities)
    loud = audio[velocities == velocities.max()]
    rms = np.sqrt(np.mean(np.square(loud, dtype=np.float64), axis=1))
    gain = TARGET_RMS / max(float(np.median(rms)), 1e-12)
    peak = float(np.abs(audio).max())
    return min(gain, PEAK_MAX / max(peak, 1e-12))


def example_entry(inst: Instrument, pitch: int, velocity: int, sample_rate: int = SAMPLE_RATE
                  ) -> dict:
    """NSynth examples.json fields (the integer "note" id is assigned at merge)."""
    fam, src = gm.family(inst.program, inst.drums), gm.source(inst.program, inst.drums)
    return {
        "note_str": note_str(inst, pitch, velocity),
        "instrument": inst.instrument, "instrument_str": inst.name,
        "pitch": pitch, "velocity": velocity, "sample_rate": sample_rate,
        "instrument_family": fam, "instrument_family_str": gm.FAMILY_NAMES[fam],
        "instrument_source": src, "instrument_source_str": gm.SOURCES[src],
        "qualities": [0] * 10, "qualities_str": [],
        "preset": inst.preset, "bank": inst.bank, "program": inst.program,
    }


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM WAV (16 kHz as NSynth), written to a fresh temporary file then renamed."""
    try:
        with atomic_path(path) as tmp:
            write_sound(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")
    except OSError as exc:  # a full disk is named (libsndfile says only "System error")
        raise DatasetError(os_error_line(path, exc, "write", option="--out")) from None


def render_instrument(soundfont, inst: Instrument, pitches, velocities, out_dir,
                      render_rate=44100, fluidsynth="fluidsynth",
                      sample_rate: int = SAMPLE_RATE) -> Rendered:
    """Render every (pitch, velocity) of one instrument into out_dir/audio/ at `sample_rate`."""
    notes = [(p, v) for p in pitches for v in velocities]
    with tempfile.TemporaryDirectory(prefix="singsynth-render-") as tmp:
        midi = Path(tmp) / "notes.mid"
        onsets = write_midi(midi, inst, notes)
        stream = stream_fluidsynth(soundfont, midi, render_rate, fluidsynth)
        audio, raw_rms, found = cut_notes(stream, render_rate, onsets, sample_rate)
    # "above 8 kHz" means lost in the downsampling: only a 16 kHz dataset loses that band.
    reasons = classify(audio, raw_rms, found, render_rate > sample_rate and sample_rate < 32000)
    result = Rendered(dropped={r: 0 for r in DROP_REASONS})
    keep = [i for i, r in enumerate(reasons) if r is None]
    for r in reasons:
        if r is not None:
            result.dropped[r] += 1
    if not keep:
        return result
    gain = instrument_gain(audio[keep], [notes[i][1] for i in keep])
    audio_dir = Path(out_dir) / "audio"
    for i in keep:
        pitch, velocity = notes[i]
        entry = example_entry(inst, pitch, velocity, sample_rate)
        write_wav(audio_dir / f"{entry['note_str']}.wav", audio[i] * gain, sample_rate)
        result.examples[entry["note_str"]] = entry
    return result
