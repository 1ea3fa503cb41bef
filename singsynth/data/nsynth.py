"""Read NSynth's published JSON/WAV layout (and singsynth's SoundFont renders).

A dataset folder holds `examples.json` (note_str -> {instrument, instrument_str,
pitch, velocity, sample_rate, instrument_family, instrument_source, qualities, ...})
and `audio/<note_str>.wav`: 16 kHz mono, 64,000 samples. `split.json` beside them
holds the pitch-completion split (see split.py).
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from singsynth.data.split import load_split
from singsynth.errors import DatasetError
from singsynth.files import (atomic_path, cache_dir, open_regular, os_error_line, printable,
                             read_bytes, shown)
from singsynth.notes import TRAINED_VELOCITIES

SAMPLE_RATE = 16000
NOTE_SAMPLES = 64000
# A dataset's notes all share one of these rates (examples.json's sample_rate): 16 kHz as
# NSynth, or a full-band one from `dataset build --sample-rate`. A note is 4 s at it.
RATES = (16000, 32000, 44100, 48000)
VELOCITIES = list(TRAINED_VELOCITIES)
SPLITS = ("train", "test", "all")
_INT_FIELDS = ("instrument", "pitch", "velocity", "sample_rate")
MAX_EXAMPLES_BYTES = 1 << 30  # NSynth's training examples.json is about 200 MB


def load_json(root) -> dict:
    """root/examples.json as a dict, unvalidated; DatasetError if missing or not JSON."""
    path = Path(root) / "examples.json"
    if not os.path.lexists(path):
        try:  # a name too long or a folder that cannot be entered says so
            os.stat(root)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            raise DatasetError(os_error_line(root, exc)) from None
        raise DatasetError(f"{shown(path)} is missing; point at an NSynth split folder "
                           f"(nsynth-train/) or a `singsynth dataset build` output")
    data = read_bytes(path, "an examples.json", MAX_EXAMPLES_BYTES, DatasetError)
    try:
        examples = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{shown(path)} is not valid JSON ({shown(str(exc)[:100])}); "
                           "re-extract or rebuild it") from None
    if not isinstance(examples, dict) or not examples:
        raise DatasetError(f"{shown(path)} must be a non-empty JSON object of note_str -> fields")
    return examples


def read_examples(root) -> dict:
    """Parse and validate root/examples.json; return note_str -> entry.

    Raises DatasetError naming the file and the note for a malformed entry, a pitch
    outside 0-127, a velocity not in VELOCITIES, a sample rate other than 16 kHz,
    a negative instrument id or one instrument_str with two ids.
    """
    path = Path(root) / "examples.json"
    examples = load_json(root)
    ids, rates = {}, {}
    for key, e in examples.items():
        problem = entry_problem(key, e, ids)
        if problem:
            raise DatasetError(f"{shown(path)}: note {key!r} {problem}")
        rates.setdefault(e["sample_rate"], key)
    if len(rates) > 1:
        (a, ka), (b, kb) = list(rates.items())[:2]
        raise DatasetError(f"{shown(path)}: notes at {a} Hz ({ka!r}) and at {b} Hz ({kb!r}); "
                           "a dataset has one rate: build it again with one --sample-rate")
    return examples


def dataset_rate(examples: dict) -> int:
    """The one sample rate of a validated examples dict (16 kHz when it is empty)."""
    return next((e["sample_rate"] for e in examples.values()), SAMPLE_RATE)


def entry_problem(key: str, e, ids: dict) -> str | None:
    """None if one examples.json entry is usable, else what is wrong with it.

    ids: instrument_str -> first id seen, updated here, to catch an instrument
    listed under two ids.
    """
    if not isinstance(e, dict):
        return "is not an object of fields"
    for name in _INT_FIELDS:
        if not isinstance(e.get(name), int) or isinstance(e.get(name), bool):
            return f"has no integer field {name!r} (got {e.get(name)!r})"
    if not isinstance(e.get("instrument_str"), str) or not e["instrument_str"]:
        return "has no instrument_str"
    if "/" in key or "\\" in key or key.startswith("."):
        return "is not a plain file name (note_str names audio/<note_str>.wav)"
    if len(f"{key}.wav".encode("utf-8", "surrogatepass")) > 255:
        return "is too long for a file name (audio/<note_str>.wav, 255 bytes at most)"
    if not 0 <= e["pitch"] <= 127:
        return f"has pitch {e['pitch']} outside MIDI 0-127"
    if e["velocity"] not in VELOCITIES:
        return f"has velocity {e['velocity']}, not one of {VELOCITIES}"
    if e["sample_rate"] not in RATES:
        return (f"has sample_rate {e['sample_rate']}; singsynth reads notes at "
                f"{', '.join(map(str, RATES))} Hz")
    if e["instrument"] < 0:
        return f"has instrument id {e['instrument']} out of range (< 0)"
    old = ids.setdefault(e["instrument_str"], e["instrument"])
    if old != e["instrument"]:
        return (f"gives instrument {e['instrument_str']!r} id {e['instrument']}, but it has "
                f"id {old} elsewhere; each instrument needs one id")
    return None


def _header_problem(snd: sf.SoundFile, rate: int = SAMPLE_RATE) -> str | None:
    """None if an open sound file is a mono 4-second note at `rate` (64,000 samples at
    16 kHz), else what is wrong."""
    if snd.samplerate != rate:
        return f"sample rate {snd.samplerate} Hz, expected {rate}"
    if snd.channels != 1:
        return f"{snd.channels} channels, expected mono"
    if snd.frames != 4 * rate:
        return f"{snd.frames} samples long, expected {4 * rate}"
    return None


def _open_wav(path: Path):
    """(open regular file, sf.SoundFile on it), or a problem line (str) without the path.
    Only the header is read: a WAV claiming 400 million samples is refused unread."""
    if not os.path.lexists(path):
        return "missing WAV"
    try:
        f = open_regular(path, "a WAV file", DatasetError)
    except DatasetError as exc:
        return str(exc).removeprefix(f"{shown(path)}: ").removeprefix(f"{shown(path)} ")
    try:  # by descriptor: libsndfile then reads natively, without the GIL (thread pools)
        return f, sf.SoundFile(f.fileno(), closefd=False)
    except (RuntimeError, sf.LibsndfileError) as exc:
        f.close()
        return f"unreadable audio ({printable(str(exc).splitlines()[0] if str(exc) else exc)})"


def check_wav(path: Path, rate: int = SAMPLE_RATE) -> str | None:
    """None if path is a mono 4-second WAV at `rate`, else what is wrong (header only)."""
    opened = _open_wav(path)
    if isinstance(opened, str):
        return opened
    f, snd = opened
    with f, snd:
        return _header_problem(snd, rate)


def read_wav(path: Path, dtype: str = "float32", rate: int = SAMPLE_RATE) -> np.ndarray:
    """(4 * rate,) float32 in [-1, 1] (or int16 in full scale, for `dtype="int16"`);
    DatasetError naming the file if it is not a valid note: a wrong header (checked
    before any sample is read), or, in a float WAV, NaN, infinite or out-of-range samples
    (which would poison training and which int16 cannot even show)."""
    opened = _open_wav(path)
    if isinstance(opened, str):
        fix = ("restore it or rebuild the dataset (in Python, NSynthDataset(..., "
               "allow_skip=True) leaves such notes out)")
        raise DatasetError(f"{shown(path)}: {opened}; {fix}")
    f, snd = opened
    with f, snd:
        problem = _header_problem(snd, rate)
        if problem:
            raise DatasetError(f"{shown(path)}: {problem}; re-render it at {rate} Hz mono, 4 s")
        floating = snd.subtype in ("FLOAT", "DOUBLE")
        try:
            wave = snd.read(4 * rate, dtype="float32" if floating else dtype, always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise DatasetError(f"{shown(path)}: unreadable audio ({printable(exc)})") from None
    if len(wave) != 4 * rate:
        raise DatasetError(f"{shown(path)}: {len(wave)} samples long, expected "
                           f"{4 * rate} (4 s)")
    wave = wave[:, 0]
    if floating:
        problem = sample_problem(wave)
        if problem:
            raise DatasetError(f"{shown(path)}: {problem}; re-render or delete this note")
        if dtype == "int16":
            wave = np.rint(wave * 32767).astype(np.int16)
    return wave


def sample_problem(wave: np.ndarray) -> str | None:
    """None if every sample of float `wave` is finite and within [-1, 1], else what is not."""
    finite = np.isfinite(wave)
    if not finite.all():
        bad = int(wave.size - np.count_nonzero(finite))
        return f"{bad} of its {wave.size} samples are NaN or infinite"
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:
        return f"samples beyond full scale (peak {peak:g}, expected within -1..1)"
    return None


class NSynthDataset(torch.utils.data.Dataset):
    """NSynth notes as (instrument index, pitch, velocity index, waveform).

    Args:
        root: folder with examples.json and audio/.
        split: "train" or "test" (the pitch-completion split of split.json) or "all".
        families, sources: keep only these instrument_family / instrument_source ids.
        pitch_range: (low, high) inclusive MIDI pitches to keep.
        allow_skip: drop notes whose WAV is missing or invalid (headers are checked
            up front, a count is printed) instead of raising DatasetError.
        instruments: vocabulary to index into (e.g. a checkpoint's); default: every
            instrument_str of the whole examples.json, sorted by id, so indices are
            the same for every split and filter.
    """

    velocities = list(VELOCITIES)

    def __init__(self, root, split="train", families=None, sources=None, pitch_range=None,
                 allow_skip=False, instruments=None):
        if split not in SPLITS:
            raise DatasetError(f"split {split!r} unknown; choose one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        examples = read_examples(self.root)
        self.sample_rate = dataset_rate(examples)      # 16 kHz, or 48 kHz for full band
        self.note_samples = 4 * self.sample_rate
        ids = {e["instrument_str"]: e["instrument"] for e in examples.values()}
        self.instruments = (list(instruments) if instruments is not None
                            else sorted(ids, key=lambda s: (ids[s], s)))
        index = {name: i for i, name in enumerate(self.instruments)}
        pitches = {}
        for e in examples.values():
            pitches.setdefault(e["instrument_str"], set()).add(e["pitch"])
        keep_pitch = None if split == "all" else load_split(self.root, pitches)[split]
        keep_pitch = None if keep_pitch is None else {k: set(v) for k, v in keep_pitch.items()}
        rows, skipped = [], 0
        for key in sorted(examples):
            e = examples[key]
            name = e["instrument_str"]
            if families is not None and e.get("instrument_family") not in families:
                continue
            if sources is not None and e.get("instrument_source") not in sources:
                continue
            if pitch_range is not None and not pitch_range[0] <= e["pitch"] <= pitch_range[1]:
                continue
            if keep_pitch is not None and e["pitch"] not in keep_pitch.get(name, ()):
                continue
            if name not in index:
                if allow_skip:
                    skipped += 1
                    continue
                raise DatasetError(f"{self.root / 'examples.json'}: note {key!r}: instrument "
                                   f"{name!r} is out of range of the {len(index)}-instrument "
                                   f"vocabulary; use a matching checkpoint or allow_skip=True")
            path = self.root / "audio" / f"{key}.wav"
            problem = (check_wav(path, self.sample_rate) if allow_skip
                       else (None if os.path.lexists(path) else "missing WAV"))
            if problem:
                if allow_skip:
                    skipped += 1
                    continue
                raise DatasetError(f"{shown(path)}: {problem}; restore it or rebuild the "
                                   "dataset (in Python, NSynthDataset(..., allow_skip=True) "
                                   "leaves such notes out)")
            rows.append((index[name], e["pitch"], VELOCITIES.index(e["velocity"]), path))
        if skipped:
            print(f"{self.root}: skipped {skipped} notes with missing or invalid WAVs or instruments")
        self.skipped = skipped
        self.keys = [r[3].stem for r in rows]
        self.paths = [r[3] for r in rows]
        self.instrument = torch.tensor([r[0] for r in rows], dtype=torch.long)
        self.pitch = torch.tensor([r[1] for r in rows], dtype=torch.long)
        self.velocity = torch.tensor([r[2] for r in rows], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        """(instrument index, MIDI pitch, velocity index 0-4, float32 waveform (64000,))."""
        wave = torch.from_numpy(read_wav(self.paths[i], rate=self.sample_rate))
        return int(self.instrument[i]), int(self.pitch[i]), int(self.velocity[i]), wave

    def arrays(self, workers: int = 4):
        """The whole split in memory: (instrument (N,), pitch (N,), velocity (N,)) LongTensors
        and audio FloatTensor (N, 64000), decoded by a thread pool (libsndfile releases the GIL)."""
        audio = torch.empty((len(self), self.note_samples), dtype=torch.float32)
        self._decode_into(audio.numpy(), workers)
        return self.instrument.clone(), self.pitch.clone(), self.velocity.clone(), audio

    def _decode_into(self, out: np.ndarray, workers: int, done=lambda: None) -> None:
        """Decode every note into row i of `out` (N, 64000), float32 or int16 (libsndfile
        converts), on a thread pool (it releases the GIL); `done()` after each note."""
        def load(i):
            out[i] = read_wav(self.paths[i], dtype=out.dtype.name, rate=self.sample_rate)

        with ThreadPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1))) as pool:
            for _ in pool.map(load, range(len(self)), chunksize=64):
                done()

    def audio_file(self, cache_dir=None, progress: bool = True, workers: int = 4) -> np.ndarray:
        """The split's waveforms as a read-only int16 memory map (N, 64000), decoded once
        into a .npy file in `cache_dir` and reused while the split's notes are the same.

        For splits too big for memory: NSynth's 289,205 training notes would take 74 GB
        as float32 (`arrays`); as int16 they take 37 GB of disk, read through the page
        cache. int16 holds 16-bit WAVs (NSynth's, and `singsynth dataset build`'s)
        exactly: x / 32768 is the float32 `arrays` gives.

        Args:
            cache_dir: default `$SINGSYNTH_DATA_CACHE`, else ~/.cache/singsynth/datasets.
        """
        folder = Path(cache_dir) if cache_dir else default_data_cache()
        examples = self.root / "examples.json"
        stat = examples.stat()
        # Named by what decides the contents: the dataset, its examples.json, the notes.
        ident = hashlib.sha256("\n".join([str(self.root.resolve()), str(stat.st_size),
                                           str(stat.st_mtime_ns), *self.keys]).encode())
        path = folder / f"{self.root.name}-{self.split}-{ident.hexdigest()[:16]}.npy"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:  # a fresh name: the cache folder may be shared
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16,
                                                shape=(len(self), self.note_samples))
                with tqdm(total=len(self), unit="note", disable=not progress,
                          desc=f"decoding {self.split} notes to {folder}") as bar:
                    self._decode_into(out, workers, bar.update)
                out.flush()
                del out
        return np.load(path, mmap_mode="r")


def default_data_cache() -> Path:
    """`$SINGSYNTH_DATA_CACHE`, else `$XDG_CACHE_HOME/singsynth/datasets`, else
    `~/.cache/singsynth/datasets`."""
    return cache_dir("SINGSYNTH_DATA_CACHE", "datasets")
