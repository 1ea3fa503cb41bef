"""How good an instrument added with `train --extend` gets, against a sampler.

On the dataset's held-out pitches (its pitch-completion test split) of the added
instruments: spectral loss (the paper's) of the extended model's notes against the
user's own samples, pitch accuracy (pyin, within 50 cents), and the same for the
nearest-pitch resampling a sampler would play (`eval.baseline`) and for the model
before training (the new row as it started). Also checks that the checkpoint's own
instruments play bit for bit as in the model it extended.

    .venv/bin/python benchmarks/extend.py --init models/default.safetensors \
        --model runs/cello/model.safetensors --data data/cello
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from singsynth.data.nsynth import NSynthDataset
from singsynth.eval.baseline import baseline_notes, nearest_sources
from singsynth.eval.metrics import note_losses, pitch_accuracy
from singsynth.model.checkpoint import load_checkpoint


def score(waves: torch.Tensor, target: torch.Tensor, pitch) -> dict:
    spec, _ = note_losses(waves, target)
    acc = pitch_accuracy(waves, pitch, desc="pitch")
    return {"spectral": round(float(spec.mean()), 4), "in_tune": acc["in_tune"],
            "total": acc["total"], "unpitched": acc["unpitched"],
            "median_abs_cents": round(float(np.nanmedian(np.abs(acc["cents"]))), 1)}


@torch.no_grad()
def generate(model, inst, pitch, vel) -> torch.Tensor:
    return torch.cat([model.generate(i, p, v) for i, p, v in
                      zip(inst.split(16), pitch.split(16), vel.split(16))])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", required=True, help="the checkpoint that was extended")
    p.add_argument("--model", required=True, help="the extended checkpoint")
    p.add_argument("--data", required=True, help="the dataset it was extended with")
    p.add_argument("--start-from", help="name of the row the new one started from "
                   "(printed by train); scores the model before training too")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    base, _ = load_checkpoint(args.init)
    model, info = load_checkpoint(args.model)
    old = len(base.instruments)

    # The old instruments: every one at 3 pitches and 2 velocities, both checkpoints.
    n = old * 6
    inst = torch.arange(old).repeat_interleave(6)
    pitch = torch.tensor([48, 60, 72] * 2 * old)
    vel = torch.tensor(([1] * 3 + [4] * 3) * old)
    same = torch.equal(generate(base, inst, pitch, vel), generate(model, inst, pitch, vel))

    train = NSynthDataset(args.data, split="train", instruments=model.instruments)
    test = NSynthDataset(args.data, split="test", instruments=model.instruments)
    _, _, _, target = test.arrays()
    _, _, _, train_audio = train.arrays()
    out = {"old_instruments_bit_for_bit": same, "old_notes_compared": n,
           "added": info["provenance"].get("extended", {}).get("added"),
           "held_out_notes": len(test)}
    out["extended"] = score(generate(model, test.instrument, test.pitch, test.velocity),
                            target, test.pitch)
    sources = nearest_sources(train.instrument, train.pitch, train.velocity,
                              test.instrument, test.pitch, test.velocity)
    sampler = baseline_notes(sources, {int(r): train_audio[int(r)].numpy()
                                       for r in sources["rows"] if r >= 0})
    out["sampler"] = score(sampler, target, test.pitch)
    if args.start_from:
        row = (base.sequence.instrument.weight.mean(0) if args.start_from == "mean" else
               base.sequence.instrument.weight[base.instruments.index(args.start_from)])
        model.sequence.instrument.weight[old:] = row
        out["before_training"] = score(generate(model, test.instrument, test.pitch,
                                                test.velocity), target, test.pitch)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
