"""The paper's pitch-completion split: per instrument, 10% of its pitches go to test
(none of a drum kit's keys: each is its own sound).

Every (instrument, pitch) pair, at all its velocities, lands in exactly one of
train/test. The split is written as `split.json` next to the data and reused, so
it never drifts between runs or machines; it is also deterministic on its own
(each instrument's draw is seeded by the seed and the instrument's name only, so
adding instruments to a dataset does not move the others' test pitches).
"""
import hashlib
import json
import random
from pathlib import Path

from singsynth.errors import DatasetError
from singsynth.files import read_bytes, shown, write_atomic
from singsynth.notes import is_unpitched

SPLIT_FILE = "split.json"
VERSION = 1
MAX_BYTES = 256 << 20  # NSynth's whole split is about 10 MB


def _test_count(n_pitches: int, fraction: float) -> int:
    """How many of an instrument's n_pitches go to test (at least 1 when n >= 2)."""
    if n_pitches < 2:
        return 0
    return min(n_pitches - 1, max(1, round(fraction * n_pitches)))


def make_split(pitches: dict, fraction: float = 0.1, seed: int = 0) -> dict:
    """Choose test pitches per instrument.

    Args:
        pitches: instrument_str -> iterable of MIDI pitches present for it.
    Returns:
        {"version", "seed", "fraction", "train": {inst: [pitch]}, "test": {inst: [pitch]}}
    """
    train, test = {}, {}
    for inst in sorted(pitches):
        ps = sorted(set(int(p) for p in pitches[inst]))
        digest = hashlib.sha256(f"{seed}:{inst}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "little"))
        # A drum kit has no pitch to complete: each key is a sound of its own, and a
        # held-out key would never be learnt. All its keys train.
        count = 0 if is_unpitched(inst) else _test_count(len(ps), fraction)
        chosen = set(rng.sample(ps, count))
        test[inst] = sorted(chosen)
        train[inst] = [p for p in ps if p not in chosen]
    return {"version": VERSION, "seed": seed, "fraction": fraction, "train": train, "test": test}


def write_split(root, split: dict) -> Path:
    """Write split.json atomically into root (through a temporary file of a fresh name:
    the folder may come from someone else, with a link planted at any fixed name)."""
    path = Path(root) / SPLIT_FILE
    write_atomic(path, json.dumps(split, indent=1, sort_keys=True))
    return path


def load_split(root, pitches: dict, fraction: float = 0.1, seed: int = 0) -> dict:
    """Read root/split.json, or make it (and write it if the folder is writable).

    Raises DatasetError if an existing split.json is malformed or does not cover
    every (instrument, pitch) pair of the data.
    """
    path = Path(root) / SPLIT_FILE
    if not path.exists() and not path.is_symlink():
        split = make_split(pitches, fraction, seed)
        try:
            write_split(root, split)
        except OSError:
            pass  # read-only copy of NSynth: the split is deterministic anyway
        return split
    data = read_bytes(path, "a split.json", MAX_BYTES, DatasetError)
    try:
        split = json.loads(data)
        train = {k: set(v) for k, v in split["train"].items()}
        test = {k: set(v) for k, v in split["test"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise DatasetError(f"{shown(path)} is malformed ({shown(str(exc)[:100])}); delete it "
                           "to make a new split") from None
    for inst, ps in pitches.items():
        missing = set(ps) - train.get(inst, set()) - test.get(inst, set())
        if missing:
            raise DatasetError(
                f"{shown(path)} does not cover instrument {inst!r} pitch {min(missing)}; the "
                f"data changed since the split was made: delete {SPLIT_FILE} to re-split (this "
                "changes the test set)")
        both = train.get(inst, set()) & test.get(inst, set())
        if both:
            raise DatasetError(f"{shown(path)} puts {inst!r} pitch {min(both)} in both train "
                               "and test; delete it to make a new split")
    return split
