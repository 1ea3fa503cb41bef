"""`singsynth dataset build --samples DIR`: a folder of recorded samples in NSynth's layout.

Each audio file (WAV, FLAC, AIFF, OGG: what libsndfile reads) is one note. Its pitch and
velocity come from its name (`naming.parse_name`) or from a CSV map; a file whose name
holds no pitch has it estimated with pyin, and the builder says so. Each note becomes 4 s
at the model's rate, as NSynth's: trimmed at its onset, held 3 s, faded out over the
last second, padded with silence if shorter. Velocities go to the nearest of NSynth's
five levels, and one gain per instrument sets its loudness as the SoundFont builder does
(`soundfont.instrument_gain`).

Every problem is named per file (unreadable, silent, clipped, two files for one key and
velocity, a named pitch more than a semitone from the one heard); with any problem
nothing is written unless `skip_bad`, and then the files left out are listed. The
dataset is written into a temporary folder beside `out` and renamed into place, so a
failure leaves nothing behind.
"""
from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from singsynth.data import soundfont as sfr
from singsynth.data.build import PARTS, SAMPLE_RATES, SETTINGS, _write_json, merge
from singsynth.data.naming import midi_to_note, parse_name, parse_pitch
from singsynth.errors import DatasetError
from singsynth.files import make_public, read_bytes

AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg")
NOTE_SECONDS = 4            # NSynth's notes: 4 s, key held for the first 3
HOLD_SECONDS = 3
ONSET_DB = -40.0            # the note starts where it first reaches this far below its peak
PRE_ONSET_S = 0.005         # ... kept from a little before, so the attack is whole
END_FADE_S = 0.005          # a sample that stops short ends on this fade, not a click
SILENT_DBFS = -60.0         # a file whose loudest sample is below this is silent
CLIP_LEVEL = 0.999          # a run of CLIP_RUN samples at the file's peak, at or above
CLIP_RUN = 3                # this, is clipping (flat tops), whatever the file's format;
# full scale itself, so that an export normalised to -0.1 dBFS is not taken for clipped
PITCH_TOLERANCE_CENTS = 100.0   # named and heard pitch: more than a semitone = a problem
DEFAULT_VELOCITY = 127
FIRST_ID = 1000             # instrument ids of sample instruments (GM programs: 0-255)


@dataclass
class Note:
    """One file to turn into a note. velocity: as named (MIDI 1-127); level: the trained
    velocity it maps to; how: where the pitch came from ("name", "map" or "heard")."""
    path: Path
    rel: str
    instrument: str
    pitch: int | None
    velocity: int
    how: str
    level: int = 0
    audio: np.ndarray | None = None


@dataclass
class Report:
    """What a build found: problems and notes per file (one line each), and counts."""
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    ignored: list = field(default_factory=list)


class SamplesError(DatasetError):
    """Files with problems; `problems` holds one line per file."""

    def __init__(self, message: str, problems: list):
        super().__init__(message)
        self.problems = problems


def instrument_name(text: str) -> str:
    """A folder name or file-name prefix -> an instrument_str ([a-z0-9_])."""
    return sfr.sanitise(text)


def check_rate(sample_rate: int) -> None:
    """DatasetError unless the notes' rate is one a dataset may have (build.SAMPLE_RATES)."""
    if sample_rate not in SAMPLE_RATES:
        raise DatasetError(f"--sample-rate {sample_rate} is not supported; use the model's "
                           f"rate, one of {', '.join(map(str, SAMPLE_RATES))} Hz (16000 for "
                           "the shipped models)")


def nearest_level(velocity: int) -> int:
    """MIDI velocity -> the nearest of NSynth's trained levels (25, 50, 75, 100, 127)."""
    return min(sfr.VELOCITIES, key=lambda v: abs(v - velocity))


def read_map(path, root: Path) -> dict:
    """A CSV map (header: file, pitch[, velocity][, instrument]) -> resolved path ->
    {pitch, velocity, instrument}; DatasetError naming the row for a bad value."""
    path = Path(path)
    try:  # a regular file, bounded: a FIFO or /dev/zero as --map is named, not read
        text = read_bytes(path, "a CSV map", 64 << 20, DatasetError).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"--map {path}: cannot read it ({exc.__class__.__name__}); "
                           "pass a UTF-8 CSV file with columns file,pitch,velocity,instrument")
    rows = list(csv.DictReader(text.splitlines()))
    columns = {c.strip().lower() for c in (rows[0].keys() if rows else [])}
    if not {"file", "pitch"} <= columns:
        raise DatasetError(f"--map {path}: needs a header row with at least the columns "
                           f"file,pitch (optional velocity,instrument); got {sorted(columns)}")
    out = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        where = f"--map {path} line {line}"
        pitch = parse_pitch(row["pitch"]) if row["pitch"] else None
        if row["pitch"] and pitch is None:
            raise DatasetError(f"{where}: pitch {row['pitch']!r} is neither a MIDI number "
                               "0-127 nor a note name like C#4")
        velocity = None
        if row.get("velocity"):
            if not row["velocity"].isdigit() or not 1 <= int(row["velocity"]) <= 127:
                raise DatasetError(f"{where}: velocity {row['velocity']!r} is not a MIDI "
                                   "velocity 1-127")
            velocity = int(row["velocity"])
        target = (root / row["file"]).resolve()
        if not row["file"] or not target.is_file() or not target.is_relative_to(root.resolve()):
            raise DatasetError(f"{where}: file {row['file']!r} is not in {root}; give its "
                               "path relative to --samples")
        out[target] = {"pitch": pitch, "velocity": velocity,
                       "instrument": instrument_name(row["instrument"]) if row.get("instrument")
                       else None}
    return out


def plan(root, instrument=None, mapping=None, skip=None) -> tuple[list[Note], Report]:
    """The notes to build: every audio file under `root` (none under folder `skip`: an
    --out inside it), with what its name (or the map) says. Instruments: `instrument`
    for all, else the first-level folder a file is in, else its name's prefix, else the
    folder's own name."""
    root = Path(root)
    report = Report()
    notes = []
    skip = Path(skip).resolve() if skip else None
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if skip and path.resolve().is_relative_to(skip):
            continue
        rel = path.relative_to(root).as_posix()
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_SUFFIXES:
            report.ignored.append(rel)
            continue
        parsed = parse_name(path.stem)
        given = (mapping or {}).get(path.resolve(), {})
        if given.get("instrument"):
            name = given["instrument"]
        elif instrument:
            name = instrument_name(instrument)
        elif len(Path(rel).parts) > 1:
            name = instrument_name(Path(rel).parts[0])
        else:
            name = instrument_name(parsed.prefix or root.resolve().name)
        pitch, how = parsed.pitch, "name"
        if given.get("pitch") is not None:
            pitch, how = given["pitch"], "map"
        velocity = given.get("velocity") or parsed.velocity
        if pitch is None:
            how = "heard"
        notes.append(Note(path, rel, name, pitch, velocity or DEFAULT_VELOCITY, how))
        if velocity is None:
            report.notes.append(f"{rel}: no velocity in the name; taken as {DEFAULT_VELOCITY}")
    return notes, report


def read_audio(path: Path, rate: int) -> tuple[np.ndarray | None, str | None]:
    """(mono float32 at `rate`, None) or (None, what is wrong with the file)."""
    try:
        wave, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors and numpy's on odd files alike
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        return None, (f"unreadable ({first[:120]}); re-export it as WAV or FLAC")
    if len(wave) == 0:
        return None, "unreadable (no audio frames); re-export it"
    if not np.isfinite(wave).all():
        return None, "holds NaN or infinite samples; re-export it"
    peak = float(np.abs(wave).max())
    if peak < 10 ** (SILENT_DBFS / 20):
        level = 20 * math.log10(peak) if peak > 0 else -math.inf
        return None, f"silent (peak {level:.0f} dBFS); remove it or export the note louder"
    clipped = _clipped_runs(wave, peak)
    if clipped:
        return None, (f"clipped ({clipped} flat tops at {peak:.3f} full scale); export it "
                      "with less gain")
    mono = wave.mean(axis=1)
    if file_rate != rate:
        mono = soxr.resample(mono, file_rate, rate, quality="HQ").astype(np.float32)
    return mono, None


def _clipped_runs(wave: np.ndarray, peak: float) -> int:
    """Runs of CLIP_RUN or more consecutive samples at the peak (a flat top), if the
    peak is at or near full scale; 0 otherwise. wave: (L, channels)."""
    if peak < CLIP_LEVEL:
        return 0
    at = np.abs(wave) >= peak * 0.9999
    runs = 0
    for ch in at.T:
        edges = np.diff(np.concatenate([[0], ch.astype(np.int8), [0]]))
        lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        runs += int(np.sum(lengths >= CLIP_RUN))
    return runs


def shape_note(wave: np.ndarray, rate: int) -> np.ndarray:
    """A sample -> a 4-second note as NSynth's: from its onset (PRE_ONSET_S before the
    first sample within ONSET_DB of the peak), held 3 s, a raised-cosine fade to zero
    over the 4th second, zero-padded if shorter (ending on a short fade).

    Args:
        wave: (L,) float32 at `rate` Hz, not silent.
    Returns:
        (4 * rate,) float32.
    """
    peak = float(np.abs(wave).max())
    first = int(np.flatnonzero(np.abs(wave) >= peak * 10 ** (ONSET_DB / 20))[0])
    start = max(0, first - int(PRE_ONSET_S * rate))
    total, hold = NOTE_SECONDS * rate, HOLD_SECONDS * rate
    note = np.zeros(total, np.float32)
    seg = wave[start:start + total]
    note[:len(seg)] = seg
    fade = 0.5 * (1 + np.cos(np.pi * np.arange(total - hold) / (total - hold)))
    note[hold:] *= fade.astype(np.float32)
    if len(seg) < total:
        n = min(len(seg), int(END_FADE_S * rate))
        note[len(seg) - n:len(seg)] *= np.linspace(1, 0, n, dtype=np.float32)
    return note


def heard_pitch(wave: np.ndarray, rate: int, pitch: int | None = None) -> float:
    """Median f0 (Hz) pyin hears in the note's sustained part, nan for none.

    With `pitch`, pyin searches about an octave around it (`data.pitch.track_pitch`);
    without, it searches C1 (32.7 Hz) to B5 (988 Hz), then around C7 if nothing was heard
    or the answer lies at the top of that range (YIN needs a period of many samples).
    """
    try:
        import librosa
    except ImportError:
        raise DatasetError("hearing a sample's pitch needs librosa (pip install "
                           "'singsynth[eval]'); or name every file's pitch and pass "
                           "--no-pitch-check") from None
    from singsynth.data.pitch import track_pitch

    if pitch is not None:
        return track_pitch(wave, pitch, rate)
    y = wave[int(0.2 * rate):int(2.5 * rate)]
    if len(y) >= 2048:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f0, voiced, _ = librosa.pyin(y, fmin=32.7, fmax=min(988.0, rate / 16), sr=rate,
                                         frame_length=2048)
        if voiced.mean() >= 0.1:
            f = float(np.nanmedian(f0[voiced]))
            if f < 0.9 * min(988.0, rate / 16):
                return f
    return track_pitch(wave, 96, rate)


def _hz_to_midi(f0: float) -> float:
    return 69 + 12 * math.log2(f0 / 440.0)


def analyse(note: Note, rate: int, check_pitch: bool = True) -> tuple[str | None, str | None]:
    """Read, check and shape one note in place (note.audio, note.pitch, note.level);
    returns (problem, remark), each one line or None."""
    wave, problem = read_audio(note.path, rate)
    if problem:
        return problem, None
    note.audio = shape_note(wave, rate)
    note.level = nearest_level(note.velocity)
    if note.pitch is None:
        f0 = heard_pitch(note.audio, rate)
        if not f0 == f0:
            return ("no pitch in the name and none heard; name it like Cello_G3_v100.wav "
                    "or give its pitch in --map"), None
        note.pitch = int(round(_hz_to_midi(f0)))
        if not 0 <= note.pitch <= 127:
            return f"pyin hears {f0:.1f} Hz, outside MIDI 0-127; give its pitch in --map", None
        return None, (f"no pitch in the name; pyin hears {f0:.1f} Hz -> "
                      f"{midi_to_note(note.pitch)} ({note.pitch})")
    if check_pitch:
        f0 = heard_pitch(note.audio, rate, note.pitch)
        if f0 == f0:
            off = 1200 * math.log2(f0 / (440.0 * 2 ** ((note.pitch - 69) / 12)))
            if abs(off) > PITCH_TOLERANCE_CENTS:
                heard = round(_hz_to_midi(f0))
                return (f"the {note.how} says {midi_to_note(note.pitch)} ({note.pitch}) but "
                        f"pyin hears {f0:.1f} Hz ({midi_to_note(heard)}, {off:+.0f} cents); "
                        "fix the name or give its pitch in --map"), None
    return None, None


def duplicates(notes: list[Note]) -> dict:
    """id(note) -> problem for every note whose (instrument, pitch, level) another note
    also has; the one whose named velocity is nearest the level is kept."""
    groups: dict = {}
    for n in notes:
        groups.setdefault((n.instrument, n.pitch, n.level), []).append(n)
    out = {}
    for (inst, pitch, level), group in groups.items():
        if len(group) < 2:
            continue
        keep = min(group, key=lambda n: (abs(n.velocity - level), n.rel))
        for n in group:
            if n is not keep:
                out[id(n)] = (f"same key and velocity as {keep.rel} ({inst}, "
                              f"{midi_to_note(pitch)}, velocity {n.velocity} -> level {level} "
                              f"of {'/'.join(map(str, sfr.VELOCITIES))}); keep one, or give each "
                              "its own velocity level in its name or --map")
    return out


def example_entry(name: str, ident: int, note: Note, rate: int) -> dict:
    """NSynth examples.json fields of one note (the integer "note" id is set at merge)."""
    key = f"{name}-{note.pitch:03d}-{note.level:03d}"
    return {"note_str": key, "instrument": ident, "instrument_str": name,
            "pitch": note.pitch, "velocity": note.level, "sample_rate": rate,
            "qualities": [0] * 10, "qualities_str": [], "source_file": note.rel,
            "source_velocity": note.velocity, "pitch_from": note.how}


def _check_out(out: Path, force: bool) -> None:
    """Refuse an `out` that is not ours to replace (as `build._prepare_out` does)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; give a folder for the dataset")
    if out.exists() and any(out.iterdir()):
        if not (out / PARTS / SETTINGS).is_file():
            raise DatasetError(f"{out} exists and is not a dataset singsynth built (no "
                               f"{PARTS}/{SETTINGS}); choose another --out (-f replaces "
                               "only singsynth's own builds)")
        if not force:
            raise DatasetError(f"{out} already holds a dataset; pass -f to replace it or "
                               "choose another --out")


def build_samples(samples, out, instrument=None, map_file=None, sample_rate=16000,
                  force=False, skip_bad=False, check_pitch=True, progress=True) -> dict:
    """Build a dataset in `out` from the audio files in folder `samples`.

    Args:
        instrument: one instrument name for every file (else by folder or name prefix).
        map_file: CSV (file, pitch[, velocity][, instrument]) for names that say nothing.
        sample_rate: the model's rate in Hz; notes are 4 * sample_rate samples.
        skip_bad: build from the good files and list the others, instead of refusing.
    Returns:
        {"notes", "instruments", "problems": [line], "remarks": [line], "ignored": [rel]}.
    Raises:
        SamplesError (with `.problems`) if a file has a problem and not skip_bad;
        DatasetError for a bad folder, map or option.
    """
    samples, out = Path(samples), Path(out)
    if not samples.is_dir():
        raise DatasetError(f"--samples {samples} is not a folder; give the folder that "
                           "holds the sample files")
    check_rate(sample_rate)
    _check_out(out, force)
    mapping = read_map(map_file, samples) if map_file else None
    notes, report = plan(samples, instrument, mapping, skip=out)
    if not notes:
        raise DatasetError(f"--samples {samples} holds no audio files ("
                           f"{', '.join(AUDIO_SUFFIXES)}); point it at the sample folder")
    from tqdm import tqdm
    problems, remarks = {}, list(report.notes)
    for n in tqdm(notes, unit="file", disable=not progress, file=sys.stderr, leave=False):
        problem, remark = analyse(n, sample_rate, check_pitch)
        if problem:
            problems[id(n)] = problem
        if remark:
            remarks.append(f"{n.rel}: {remark}")
    good = [n for n in notes if id(n) not in problems]
    problems.update(duplicates(good))
    lines = [f"{n.rel}: {problems[id(n)]}" for n in notes if id(n) in problems]
    keep = [n for n in notes if id(n) not in problems]
    if lines and not skip_bad:
        raise SamplesError(f"{len(lines)} of {len(notes)} sample files have problems; fix "
                           "them, or pass --skip-bad to build without those files", lines)
    if not keep:
        raise SamplesError(f"none of the {len(notes)} sample files is usable", lines)
    _write(out, keep, sample_rate, force, {"samples": str(samples.resolve()),
                                           "sample_rate": sample_rate, "format": 1})
    return {"notes": len(keep), "instruments": len({n.instrument for n in keep}),
            "problems": lines, "remarks": remarks, "ignored": report.ignored}


def _write(out: Path, notes: list[Note], rate: int, force: bool, settings: dict) -> None:
    """Write the dataset into a temporary folder beside `out`, then move it into place."""
    # A fresh folder (mkdtemp), never a predictable name a planted link could redirect.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.", suffix=".partial", dir=out.parent))
    make_public(tmp)
    try:
        (tmp / "audio").mkdir(parents=True)
        (tmp / PARTS).mkdir()
        _write_json(tmp / PARTS / SETTINGS, settings)
        names = sorted({n.instrument for n in notes})
        examples = {}
        for ident, name in enumerate(names, start=FIRST_ID):
            mine = [n for n in notes if n.instrument == name]
            audio = np.stack([n.audio for n in mine])
            gain = sfr.instrument_gain(audio, [n.level for n in mine])
            for n, wave in zip(mine, audio):
                entry = example_entry(name, ident, n, rate)
                sf.write(str(tmp / "audio" / f"{entry['note_str']}.wav"), wave * gain, rate,
                         subtype="PCM_16", format="WAV")
                examples[entry["note_str"]] = entry
        _write_json(tmp / PARTS / "samples.json", {"examples": examples, "dropped": {}})
        merge(tmp)
        if out.exists():
            if force:
                shutil.rmtree(out)
            else:
                out.rmdir()  # empty (checked in _check_out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
