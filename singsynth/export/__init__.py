"""`singsynth export`: a model's instrument as a SoundFont 2 (.sf2) or SFZ for any sampler.

`export_file` resolves the model, preset and instrument, generates one note per (pitch,
velocity layer) through the on-disk note cache render uses (`notes.build_bank`), writes
the file through a temporary name in the output folder and renames it at the end, so a
failure leaves nothing behind. An .sf2 is read back and checked before it is renamed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from singsynth.errors import ConfigError, SingsynthError
from singsynth.export.notes import Part, build_bank
from singsynth.files import atomic_path, finishing, make_public, os_error_line, shown
from singsynth.notes import TRAINED_VELOCITIES

DEFAULT_PITCHES = (21, 108)           # the 88 keys of a piano
DEFAULT_VELOCITIES = TRAINED_VELOCITIES  # the velocities the models are trained at
KINDS = (".sf2", ".sfz")


@dataclass
class ExportReport:
    """What an export did; `summary()` is the line the CLI prints."""

    output: str
    instruments: int = 0
    samples: int = 0
    regions: int = 0
    notes: int = 0
    notes_from_disk: int = 0
    sample_rate: int = 0
    bytes: int = 0
    generate_seconds: float = 0.0
    write_seconds: float = 0.0

    def summary(self) -> str:
        return (f"exported {self.instruments} instrument{'s' * (self.instruments != 1)} -> "
                f"{self.output}: {self.regions} regions, {self.samples} samples at "
                f"{self.sample_rate} Hz, {self.bytes / 2**20:.1f} MiB; {self.notes} notes "
                f"({self.notes_from_disk} from the disk cache) in {self.generate_seconds:.1f} s, "
                f"written in {self.write_seconds:.1f} s")


def parse_pitches(text: str) -> tuple:
    """'LO-HI' (or one pitch) -> (lo, hi) MIDI pitches; SingsynthError with one line."""
    try:
        lo, _, hi = str(text).partition("-")
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        lo = hi = -1
    if not 0 <= lo <= hi <= 127:
        raise SingsynthError(f"--pitches {text}: give LO-HI, MIDI pitches 0-127 with LO <= HI "
                             "(e.g. 21-108)")
    return lo, hi


def parse_velocities(text) -> tuple:
    """'25,50,75,100,127' -> ascending distinct MIDI velocities 1-127; one-line error."""
    try:
        vels = tuple(sorted({int(v) for v in str(text).split(",") if v.strip()}))
    except ValueError:
        vels = ()
    if not vels or not all(1 <= v <= 127 for v in vels) or len(vels) > 127:
        raise SingsynthError(f"--velocities {text}: give MIDI velocities 1-127 separated by "
                             "commas (e.g. 25,50,75,100,127)")
    return vels


def parse_instrument(text: str, instruments: Sequence[str]):
    """A name, an index or a blend 'piano:0.7,organ:0.3' -> a normalised Blend."""
    from singsynth.presets import parse_blend

    text = str(text).strip()
    if ":" in text or "," in text:
        value = {}
        for item in text.split(","):
            name, _, weight = item.partition(":")
            try:
                value[name.strip()] = float(weight or 1)
            except ValueError:
                raise ConfigError(f"--instrument {text}: weight {weight!r} is not a number; "
                                  "write a blend as name:weight,name:weight") from None
    else:
        value = int(text) if text.isdigit() else text
    return parse_blend("--instrument", "instrument", value, instruments)


def open_source(model, cache_dir, use_cache: bool, source=None):
    """The model's NoteSource, behind the disk cache render uses (unless `use_cache` is off)."""
    from singsynth.generation.diskcache import DiskCachedSource
    from singsynth.model.files import open_source

    if source is None:
        source = open_source(model)
    return DiskCachedSource(source, cache_dir) if use_cache else source


def make_parts(preset_obj, *, program: Optional[int], instrument: Optional[str],
               all_programs: bool, name: Optional[str]) -> list:
    """The instruments to export, as `Part`s (see `notes.Part`)."""
    from singsynth.presets import Preset

    if all_programs:
        return [Part(preset_obj, p, f"{p:03d} {_short(preset_obj, p)}"[:20], 0)
                for p in range(128)]
    if instrument is not None:
        blend = parse_instrument(instrument, preset_obj.instruments)
        own = Preset(preset_obj.name, preset_obj.instruments,
                     replace(preset_obj.defaults, instrument=blend))
        label = name or "+".join(preset_obj.instruments[i] for i, _ in blend)
        return [Part(own, 0, label[:20])]
    program = 0 if program is None else int(program)
    return [Part(preset_obj, program, (name or _short(preset_obj, program))[:20])]


def _short(preset_obj, program: int) -> str:
    """The instrument name(s) a program plays, for a preset name."""
    blend = preset_obj.patch(0, program).instrument
    return "+".join(preset_obj.instruments[i] for i, _ in blend)


def export_file(output, *, model=None, preset=None, program: Optional[int] = None,
                instrument: Optional[str] = None, all_programs: bool = False,
                pitches=DEFAULT_PITCHES, velocities=DEFAULT_VELOCITIES,
                sample_rate: Optional[int] = None, sample_format: str = "flac",
                name: Optional[str] = None, cache_dir=None, use_cache: bool = True,
                overwrite: bool = False, progress: bool = False, source=None) -> ExportReport:
    """Export one instrument (or, for .sf2, every program of a preset) to `output`.

    Args:
        output: path ending in .sf2 or .sfz; an .sfz gets its samples in NAME_samples/.
        program: the preset's program to export (default 0); or `instrument`: a name,
            index or blend 'a:0.7,b:0.3', played with the preset's default settings.
        all_programs: .sf2 only: one preset per program 0-127 in bank 0.
        pitches: (lo, hi) MIDI pitches, one sample per pitch and layer.
        velocities: layer velocities, MIDI 1-127.
        sample_rate: Hz of the samples (None: the model's own rate).
        sample_format: "flac" or "wav", for an .sfz's samples.
        source: any NoteSource instead of the model (tests).
    Raises:
        SingsynthError with one line; nothing is left at `output` then.
    """
    out = Path(output)
    kind = out.suffix.lower()
    if kind not in KINDS:
        raise SingsynthError(f"cannot export to {shown(out)}: name the output .sf2 (SoundFont) "
                             "or .sfz")
    if (program is not None) + (instrument is not None) + bool(all_programs) > 1:
        raise SingsynthError("give one of --program, --instrument or --all-programs")
    if all_programs and kind != ".sf2":
        raise SingsynthError("--all-programs writes one SoundFont bank: name the output .sf2")
    if program is not None and not 0 <= int(program) <= 127:
        raise SingsynthError(f"--program {program} is out of range; give 0-127")
    if sample_format not in ("flac", "wav"):
        raise SingsynthError(f"--sample-format {sample_format}: choose flac or wav")
    if sample_rate is not None and not 8000 <= int(sample_rate) <= 192000:
        raise SingsynthError(f"--sample-rate {sample_rate} is out of range; use 8000-192000 Hz")
    lo, hi = pitches
    if not 0 <= int(lo) <= int(hi) <= 127:
        raise SingsynthError(f"--pitches {lo}-{hi}: give MIDI pitches 0-127 with LO <= HI")
    velocities = parse_velocities(",".join(str(v) for v in velocities))
    from singsynth.export.sfz import samples_folder
    folder = out.parent / samples_folder(out) if kind == ".sfz" else None
    for path in (out, folder):
        if path is not None and (path.exists() or path.is_symlink()) and not overwrite:
            raise SingsynthError(f"{shown(path)} already exists; pass -f to overwrite it")
    if out.is_dir():
        raise SingsynthError(f"{shown(out)} is a folder; give an output file name")
    if folder is not None and folder.exists() and not _only_samples(folder):
        raise SingsynthError(f"{shown(folder)} holds files other than samples; -f replaces only "
                             "a sample folder singsynth wrote: move it or choose another -o")
    if not out.parent.is_dir():
        raise SingsynthError(f"{shown(out.parent)}: no such folder; create it or choose another -o")

    report = ExportReport(str(out))
    t0 = time.perf_counter()
    custom = source is not None
    source = open_source(model, cache_dir, use_cache, source)
    preset_obj = choose_preset(preset, source.instruments, by_instrument=instrument is not None)
    parts = make_parts(preset_obj, program=program, instrument=instrument,
                       all_programs=all_programs, name=name)
    from singsynth.model.header import resolve
    origin = ("a custom note source" if custom
              else f"model {resolve(model).name} (sha256 {source.identity()})")
    bank = build_bank(parts, source, pitches=range(int(lo), int(hi) + 1), velocities=velocities,
                      sample_rate=sample_rate, name=(name or out.stem)[:200],
                      comment=f"exported by singsynth from {origin}, preset "
                              f"{preset_obj.name}", progress=progress)
    t1 = time.perf_counter()
    if kind == ".sf2":
        report.bytes = write_sf2_file(bank, out)
    else:
        report.bytes = write_sfz_files(bank, out, folder, sample_format)
    report.write_seconds = time.perf_counter() - t1
    report.generate_seconds = t1 - t0
    report.instruments = len(bank.instruments)
    report.samples = len(bank.samples)
    report.regions = sum(len(i.regions) for i in bank.instruments)
    report.notes = bank.notes
    report.notes_from_disk = getattr(source, "hits", 0)
    report.sample_rate = bank.sample_rate
    return report


def choose_preset(preset, instruments, by_instrument: bool):
    """The preset to export from: as named, else "gm" (as render), else "default".

    With --instrument the preset only lends its default settings (release, gain, curve),
    so a model the GM preset does not fit falls back to "default" silently; with
    --program the program must mean something, so the error says which preset to pass.
    """
    from singsynth.presets import PRESET_DIR, load_preset

    if preset is not None:
        return load_preset(preset, list(instruments))
    name = "gm" if (PRESET_DIR / "gm.yaml").is_file() else "default"
    try:
        return load_preset(name, list(instruments))
    except ConfigError as exc:
        if by_instrument:
            return load_preset("default", list(instruments))
        raise ConfigError(f"{exc} (the default preset {name!r} is made for the default model: "
                          "pass --instrument NAME, --preset default, or a preset naming this "
                          "model's instruments)") from None


def _only_samples(folder: Path) -> bool:
    """Whether `folder` holds only what an SFZ export writes there (audio files)."""
    try:
        return folder.is_dir() and not folder.is_symlink() and all(
            p.is_file() and p.suffix in (".flac", ".wav") for p in folder.iterdir())
    except OSError:
        return False


def write_sf2_file(bank, out: Path) -> int:
    """Write and check the .sf2 through a temporary file renamed at the end -> its bytes."""
    from singsynth.data.sf2 import read_soundfont
    from singsynth.export.sf2 import sf2_bytes

    try:
        data = sf2_bytes(bank)
    except ValueError as exc:
        raise SingsynthError(f"cannot export {shown(out)}: {exc}; export fewer pitches, "
                             "layers or programs") from None
    with atomic_path(out, SingsynthError) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
        sf = read_soundfont(tmp)  # the file as a player will read it
        if len(sf.presets) != len(bank.instruments) or len(sf.samples) != len(bank.samples):
            raise SingsynthError(f"{shown(out)}: the written SoundFont did not read back whole "
                                 "(a bug in singsynth's writer)")
    return len(data)


def write_sfz_files(bank, out: Path, folder: Path, ext: str) -> int:
    """Write the samples into a temporary folder and the .sfz into a temporary file, then
    rename both into place (the old sample folder, with -f, goes only once the new one is
    complete) -> bytes written."""
    import soundfile

    from singsynth.export.sfz import write_sfz

    staging = tmp = trash = None
    try:
        staging = tempfile.mkdtemp(prefix=f".{folder.name[:100]}.", suffix=".part", dir=out.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name[:100]}.", suffix=".part", dir=out.parent)
        os.close(fd)
        try:
            write_sfz(bank, tmp, staging, folder.name, ext)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise SingsynthError(f"cannot write the samples of {shown(out)}: {exc}") from None
        size = Path(tmp).stat().st_size + sum(p.stat().st_size for p in Path(staging).iterdir())
        for p in [Path(tmp), *Path(staging).iterdir()]:
            make_public(p)
        os.chmod(staging, 0o777 & ~_umask())
        with finishing():  # Ctrl-C or SIGTERM waits for both renames: never half an export
            if folder.exists():
                trash = tempfile.mkdtemp(prefix=f".{folder.name[:100]}.", suffix=".old",
                                         dir=out.parent)
                os.replace(folder, Path(trash) / "old")
            os.replace(staging, folder)
            staging = None
            os.replace(tmp, out)
            tmp = None
    except OSError as exc:
        raise SingsynthError(os_error_line(out, exc, "write")) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return size


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
