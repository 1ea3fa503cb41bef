"""`singsynth dataset info` and `singsynth dataset check`."""
import os
from pathlib import Path

from singsynth.data.nsynth import (dataset_rate, entry_problem, load_json, read_examples,
                                   read_wav)
from singsynth.data.split import load_split
from singsynth.errors import DatasetError
from singsynth.files import printable, shown


def summary(root) -> dict:
    """What `info` says, as plain JSON types (validates examples.json): root, notes,
    hours, pitches [low, high], velocities, the pitch-completion split's sizes and, per
    instrument, id, name, family, notes, pitches [low, high] and pitch_count."""
    root = Path(root)
    examples = read_examples(root)
    per = {}
    for e in examples.values():
        d = per.setdefault(e["instrument_str"], {"id": e["instrument"], "pitches": set(),
                                                 "notes": 0, "family": e.get("instrument_family_str")})
        d["pitches"].add(e["pitch"])
        d["notes"] += 1
    split = load_split(root, {k: d["pitches"] for k, d in per.items()})
    test_pairs = {(k, p) for k, ps in split["test"].items() for p in ps}
    n_test = sum((e["instrument_str"], e["pitch"]) in test_pairs for e in examples.values())
    all_pitches = sorted({e["pitch"] for e in examples.values()})
    instruments = []
    for name, d in sorted(per.items(), key=lambda kv: (kv[1]["id"], kv[0])):
        ps = sorted(d["pitches"])
        instruments.append({"id": d["id"], "name": name, "family": d["family"],
                            "notes": d["notes"], "pitches": [ps[0], ps[-1]],
                            "pitch_count": len(ps)})
    return {
        "root": str(root), "notes": len(examples),
        "hours": len(examples) * 4 / 3600,
        "sample_rate": dataset_rate(examples),
        "pitches": [all_pitches[0], all_pitches[-1]],
        "velocities": sorted({e["velocity"] for e in examples.values()}),
        "split": {"train_notes": len(examples) - n_test, "test_notes": n_test,
                  "test_pairs": sum(len(v) for v in split["test"].values())},
        "instruments": instruments,
    }


def info(root) -> str:
    """A human-readable summary of a dataset folder (validates examples.json)."""
    s = summary(root)
    split = s["split"]
    lines = [f"{shown(s['root'])}: {len(s['instruments'])} instruments, {s['notes']} notes, "
             f"{s['hours']:.2f} hours at {s['sample_rate']} Hz",
             f"pitches {s['pitches'][0]}-{s['pitches'][1]}, velocities {s['velocities']}",
             f"pitch-completion split: {split['train_notes']} train notes, {split['test_notes']} "
             f"test notes ({split['test_pairs']} test (instrument, pitch) pairs)",
             "instruments (id name family: notes, pitches low-high, count):"]
    for d in s["instruments"]:
        # Names come from the dataset's own file: escaped, so that they cannot drive the
        # terminal (escape sequences) or forge lines.
        lines.append(f"  {d['id']:4d} {printable(d['name'])} {printable(d['family'] or '-')}: "
                     f"{d['notes']} notes, "
                     f"pitches {d['pitches'][0]}-{d['pitches'][1]} ({d['pitch_count']})")
    return "\n".join(lines)


def check(root) -> list[str]:
    """Read every file of a dataset folder; return one line per problem (empty if none)."""
    root = Path(root)
    try:
        examples = load_json(root)
    except DatasetError as exc:
        return [str(exc)]
    problems, ids, pitches = [], {}, {}
    listed = set()
    for key, e in examples.items():
        listed.add(f"{key}.wav")
        problem = entry_problem(key, e, ids)
        if problem:
            problems.append(f"{shown(root / 'examples.json')}: note {key!r} {problem}")
            continue
        pitches.setdefault(e["instrument_str"], set()).add(e["pitch"])
        path = root / "audio" / f"{key}.wav"
        try:  # each note at its own rate: a mix of rates is reported by read_examples
            read_wav(path, rate=e["sample_rate"])
        except DatasetError as exc:
            problems.append(str(exc))
    audio = root / "audio"
    if audio.is_dir():
        for path in sorted(audio.iterdir()):
            if path.name not in listed:
                problems.append(f"{shown(path)}: not listed in examples.json (left over from an "
                                f"interrupted build?); delete it or rebuild")
    if pitches and os.path.lexists(root / "split.json"):  # check never writes
        try:
            load_split(root, pitches)
        except DatasetError as exc:
            problems.append(str(exc))
    return problems
