"""Adding instruments to a trained model (`extend: true` with `init: CHECKPOINT`).

The checkpoint's vocabulary grows by the dataset's instruments it lacks: one new row
of the instrument embedding each, started from the existing row (or the mean of all
rows) that already sounds most like the new instrument's training notes. Only those
rows train: every other weight is frozen, and the old rows' gradient is zeroed, so
Adam leaves them exactly as they were (a zero gradient gives zero moments and a zero
step). The old instruments therefore play bit for bit as before, and one instrument
trains on a CPU in minutes: a 16-number embedding learns against the frozen LSTM and
decoder.
"""
from __future__ import annotations

import sys

import torch

from singsynth.errors import ConfigError
from singsynth.model.checkpoint import load_checkpoint
from singsynth.model.config import samples_to_steps
from singsynth.model.dsp import spectral_loss
from singsynth.model.sing import SING, decode_parts, mix

# Training notes of each new instrument scored to choose its starting row, and how much
# of each (the attack and first second tell instruments apart; whole notes cost 4x).
CHOOSE_NOTES = 8
CHOOSE_SAMPLES = 16384


def dataset_instruments(data) -> list[str]:
    """The instrument names of dataset folder `data`, in the reader's order (by id)."""
    from singsynth.data.nsynth import read_examples

    examples = read_examples(data)
    ids = {e["instrument_str"]: e["instrument"] for e in examples.values()}
    return sorted(ids, key=lambda s: (ids[s], s))


def vocabulary(init, data) -> tuple[list[str], list[str]]:
    """(the extended vocabulary: the checkpoint's then the new ones, the new ones)."""
    if not init:
        raise ConfigError("extend: true needs init: CHECKPOINT (or --init), the model to add "
                          "the dataset's instruments to")
    trained, _ = load_checkpoint(init)
    new = [name for name in dataset_instruments(data) if name not in trained.instruments]
    if not new:
        raise ConfigError(f"{data}: every instrument of the dataset is already in {init}; "
                          "nothing to add (extend trains only new instruments)")
    return list(trained.instruments) + new, new


def extended_model(init, instruments: list[str]) -> SING:
    """The checkpoint `init` rebuilt with vocabulary `instruments` (its own first): every
    weight copied, new embedding rows set to the mean of the old ones (see `choose_rows`)."""
    trained, _ = load_checkpoint(init)
    old = len(trained.instruments)
    if list(instruments[:old]) != list(trained.instruments):
        raise ConfigError(f"init {init}: its instruments must come first in the vocabulary")
    model = SING(trained.config, instruments, trained.velocities,
                 with_encoder=trained.encoder is not None)
    state = trained.state_dict()
    weight = state["sequence.instrument.weight"]
    mean = weight.mean(0, keepdim=True).expand(len(instruments) - old, -1)
    state["sequence.instrument.weight"] = torch.cat([weight, mean])
    model.load_state_dict(state)
    return model


@torch.no_grad()
def choose_rows(model: SING, old: int, data, device="cpu") -> dict:
    """Start each new row from the old row, or the mean of them, whose notes are nearest
    (spectral loss over their first CHOOSE_SAMPLES) to up to CHOOSE_NOTES of its
    training notes.

    Args:
        old: rows 0..old-1 are the checkpoint's; rows from `old` are new.
        data: the training split (`stages.TrainData`, indices into the new vocabulary).
    Returns:
        new instrument name -> name of the row it started from ("mean" for the mean).
    """
    table = model.sequence.instrument.weight
    candidates = torch.cat([table[:old], table[:old].mean(0, keepdim=True)])
    labels = ["mean" if i == old else model.instruments[i] for i in range(old + 1)]
    chosen = {}
    was_training = model.training
    model.eval()
    for row in range(old, len(model.instruments)):
        idx = torch.nonzero(data.instrument == row).flatten()
        if len(idx) == 0:
            continue
        idx = idx[torch.linspace(0, len(idx) - 1, min(CHOOSE_NOTES, len(idx))).long()]
        length = min(CHOOSE_SAMPLES, model.config.note_samples)
        target = data.notes(idx)[:, :length].to(device)
        pitch, velocity = data.pitch[idx].to(device), data.velocity[idx].to(device)
        steps = samples_to_steps(length, model.config)
        scores = []
        for c in candidates:
            table[row] = c
            cond = model.sequence.condition(torch.full_like(pitch, row), pitch, velocity)
            s, _ = model.sequence(cond, 0, steps)
            estimate = mix(decode_parts(model.decoder, model.harmonics, s.transpose(1, 2),
                                        pitch, 0, model.pitched(torch.full_like(pitch, row))))
            scores.append(spectral_loss(estimate, target).item())
        best = min(range(len(scores)), key=scores.__getitem__)
        table[row] = candidates[best]
        chosen[model.instruments[row]] = labels[best]
    model.train(was_training)
    return chosen


def freeze_old(model: SING, old: int) -> None:
    """Train only the new embedding rows: everything else stops needing gradients, and
    the embedding's gradient is zeroed on the old rows before any optimiser sees it."""
    for p in model.parameters():
        p.requires_grad_(False)
    weight = model.sequence.instrument.weight
    weight.requires_grad_(True)
    mask = torch.zeros(weight.shape[0], 1, device=weight.device)
    mask[old:] = 1
    weight.register_hook(lambda grad: grad * mask.to(grad.dtype))


def check_stages(stages) -> None:
    """The autoencoder stage has no instrument embedding: nothing of it would train."""
    if "ae" in stages:
        raise ConfigError("extend trains only the new instruments' embedding rows, which the "
                          "ae stage does not use; run --stage e2e (the default with extend) "
                          "or --stage lstm")


def report(chosen: dict, new: list[str]) -> None:
    for name in new:
        start = chosen.get(name, "mean (no training notes)")
        print(f"extend: new instrument {name} starts from {start}", file=sys.stderr)
