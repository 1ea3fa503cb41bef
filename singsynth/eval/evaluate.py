"""Score a checkpoint on its dataset: the paper's Table 1, pitch accuracy, the baseline.

Only the notes scored are read from disk (at most `notes` per split, drawn with a fixed
seed), so an evaluation on a large dataset takes minutes and little memory.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from singsynth.errors import DatasetError
from singsynth.eval.baseline import baseline_notes, nearest_sources
from singsynth.eval.metrics import in_tune_mask, pitch_accuracy, progress, score

# Families shown side by side at one pitch, most contrasting first (GM family indices:
# piano, strings, brass, pipe, guitar, organ, reed, bass, synth lead, synth pad, ...).
FAMILY_PREFERENCE = [0, 5, 7, 9, 3, 2, 8, 4, 10, 11, 6, 1, 13, 12, 14, 15, 16]
SHOWCASE_VELOCITY = 3          # index of MIDI velocity 100


def open_splits(root, instruments):
    """The train and test splits of dataset `root`, checked against a model's vocabulary."""
    from singsynth.data.nsynth import NSynthDataset

    train = NSynthDataset(root, split="train")
    if set(train.instruments) < set(instruments):
        # A checkpoint extended with this dataset's instruments (`train --extend`) holds
        # more than the dataset: index the notes by the checkpoint's vocabulary.
        train = NSynthDataset(root, split="train", instruments=instruments)
    if list(train.instruments) != list(instruments):
        ours, theirs = set(instruments), set(train.instruments)
        detail = (f"only in the checkpoint: {sorted(ours - theirs)[:3]}, only in the dataset: "
                  f"{sorted(theirs - ours)[:3]}" if ours != theirs else "same names, other order")
        raise DatasetError(f"{root}: its {len(train.instruments)} instruments do not match the "
                           f"checkpoint's {len(instruments)} ({detail}); evaluate on the dataset "
                           "the checkpoint was trained on")
    test = NSynthDataset(root, split="test", instruments=train.instruments)
    if len(test) == 0:
        raise DatasetError(f"{root}: the dataset has no test notes (its pitch-completion split "
                           "is empty: an instrument needs at least 2 pitches to hold one out)")
    return train, test


def sample_rows(total: int, cap: int | None, seed: int) -> torch.Tensor:
    """Sorted rows of at most `cap` notes out of `total`, drawn with `seed` (all if no cap)."""
    if cap is None or cap >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def read_notes(dataset, rows, desc: str | None = None) -> torch.Tensor:
    """(len(rows), 64000) float32 audio of dataset notes `rows`, decoded by 2 threads."""
    from singsynth.data.nsynth import NOTE_SAMPLES, read_wav

    rows = [int(r) for r in rows]
    out = torch.empty(len(rows), NOTE_SAMPLES)
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        waves = pool.map(lambda r: read_wav(dataset.paths[r]), rows)
        for k, wave in enumerate(progress(waves, desc, len(rows)) if desc else waves):
            out[k] = torch.from_numpy(wave)
    return out


def instrument_families(root) -> dict:
    """instrument_str -> (family index, family name) from examples.json (-1 if absent)."""
    from singsynth.data.nsynth import load_json

    families = {}
    for e in load_json(root).values():
        fam = e.get("instrument_family")
        families.setdefault(e["instrument_str"], (fam if isinstance(fam, int) else -1,
                                                  str(e.get("instrument_family_str", "?"))))
    return families


def showcase(model, train, test, families: dict, count: int = 4) -> dict:
    """Instruments of `count` different families and one pitch they can all play."""
    names = model.instruments
    by_family: dict = {}
    for name in names:
        by_family.setdefault(families.get(name, (-1, "?"))[0], name)
    order = [f for f in FAMILY_PREFERENCE if f in by_family] + \
            [f for f in by_family if f not in FAMILY_PREFERENCE]
    chosen = [by_family[f] for f in order[:count]]
    ranges = []
    for name in chosen:
        i = names.index(name)
        ranges.append({int(p) for ds in (train, test) for p in ds.pitch[ds.instrument == i]})
    common = set.intersection(*ranges) if ranges else set()
    pitch = 60 if not common or 60 in common else min(common, key=lambda p: (abs(p - 60), p))
    return {"instruments": chosen, "pitch": pitch,
            "families": [families.get(n, (-1, "?"))[1] for n in chosen]}


def find_note(datasets, instrument: int, pitch: int, velocity: int):
    """(dataset, row) of a recorded note with these labels, or None."""
    for ds in datasets:
        hit = torch.nonzero((ds.instrument == instrument) & (ds.pitch == pitch)
                            & (ds.velocity == velocity)).flatten()
        if len(hit):
            return ds, int(hit[0])
    return None


def _summary(scores: dict) -> dict:
    return {"spectral": float(scores["spectral"].mean()), "mse": float(scores["mse"].mean())}


def score_split(model, ds, rows, batch: int, device, split: str) -> dict:
    """Table 1 cells of one split: SING, silence and (with an encoder) the autoencoder.

    Returns:
        {"audio": (N, 64000) ground truth, "instrument"/"pitch"/"velocity": (N,) labels,
         "cells": name -> `score` output; for "test", SING's and the autoencoder's
         estimates are kept for pitch tracking and figures}.
    """
    audio = read_notes(ds, rows, f"reading {split}")
    inst, pitch, vel = ds.instrument[rows], ds.pitch[rows], ds.velocity[rows]

    def autoencoder(r):
        with torch.no_grad():
            return model.decode(model.encoder.encode_note(audio[r].to(device)),
                                pitch[r].to(device)).clamp(-1, 1)

    keep = split == "test"
    cells = {"sing": score(lambda r: model.generate(inst[r], pitch[r], vel[r], core=True), audio, batch,
                           f"SING {split}", keep=keep),
             "silence": score(lambda r: torch.zeros(len(r), audio.shape[1]), audio, batch,
                              f"silence {split}")}
    if model.encoder is not None:
        cells["autoencoder"] = score(autoencoder, audio, batch, f"autoencoder {split}", keep=keep)
    return {"audio": audio, "instrument": inst, "pitch": pitch, "velocity": vel, "cells": cells}


def score_baseline(train, t: dict, batch: int) -> tuple[dict, dict, torch.Tensor]:
    """The nearest-pitch sampler on the held-out notes `t`: (summary, scores, audio)."""
    sources = nearest_sources(train.instrument, train.pitch, train.velocity,
                              t["instrument"], t["pitch"], t["velocity"])
    needed = sorted({int(r) for r in sources["rows"] if r >= 0})
    source_audio = dict(zip(needed, read_notes(train, needed, "reading baseline sources").numpy()))
    audio = baseline_notes(sources, source_audio)
    scores = score(lambda r: audio[r], t["audio"], batch, "baseline")
    summary = {"test": _summary(scores),
               "other_velocity": int(sources["other_velocity"].sum()),
               "no_source": int((sources["rows"] < 0).sum()),
               "mean_abs_semitones": float(np.abs(sources["semitones"]).mean())}
    return summary, scores, audio


def track_split(t: dict) -> dict:
    """Pitch accuracy of SING's held-out notes and of their recordings (adds masks to `t`)."""
    out = {}
    for name, waves in (("sing", t["cells"]["sing"]["estimates"]), ("ground_truth", t["audio"])):
        acc = pitch_accuracy(waves, t["pitch"], desc=f"pitch {name}")
        out[name] = {k: acc[k] for k in ("in_tune", "octave_in_tune", "unpitched", "total",
                                         "share")}
        out[name]["median_abs_cents"] = (float(np.nanmedian(np.abs(acc["cents"])))
                                         if acc["unpitched"] < acc["total"] else math.nan)
        t[f"tuned_{name}"] = in_tune_mask(acc["cents"])
    # The tracker is not perfect (octave errors, unpitched instruments): SING's accuracy
    # on the notes whose recording it tracks correctly separates model from tracker.
    trackable = t["tuned_ground_truth"]
    hits = int(np.sum(t["tuned_sing"][trackable]))
    out["sing_where_truth_in_tune"] = {
        "in_tune": hits, "total": int(trackable.sum()),
        "share": hits / int(trackable.sum()) if trackable.any() else math.nan}
    return out


def per_instrument(model, t: dict, base_scores: dict, families: dict) -> list:
    """One row of held-out results per instrument that has held-out notes."""
    rows = []
    for i, name in enumerate(model.instruments):
        mask = (t["instrument"] == i).numpy()
        if mask.any():
            rows.append({"instrument": name, "family": families.get(name, (-1, "?"))[1],
                         "notes": int(mask.sum()),
                         "sing_spectral": float(t["cells"]["sing"]["spectral"][mask].mean()),
                         "baseline_spectral": float(base_scores["spectral"][mask].mean()),
                         "sing_in_tune": int(t["tuned_sing"][mask].sum()),
                         "truth_in_tune": int(t["tuned_ground_truth"][mask].sum())})
    return rows


def example_notes(model, t: dict, base_audio: torch.Tensor, count: int) -> list:
    """Waveforms of `count` held-out notes of instruments spread over the vocabulary
    (one note per instrument while there are instruments left: different timbres)."""
    first: dict = {}
    for k, i in enumerate(t["instrument"].tolist()):
        first.setdefault(i, k)
    firsts = [first[i] for i in sorted(first)]
    spread = [firsts[int(j)] for j in np.unique(np.linspace(0, len(firsts) - 1,
                                                            min(count, len(firsts))).round())]
    order = spread + [k for k in range(len(t["audio"])) if k not in spread]
    ae = t["cells"].get("autoencoder")
    out = []
    for k in order[:count]:
        i = int(t["instrument"][k])
        out.append({"label": f"{model.instruments[i]}\npitch {int(t['pitch'][k])}, "
                             f"velocity {model.velocities[int(t['velocity'][k])]}",
                    "truth": t["audio"][k].numpy(),
                    "autoencoder": None if ae is None else ae["estimates"][k].numpy(),
                    "sing": t["cells"]["sing"]["estimates"][k].numpy(),
                    "baseline": base_audio[k].numpy()})
    return out


def showcase_notes(model, train, test, families: dict) -> dict:
    """`showcase` plus SING's notes and the recordings (None where missing)."""
    show = showcase(model, train, test, families)
    vel = min(SHOWCASE_VELOCITY, len(model.velocities) - 1)
    idx = [model.instruments.index(n) for n in show["instruments"]]
    waves = model.generate(torch.tensor(idx), torch.full((len(idx),), show["pitch"]),
                           torch.full((len(idx),), vel), core=True).cpu().numpy()
    truths = []
    for i in idx:
        hit = find_note((test, train), i, show["pitch"], vel)
        truths.append(None if hit is None else read_notes(hit[0], [hit[1]])[0].numpy())
    show.update(velocity=model.velocities[vel], sing=list(waves), truth=truths)
    return show


def evaluate(model, root, notes: int | None = 200, seed: int = 0, batch: int = 16,
             examples: int = 4, device=None) -> tuple[dict, dict]:
    """Score `model` on dataset folder `root`.

    Args:
        model: a SING (from `load_model`); its instruments must be the dataset's.
        notes: at most this many notes scored per split (None: all).
        examples: held-out notes drawn as spectrograms.
    Returns:
        (results, media): results is JSON-ready (numbers of the report); media holds the
        waveforms (16 kHz float32) the figures and example WAVs are made of.
    """
    started = time.monotonic()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    train, test = open_splits(root, model.instruments)
    results = {"dataset": str(root), "notes_cap": notes, "seed": seed, "device": str(device),
               "instruments": list(model.instruments), "splits": {}, "table": {}}
    for split, ds in (("train", train), ("test", test)):
        rows = sample_rows(len(ds), notes, seed)
        results["splits"][split] = {"scored": len(rows), "total": len(ds)}
        scored = score_split(model, ds, rows, batch, device, split)
        for name, cell in scored["cells"].items():
            results["table"].setdefault(name, {})[split] = _summary(cell)
    t = scored   # the held-out split, scored last
    results["baseline"], base_scores, base_audio = score_baseline(train, t, batch)
    results["pitch"] = track_split(t)
    families = instrument_families(root)
    results["per_instrument"] = per_instrument(model, t, base_scores, families)
    show = showcase_notes(model, train, test, families)
    results["showcase"] = {k: show[k] for k in ("instruments", "families", "pitch", "velocity")}
    results["seconds"] = round(time.monotonic() - started, 1)
    media = {"examples": example_notes(model, t, base_audio, examples), "showcase": show}
    return results, media
