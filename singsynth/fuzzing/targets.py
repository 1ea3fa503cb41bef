"""What is fuzzed: each target makes a mutated input from its seeds and runs singsynth on
it, checking the properties that must hold whatever the input (see `fuzzing.run`).

A target's `make(rng, case, outside)` writes one input into the empty folder `case`; its
`check(case, outside)` runs the code a user's command would run on it and returns a short
word on success, raises SingsynthError when the input is refused, and `PropertyFailed`
when a property does not hold. `outside` is a folder the input must not write into.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from singsynth.files import shipped_dir
from singsynth.fuzzing.mutate import (INTERESTING_NUMBERS, dumps_raw, flip_bytes, interesting_json,
                                      mutate_json_value, mutate_yaml)
from singsynth.notes import TRAINED_VELOCITIES


class PropertyFailed(AssertionError):
    """A property that must hold for every input did not."""


def one_line(text: str, what: str) -> None:
    if not text.strip() or "\n" in text or "\r" in text:
        raise PropertyFailed(f"{what} is not one line: {text[:200]!r}")


class Target:
    """Base: `name`, `setup(folder)` once, then `make` and `check` per case."""

    name = ""
    # Names a case may create or change in its own folder (the rest is input, read-only).
    writes = ()

    def setup(self, folder: Path) -> None:
        pass

    def make(self, rng, case: Path, outside: Path) -> None:
        raise NotImplementedError

    def check(self, case: Path, outside: Path) -> str:
        raise NotImplementedError


# --- MIDI files -------------------------------------------------------------------------

INSTRUMENTS = ("piano", "organ", "guitar", "strings")
RENDER_PRESET = """name: fuzz
defaults: {instrument: piano, prewarm: null}
programs:
  40: {instrument: {strings: 0.7, organ: 0.3}, gain: 4.0}
channels:
  9: {instrument: guitar, gain: 4.0, pan: -1.0}
"""


def seed_songs() -> list:
    """Small standard MIDI files (bytes) covering what the reader handles: format 0 and 1,
    tempo changes, program changes, pedal, pitch bend with a wide RPN 0 range, sysex,
    drums, SMPTE timing, and a loud dense chord on every channel."""
    import mido

    def save(mid) -> bytes:
        buf = io.BytesIO()
        mid.save(file=buf)
        return buf.getvalue()

    songs = []
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=400_000),
                           mido.MetaMessage("set_tempo", tempo=700_000, time=192)])
    notes = mido.MidiTrack([mido.Message("program_change", program=40),
                            mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01]),
                            mido.Message("control_change", control=101, value=0),
                            mido.Message("control_change", control=100, value=0),
                            mido.Message("control_change", control=6, value=24)])
    for i, pitch in enumerate((60, 64, 67, 72)):
        notes += [mido.Message("note_on", note=pitch, velocity=30 + 30 * i, time=24),
                  mido.Message("control_change", control=64, value=127 * (i % 2)),
                  mido.Message("pitchwheel", pitch=8191 if i % 2 else -8192, time=12),
                  mido.Message("note_off", note=pitch, time=48)]
    drums = mido.MidiTrack([mido.Message("note_on", channel=9, note=36, velocity=127),
                            mido.Message("note_off", channel=9, note=36, time=96)])
    mid.tracks += [meta, notes, drums]
    songs.append(save(mid))
    loud = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack()
    for ch in range(16):
        track.append(mido.Message("program_change", channel=ch, program=40 * (ch % 2)))
        for pitch in range(48, 72, 3):
            track.append(mido.Message("note_on", channel=ch, note=pitch, velocity=127))
    track.append(mido.Message("note_off", channel=0, note=48, time=960))
    loud.tracks.append(track)
    songs.append(save(loud))
    smpte = bytearray(songs[0])
    smpte[12:14] = bytes([256 - 25, 40])   # 25 frames/s, 40 ticks a frame
    songs.append(bytes(smpte))
    return songs


class MidiTarget(Target):
    """The MIDI reader on mutated files; one case in `render_every` (chosen by its rng, so
    that a replay does the same) also renders the file if it parses, to a 32-bit float
    WAV with a sine source, checked sample by sample."""

    name = "midi"
    writes = ("out.wav",)

    def __init__(self, render_every: int = 2):
        self.render_every = render_every

    def setup(self, folder: Path) -> None:
        import singsynth.hosts.render

        self.seeds = seed_songs()
        self.preset = folder / "fuzz-preset.yaml"
        self.preset.write_text(RENDER_PRESET)

    def make(self, rng, case: Path, outside: Path) -> None:
        data = bytearray(rng.choice(self.seeds))
        if rng.random() < 0.1:                           # spliced with another song
            other = rng.choice(self.seeds)
            cut = rng.randrange(len(data))
            data[cut:] = other[rng.randrange(len(other)):]
        flip_bytes(rng, data, start=rng.choice((0, 14, 22)))
        (case / "song.mid").write_bytes(bytes(data))
        if rng.randrange(self.render_every) == 0:
            (case / "render").touch()

    def check(self, case: Path, outside: Path) -> str:
        from singsynth.hosts.midifile import read_midi

        song = read_midi(case / "song.mid")
        if not (math.isfinite(song.duration) and song.duration >= 0):
            raise PropertyFailed(f"song duration {song.duration!r}")
        for line in song.warnings:
            one_line(line, "a reader warning")
        return self.render(case) if (case / "render").exists() else "parsed"

    def render(self, case: Path) -> str:
        import soundfile

        from singsynth.generation.testing import SineSource
        from singsynth.hosts.render import render_file

        warnings = []
        render_file(case / "song.mid", case / "out.wav", preset=str(self.preset),
                    sample_rate=16000, tail=0.5, max_duration=12.0, use_cache=False,
                    progress=False, bits="32f", warn=warnings.append,
                    source=SineSource(INSTRUMENTS, sample_rate=16000, note_samples=16000))
        for line in warnings:
            one_line(line, "a render warning")
        audio, _ = soundfile.read(str(case / "out.wav"), dtype="float32", always_2d=True)
        if not np.isfinite(audio).all():
            raise PropertyFailed("the render holds NaN or infinite samples")
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak >= 0.999:
            raise PropertyFailed(f"the render reaches full scale (peak {peak:.4f})")
        return "rendered"


# --- presets and training configs -------------------------------------------------------

def _uncommented(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


class PresetTarget(Target):
    """The preset loader on mutated YAML; a preset that loads must give sane patches."""

    name = "preset"

    def setup(self, folder: Path) -> None:
        texts = [(shipped_dir("presets") / f).read_text() for f in ("default.yaml", "gm.yaml")]
        names = sorted(set(re.findall(r"instrument: (\w+)", texts[1])))
        self.instruments = names + list(INSTRUMENTS)
        self.seeds = [_uncommented(t) for t in texts] + [RENDER_PRESET, """name: every key
description: all of them
defaults: {instrument: 1, gain: 0.5, pan: -0.25, release: 0.01, velocity_curve: soft,
           transpose: -12, prewarm: [40, 50]}
programs:
  0: {instrument: {piano: 1, organ: 3}, velocity_curve: 1.5}
  127: {prewarm: null, gain: 0}
channels:
  15: {instrument: strings, transpose: 48}
"""]

    def make(self, rng, case: Path, outside: Path) -> None:
        (case / "p.yaml").write_bytes(mutate_yaml(rng, rng.choice(self.seeds)))

    def check(self, case: Path, outside: Path) -> str:
        from singsynth.presets import load_preset

        preset = load_preset(str(case / "p.yaml"), self.instruments)
        str(preset.name)
        for channel in range(16):
            for program in {0, 40, 127, *preset.programs}:
                p = preset.patch(channel, program)
                weights = [w for _, w in p.instrument]
                if (not all(0 <= i < len(self.instruments) for i, _ in p.instrument)
                        or not math.isclose(sum(weights), 1.0, abs_tol=1e-4)):
                    raise PropertyFailed(f"patch {channel}/{program}: blend {p.instrument}")
                for key, low, high in (("gain", 0, 4), ("pan", -1, 1), ("release", 0, 10),
                                       ("velocity_curve", 0, 10), ("transpose", -48, 48)):
                    if not low <= getattr(p, key) <= high:
                        raise PropertyFailed(f"patch {channel}/{program}: {key} "
                                             f"{getattr(p, key)!r}")
        preset.prewarm_patches()
        return "loaded"


class ConfigTarget(Target):
    """The training-config loader (YAML and --set overrides) on mutated YAML."""

    name = "config"

    def setup(self, folder: Path) -> None:
        import singsynth.train.config  # noqa: F401  (imports torch: not in the first case's time)

        self.seeds = [_uncommented(p.read_text())
                      for p in sorted(shipped_dir("configs").glob("*.yaml"))]

    def make(self, rng, case: Path, outside: Path) -> None:
        (case / "c.yaml").write_bytes(mutate_yaml(rng, rng.choice(self.seeds)))
        if rng.random() < 0.3:                            # a --set override too
            key = rng.choice(("ae.lr", "e2e.ffts", "lstm.epochs", "model", "ae.crop", "seed"))
            value = mutate_yaml(rng, "x: 1").decode("utf-8", "replace").partition(": ")[2]
            (case / "override").write_text(f"{key}={value.strip()}")

    def check(self, case: Path, outside: Path) -> str:
        from singsynth.train.config import load_config

        override = case / "override"
        sets = [override.read_text()] if override.exists() else []
        cfg = load_config(case / "c.yaml", sets)
        for stage in (cfg.ae, cfg.lstm, cfg.e2e):
            if not (math.isfinite(stage.lr) and stage.lr > 0 and stage.batch >= 1):
                raise PropertyFailed(f"stage lr {stage.lr!r} batch {stage.batch!r}")
        return "loaded"


# --- checkpoints ------------------------------------------------------------------------

# Config sizes, together: the length arithmetic must be refused or whole.
LENGTHS = ({"stride": 1, "window": 1}, {"stride": 256, "window": 512},
           {"stride": 128, "window": 512}, {"kernel": 1}, {"kernel": 2, "stride": 125},
           {"note_samples": 256}, {"note_samples": 63744}, {"sample_rate": 1000})


class CheckpointTarget(Target):
    """The checkpoint header reader and loader on mutated files (a tiny model's header,
    tensor table and bytes); a model that loads must generate a whole, finite note
    (checked for every model whose config differs from the seed's, and in one case in
    `generate_every` for the others)."""

    name = "checkpoint"

    def __init__(self, generate_every: int = 10):
        self.generate_every = generate_every

    def setup(self, folder: Path) -> None:
        import torch

        from singsynth.model.checkpoint import save_model
        from singsynth.model.sing import build

        torch.manual_seed(0)
        path = folder / "seed.safetensors"
        model = build("tiny", list(INSTRUMENTS))
        self.config = model.config
        save_model(path, model, {"stage": "fuzz seed"})
        self.seed = path.read_bytes()
        size = int.from_bytes(self.seed[:8], "little")
        self.header = json.loads(self.seed[8:8 + size])
        self.body = self.seed[8 + size:]

    def make(self, rng, case: Path, outside: Path) -> None:
        if rng.randrange(self.generate_every) == 0:
            (case / "generate").touch()
        op = rng.random()
        if op < 0.35:                                    # bytes anywhere
            data = bytearray(self.seed)
            flip_bytes(rng, data, start=rng.choice((0, 8, len(data) // 2)))
        else:
            header = json.loads(json.dumps(self.header))
            meta = header["__metadata__"]
            if op < 0.5:                                 # sizes changed together
                config = json.loads(meta["config"])
                config.update(rng.choice(LENGTHS))
                meta["config"] = json.dumps(config)
                if rng.random() < 0.5 and self._rebuilt(rng, config, case):
                    return
            elif op < 0.8:                               # a metadata field
                key = rng.choice(sorted(meta))
                try:
                    value = json.loads(meta[key])
                except ValueError:
                    value = meta[key]
                meta[key] = dumps_raw(mutate_json_value(rng, value))
            else:                                        # the tensor table
                name = rng.choice(sorted(k for k in header if k != "__metadata__"))
                header[name] = mutate_json_value(rng, header[name])
            text = dumps_raw(header).encode("utf-8")
            text += b" " * (-len(text) % 8)
            length = len(text) if rng.random() < 0.9 else rng.choice(INTERESTING_NUMBERS[:15])
            data = (int(length) % 2 ** 64).to_bytes(8, "little") + text + self.body
        (case / "model.safetensors").write_bytes(bytes(data))

    def _rebuilt(self, rng, config: dict, case: Path) -> bool:
        """Save a whole model of the sizes `config` gives, weights to match (so that the
        tensor shapes pass), as a hostile file would be made; False if SING refuses."""
        import torch

        from singsynth.model.checkpoint import save_model
        from singsynth.model.config import SINGConfig
        from singsynth.model.sing import SING

        with torch.random.fork_rng():
            torch.manual_seed(rng.randrange(2 ** 31))
            try:  # SING's constructor does not check its config: the loader must
                model = SING(SINGConfig(**config), list(INSTRUMENTS), list(TRAINED_VELOCITIES),
                             n_pitches=128)
            except Exception:
                return False
        save_model(case / "model.safetensors", model)
        return True

    def check(self, case: Path, outside: Path) -> str:
        import torch

        from singsynth.model.checkpoint import load_checkpoint
        from singsynth.model.files import open_source

        path = case / "model.safetensors"
        open_source(path)            # the header read that live play does first
        model, _ = load_checkpoint(path)
        if model.config == self.config and not (case / "generate").exists():
            return "loaded"
        # One thread: with two, on this project's busy 2-core VM, the tiny LSTM's OpenMP
        # workers waited on each other for 2-4 s a note (0.03 s with one).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                note = model.generate(torch.tensor([0]), torch.tensor([60]), torch.tensor([2.0]))
        finally:
            torch.set_num_threads(threads)
        expected = (1, model.config.note_samples)
        if tuple(note.shape[:2]) != expected and tuple(note.shape) != expected:
            raise PropertyFailed(f"a loaded model made a note of shape {tuple(note.shape)}, "
                                 f"not {expected}")
        if not torch.isfinite(note).all():
            raise PropertyFailed("a loaded model made NaN or infinite samples")
        return "generated"


# --- datasets ---------------------------------------------------------------------------

def _note_wav(pitch: int, dtype="PCM_16", rate=16000, channels=1, scale=0.5,
              frames=64000) -> bytes:
    import soundfile

    t = np.arange(frames) / rate
    with np.errstate(invalid="ignore"):                # inf * sin(0) is NaN: fine here
        wave = (scale * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t)).astype(np.float32)
    if channels > 1:
        wave = np.repeat(wave[:, None], channels, axis=1)
    buf = io.BytesIO()
    soundfile.write(buf, wave, rate, subtype=dtype, format="WAV")
    return buf.getvalue()


class DatasetTarget(Target):
    """The dataset reader (`dataset check`, `dataset info`, NSynthDataset) on mutated
    folders: examples.json, split.json and the WAVs."""

    name = "dataset"
    writes = ("split.json",)

    def setup(self, folder: Path) -> None:
        import singsynth.data.report  # noqa: F401  (imports torch: not in the first case's time)

        self.examples = {}
        self.wavs = {}
        for inst, (name, pitches) in enumerate((("bass_synthetic_000", (40, 45, 52)),
                                                ("keyboard_acoustic_001", (60, 64)))):
            for pitch in pitches:
                key = f"{name}-{pitch:03d}-100"
                self.examples[key] = {
                    "note_str": key, "instrument": inst, "instrument_str": name,
                    "pitch": pitch, "velocity": 100, "sample_rate": 16000,
                    "instrument_family": inst, "instrument_family_str": name.split("_")[0],
                    "instrument_source": 1, "qualities": [0] * 10}
                self.wavs[key] = _note_wav(pitch)
        from singsynth.data.split import make_split
        self.split = make_split({name: {e["pitch"] for e in self.examples.values()
                                        if e["instrument_str"] == name}
                                 for name in {e["instrument_str"] for e in self.examples.values()}})

    def make(self, rng, case: Path, outside: Path) -> None:
        examples = json.loads(json.dumps(self.examples))
        wavs = dict(self.wavs)
        split = None
        extra = []
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(9)
            if op <= 1:
                examples = mutate_json_value(rng, examples)
            elif op == 2 and isinstance(examples, dict) and examples:
                old = rng.choice(sorted(examples))
                new = str(interesting_json(rng) if rng.random() < 0.5 else
                          rng.choice(("../escape", "a/b", ".x", "", "x" * 300, "é\x1b[2J")))
                examples[new.lstrip("\0")] = examples.pop(old)
                wavs[new.lstrip("\0")] = wavs.pop(old, b"")
            elif op == 3 and wavs:
                key = rng.choice(sorted(wavs))
                data = bytearray(wavs[key])
                flip_bytes(rng, data, start=rng.choice((0, 4, 12, 20, 36, 40)))
                wavs[key] = bytes(data)
            elif op == 4 and wavs:
                key = rng.choice(sorted(wavs))
                wavs[key] = _note_wav(60, **rng.choice((
                    {"rate": 44100}, {"channels": 2}, {"frames": 100}, {"frames": 64001},
                    {"dtype": "PCM_U8"}, {"dtype": "DOUBLE"},
                    {"dtype": "FLOAT", "scale": float(rng.choice(("nan", "inf", "10")))})))
            elif op == 5:
                split = dumps_raw(mutate_json_value(rng, self.split))
            elif op == 6:
                split = json.dumps(self.split)
            elif op == 7:
                extra.append(rng.choice(("stray.wav", "dir.wav/")))
            else:
                extra.append(rng.choice(("symlink", "special-files", "sparse-wav")))
        (case / "audio").mkdir()
        (case / "examples.json").write_text(dumps_raw(examples), encoding="utf-8",
                                            errors="surrogateescape")
        for key, data in wavs.items():
            try:
                (case / "audio" / f"{key}.wav").write_bytes(data)
            except (OSError, ValueError):
                pass                                   # a name the file system refuses
        if split is not None:
            (case / "split.json").write_text(split)
        for thing in extra:
            self._plant(rng, thing, case, outside / "victim.txt")

    def _plant(self, rng, thing: str, case: Path, victim: Path) -> None:
        audio = case / "audio"
        some = audio / f"{rng.choice(sorted(self.wavs))}.wav"
        if thing == "stray.wav":
            (audio / "stray.wav").write_bytes(self.wavs[next(iter(self.wavs))])
        elif thing == "dir.wav/":
            (audio / "dir.wav").mkdir(exist_ok=True)
        elif thing == "symlink":                       # a planted link must not be written through
            for name in ("split.json.tmp", "split.json"):
                if not os.path.lexists(case / name) and rng.random() < 0.7:
                    os.symlink(victim, case / name)
        elif thing == "special-files":
            some.unlink(missing_ok=True)
            if rng.random() < 0.5:
                os.symlink(rng.choice(("/dev/zero", "/dev/urandom")), some)
            else:
                os.mkfifo(some)
        elif thing == "sparse-wav":                    # a header claiming 400M samples
            data = bytearray(self.wavs[some.stem] if some.stem in self.wavs else _note_wav(60))
            claimed = 800_000_000
            data[4:8] = (claimed + 36).to_bytes(4, "little")
            data[40:44] = claimed.to_bytes(4, "little")
            some.unlink(missing_ok=True)               # it may be a link planted above
            with open(some, "wb") as f:
                f.write(data)
                f.truncate(claimed + 44)

    def check(self, case: Path, outside: Path) -> str:
        from singsynth.data.nsynth import NOTE_SAMPLES, NSynthDataset
        from singsynth.data.report import check, info

        for line in check(case):
            one_line(line, "a dataset check line")
        info(case)
        data = NSynthDataset(case, split="train")
        for i in range(min(2, len(data))):
            wave = data[i][3]
            if tuple(wave.shape) != (NOTE_SAMPLES,):
                raise PropertyFailed(f"note {i} has shape {tuple(wave.shape)}")
            if not bool(np.isfinite(wave.numpy()).all()):
                raise PropertyFailed(f"note {i} holds NaN or infinite samples")
        return "read"


TARGETS = {t.name: t for t in (MidiTarget, PresetTarget, ConfigTarget, CheckpointTarget,
                               DatasetTarget)}
