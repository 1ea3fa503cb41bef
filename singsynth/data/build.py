"""`singsynth dataset build`: render a SoundFont into DIR in NSynth's layout.

DIR/examples.json, DIR/audio/<note_str>.wav and DIR/split.json, as NSynth plus
the pitch-completion split. Resumable: each finished instrument leaves
DIR/.parts/<instrument_str>.json, and a re-run with the same settings skips it.
"""
import json
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from singsynth.data import soundfont as sfr
from singsynth.data.split import make_split, write_split
from singsynth.errors import DatasetError
from singsynth.files import read_bytes, write_atomic

PARTS = ".parts"
SETTINGS = "settings.json"
MAX_RENDER_RATE = 96000  # FluidSynth's highest synth.sample-rate
MAX_PART_BYTES = 256 << 20
# A dataset's note rate: 16 kHz as NSynth and the `paper` model; 32-48 kHz for full-band models.
SAMPLE_RATES = (16000, 32000, 44100, 48000)


def _write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def _read_json(path: Path):
    """A JSON file of a build in progress (a regular file of at most 256 MiB)."""
    data = read_bytes(path, "a part of a dataset build", MAX_PART_BYTES, DatasetError)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise DatasetError(f"{path} is damaged; pass -f to rebuild the dataset") from None


def _prepare_out(out: Path, settings: dict, force: bool) -> Path:
    """Create out/ (and out/.parts); refuse to mix with other settings unless force.

    `force` replaces only a dataset this builder made (out/.parts/settings.json): a
    folder holding anything else, a published NSynth copy included, is never deleted.
    """
    parts = out / PARTS
    old = parts / SETTINGS
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; give a folder for the dataset")
    ours = old.is_file()
    if out.exists() and not ours and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not a dataset singsynth is building or built "
                           f"(no {PARTS}/{SETTINGS}); choose another --out (-f replaces "
                           "only singsynth's own builds)")
    if force and ours:
        shutil.rmtree(parts, ignore_errors=True)
        shutil.rmtree(out / "audio", ignore_errors=True)
        for name in ("examples.json", "split.json"):
            (out / name).unlink(missing_ok=True)
    elif ours and _read_json(old) != settings:
        raise DatasetError(f"{out} was built with other settings ({old}); "
                           f"pass -f to rebuild it or choose another --out")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    parts.mkdir(exist_ok=True)
    _write_json(old, settings)
    return parts


def _undo_empty_build(out: Path, created: bool) -> None:
    """After a build that failed before finishing any instrument: remove what it made
    (its settings, partial audio, the folder if it made it), so a retry with other
    settings (another SoundFont) starts clean instead of being refused."""
    parts = out / PARTS
    if any(p.name != SETTINGS for p in parts.glob("*.json")):
        return  # finished instruments: keep them, a re-run resumes
    shutil.rmtree(parts, ignore_errors=True)
    shutil.rmtree(out / "audio", ignore_errors=True)
    if created:
        shutil.rmtree(out, ignore_errors=True)


def merge(out) -> tuple[dict, dict]:
    """Merge out/.parts/*.json into examples.json and write split.json.

    Returns:
        (the examples, notes dropped per reason), of every instrument rendered into
        `out` so far, earlier runs' included.
    """
    out = Path(out)
    examples, dropped = {}, {r: 0 for r in sfr.DROP_REASONS}
    for part in sorted((out / PARTS).glob("*.json")):
        if part.name == SETTINGS:
            continue
        data = _read_json(part)
        examples.update(data["examples"])
        for reason, count in data["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    for note_id, key in enumerate(sorted(examples)):
        examples[key]["note"] = note_id
    examples = {k: examples[k] for k in sorted(examples)}
    _write_json(out / "examples.json", examples)
    pitches = {}
    for e in examples.values():
        pitches.setdefault(e["instrument_str"], set()).add(e["pitch"])
    write_split(out, make_split(pitches))
    return examples, dropped


def build(soundfont, out, programs=None, pitches=range(21, 109), velocities=sfr.VELOCITIES,
          drums=False, jobs=2, render_rate=None, force=False, progress=True,
          fluidsynth="fluidsynth", sample_rate=sfr.SAMPLE_RATE) -> dict:
    """Render instruments of `soundfont` into `out`; return a summary dict.

    Args:
        programs: GM program numbers (bank 0), or None for every bank-0 preset.
        pitches: MIDI pitches; velocities: MIDI velocities 1-127.
        jobs: FluidSynth runs in parallel (one per CPU core).
        render_rate: FluidSynth's rate in Hz; notes are resampled to `sample_rate` with
            soxr. None: 44,100 for a 16 kHz dataset, `sample_rate` itself above 32 kHz
            (FluidSynth renders 48 kHz natively; nothing to fold back).
        sample_rate: the notes' rate: 16,000 (as NSynth) or 32,000-48,000 for full-band models.
    """
    if sample_rate not in SAMPLE_RATES:
        raise DatasetError(f"--sample-rate {sample_rate} is not supported; use one of "
                           f"{', '.join(map(str, SAMPLE_RATES))} Hz")
    if render_rate is None:
        render_rate = 44100 if sample_rate < 32000 else sample_rate
    soundfont, out = Path(soundfont), Path(out)
    pitches, velocities = [int(p) for p in pitches], [int(v) for v in velocities]
    if not pitches or any(not 0 <= p <= 127 for p in pitches):
        raise DatasetError(f"pitches must be MIDI numbers 0-127, got {pitches[:1]}..{pitches[-1:]}")
    if not velocities or any(v not in sfr.VELOCITIES for v in velocities):
        raise DatasetError(f"velocities must be among NSynth's {list(sfr.VELOCITIES)} (the "
                           f"model has one embedding row for each), got {velocities}")
    if not sample_rate <= render_rate <= MAX_RENDER_RATE:
        raise DatasetError(f"--render-rate {render_rate} is out of range; use "
                           f"{sample_rate}-{MAX_RENDER_RATE} Hz (the dataset's rate or above)")
    if jobs < 1:
        raise DatasetError(f"-j {jobs}: need at least 1 FluidSynth run at a time")
    instruments = sfr.plan_instruments(soundfont, programs, drums)
    settings = {"soundfont": soundfont.name, "soundfont_bytes": soundfont.stat().st_size,
                "pitches": pitches, "velocities": velocities, "render_rate": render_rate,
                "format": 1}
    if sample_rate != sfr.SAMPLE_RATE:  # absent for 16 kHz: earlier builds stay resumable
        settings["sample_rate"] = sample_rate
    created = not out.exists()
    parts = _prepare_out(out, settings, force)
    try:
        return _render_all(soundfont, out, parts, instruments, pitches, velocities, jobs,
                           render_rate, progress, fluidsynth, sample_rate)
    except BaseException:
        _undo_empty_build(out, created)
        raise


def _render_all(soundfont, out, parts, instruments, pitches, velocities, jobs, render_rate,
                progress, fluidsynth, sample_rate) -> dict:
    """`build`'s work once out/ is prepared: render what is not yet rendered, merge."""
    todo = [i for i in instruments if not (parts / f"{i.name}.json").exists()]
    skipped = len(instruments) - len(todo)
    if skipped and progress:
        print(f"resuming: {skipped} of {len(instruments)} instruments already rendered")
    per = len(pitches) * len(velocities)
    bar = tqdm(total=len(todo) * per, unit="note", disable=not progress, smoothing=0.05)
    # Threads suffice: FluidSynth is a subprocess and soxr/soundfile/numpy release the GIL.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(sfr.render_instrument, soundfont, inst, pitches, velocities,
                               out, render_rate, fluidsynth, sample_rate): inst for inst in todo}
        try:
            for fut in as_completed(futures):
                inst, result = futures[fut], fut.result()
                _write_json(parts / f"{inst.name}.json",
                            {"examples": result.examples, "dropped": result.dropped})
                bar.update(per)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            bar.close()
    examples, dropped = merge(out)  # the whole dataset: earlier runs' instruments too
    return {"instruments": len({e["instrument_str"] for e in examples.values()}),
            "rendered": len(todo), "skipped": skipped, "notes": len(examples),
            "dropped": dropped}
