"""Score a checkpoint on its dataset: the paper's Table 1, pitch accuracy, the baseline.

Only the notes scored are read from disk (at most `notes` per split, drawn with a fixed
seed), so an evaluation on a large dataset takes minutes and little memory.
"""
from __future__ import annotations

import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from singsynth.errors import DatasetError
from singsynth.eval.baseline import baseline_notes, nearest_sources
from singsynth.eval.metrics import in_tune_mask, pitch_accuracy, score

# Families shown side by side at one pitch, most contrasting first (GM family indices:
# piano, strings, brass, pipe, guitar, organ, reed, bass, synth lead, synth pad, ...).
FAMILY_PREFERENCE = [0, 5, 7, 9, 3, 2, 8, 4, 10, 11, 6, 1, 13, 12, 14, 15, 16]
SHOWCASE_VELOCITY = 3          # index of MIDI velocity 100


def open_splits(root, instruments):
    """The train and test splits of dataset `root`, checked against a model's vocabulary."""
    from singsynth.data.nsynth import NSynthDataset

    train = NSynthDataset(root, split="train")
    if list(train.instruments) != list(instruments):
        ours, theirs = set(instruments), set(train.instruments)
        detail = (f"only in the checkpoint: {sorted(ours - theirs)[:3]}, only in the dataset: "
                  f"{sorted(theirs - ours)[:3]}" if ours != theirs else "same names, other order")
        raise DatasetError(f"{root}: its {len(train.instruments)} instruments do not match the "
                           f"checkpoint's {len(instruments)} ({detail}); evaluate on the dataset "
                           "the checkpoint was trained on")
    test = NSynthDataset(root, split="test")
    if len(test) == 0:
        raise DatasetError(f"{root}: the dataset has no test notes (its pitch-completion split "
                           "is empty: an instrument needs at least 2 pitches to hold one out)")
    return train, test


def sample_rows(total: int, cap: int | None, seed: int) -> torch.Tensor:
    """Sorted rows of at most `cap` notes out of `total`, drawn with `seed` (all if no cap)."""
    if cap is None or cap >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def read_notes(dataset, rows) -> torch.Tensor:
    """(len(rows), 64000) float32 audio of dataset notes `rows`, decoded by 2 threads."""
    from singsynth.data.nsynth import NOTE_SAMPLES, read_wav

    rows = [int(r) for r in rows]
    out = torch.empty(len(rows), NOTE_SAMPLES)
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        for k, wave in enumerate(pool.map(lambda r: read_wav(dataset.paths[r]), rows)):
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
    has_encoder = model.encoder is not None
    results = {"dataset": str(root), "notes_cap": notes, "seed": seed, "device": str(device),
               "instruments": list(model.instruments), "splits": {}, "table": {}}
    kept = {}
    for split, ds in (("train", train), ("test", test)):
        rows = sample_rows(len(ds), notes, seed)
        audio = read_notes(ds, tqdm(rows, desc=f"reading {split}", leave=False, file=sys.stderr))
        inst, pitch, vel = ds.instrument[rows], ds.pitch[rows], ds.velocity[rows]
        results["splits"][split] = {"scored": len(rows), "total": len(ds)}

        def sing(r, inst=inst, pitch=pitch, vel=vel):
            return model.generate(inst[r], pitch[r], vel[r])

        def autoencoder(r, audio=audio):
            with torch.no_grad():
                wave = audio[r].to(device)
                return model.decoder(model.encoder.encode_note(wave)).clamp(-1, 1)

        keep = split == "test"
        cells = {"sing": score(sing, audio, batch, f"SING {split}", keep=keep),
                 "silence": score(lambda r: torch.zeros(len(r), audio.shape[1]), audio, batch,
                                 f"silence {split}")}
        if has_encoder:
            cells["autoencoder"] = score(autoencoder, audio, batch, f"autoencoder {split}",
                                         keep=keep)
        for name, cell in cells.items():
            results["table"].setdefault(name, {})[split] = _summary(cell)
        kept[split] = {"rows": rows, "audio": audio, "instrument": inst, "pitch": pitch,
                       "velocity": vel, "cells": cells}

    t = kept["test"]
    sources = nearest_sources(train.instrument, train.pitch, train.velocity,
                              t["instrument"], t["pitch"], t["velocity"])
    needed = sorted({int(r) for r in sources["rows"] if r >= 0})
    source_audio = dict(zip(needed, read_notes(train, needed).numpy()))
    base_audio = baseline_notes(sources, source_audio)
    base = score(lambda r: base_audio[r], t["audio"], batch, "baseline")
    results["baseline"] = {"test": _summary(base),
                           "other_velocity": int(sources["other_velocity"].sum()),
                           "no_source": int((sources["rows"] < 0).sum()),
                           "mean_abs_semitones": float(np.abs(sources["semitones"]).mean())}

    results["pitch"] = {}
    for name, waves in (("sing", t["cells"]["sing"]["estimates"]), ("ground_truth", t["audio"])):
        acc = pitch_accuracy(waves, t["pitch"], desc=f"pitch {name}")
        results["pitch"][name] = {k: acc[k] for k in ("in_tune", "octave_in_tune", "unpitched",
                                                      "total", "share")}
        results["pitch"][name]["median_abs_cents"] = (
            float(np.nanmedian(np.abs(acc["cents"]))) if acc["unpitched"] < acc["total"]
            else math.nan)
        t[f"tuned_{name}"] = in_tune_mask(acc["cents"])
    # The tracker is not perfect (octave errors, unpitched instruments): SING's accuracy
    # on the notes whose recording it tracks correctly separates model from tracker.
    trackable = t["tuned_ground_truth"]
    hits = int(np.sum(t["tuned_sing"][trackable]))
    results["pitch"]["sing_where_truth_in_tune"] = {
        "in_tune": hits, "total": int(trackable.sum()),
        "share": hits / int(trackable.sum()) if trackable.any() else math.nan}

    families = instrument_families(root)
    per = []
    sing_spec, base_spec = t["cells"]["sing"]["spectral"], base["spectral"]
    for i, name in enumerate(model.instruments):
        mask = (t["instrument"] == i).numpy()
        if not mask.any():
            continue
        per.append({"instrument": name, "family": families.get(name, (-1, "?"))[1],
                    "notes": int(mask.sum()),
                    "sing_spectral": float(sing_spec[mask].mean()),
                    "baseline_spectral": float(base_spec[mask].mean()),
                    "sing_in_tune": int(t["tuned_sing"][mask].sum()),
                    "truth_in_tune": int(t["tuned_ground_truth"][mask].sum())})
    results["per_instrument"] = per

    media = {"examples": [], "showcase": None}
    # One example per instrument first, so the pictures show different timbres.
    first = {}
    for k, i in enumerate(t["instrument"].tolist()):
        first.setdefault(i, k)
    order = sorted(first.values()) + [k for k in range(len(t["rows"])) if k not in first.values()]
    for k in order[:examples]:
        i = int(t["instrument"][k])
        media["examples"].append({
            "label": f"{model.instruments[i]}\npitch {int(t['pitch'][k])}, "
                     f"velocity {model.velocities[int(t['velocity'][k])]}",
            "truth": t["audio"][k].numpy(),
            "autoencoder": (t["cells"]["autoencoder"]["estimates"][k].numpy()
                            if has_encoder else None),
            "sing": t["cells"]["sing"]["estimates"][k].numpy(),
            "baseline": base_audio[k].numpy()})

    show = showcase(model, train, test, families)
    vel = min(SHOWCASE_VELOCITY, len(model.velocities) - 1)
    idx = [model.instruments.index(n) for n in show["instruments"]]
    waves = model.generate(torch.tensor(idx), torch.full((len(idx),), show["pitch"]),
                           torch.full((len(idx),), vel)).cpu().numpy()
    truths = []
    for i in idx:
        hit = find_note((test, train), i, show["pitch"], vel)
        truths.append(None if hit is None else read_notes(hit[0], [hit[1]])[0].numpy())
    show.update(velocity=model.velocities[vel], sing=list(waves), truth=truths)
    media["showcase"] = show
    results["showcase"] = {k: show[k] for k in ("instruments", "families", "pitch", "velocity")}
    results["seconds"] = round(time.monotonic() - started, 1)
    return results, media
