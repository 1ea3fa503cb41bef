"""The full-band stage: teach a 16 kHz SING model's noise band (model/fullband.py) what a
48 kHz dataset holds above 16 kHz's reach, with the 16 kHz model frozen.

    singsynth train --stage highband --init models/default.safetensors \\
        --data data/gm19-48k --out runs/fullband

Why a stage of its own, and so quick: the core is frozen, so its per-frame decoder
activations h (what the noise band reads) and its own output are fixed. They are
computed once per training note, with the target's band energies minus the core's (what
the noise has to add): afterwards an epoch is a few matrix products over 1.8 M frames,
seconds on a CPU, instead of the LSTM's minutes. The loss is the L1 distance of log
band energies: in the log, a band 60 dB down counts as much as a loud one, so the quiet
top octave is learned, not left silent.

Output: OUT/model.safetensors (a playable full-band checkpoint, after every epoch),
OUT/state-highband.safetensors (the head, Adam's moments and the epoch: `--resume`),
OUT/log.jsonl (one line per epoch) and OUT/features-*.npy (the frozen model's features,
reused by `--resume`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from singsynth.data.nsynth import read_wav
from singsynth.errors import ConfigError, DatasetError
from singsynth.model.fullband import ENERGY_FLOOR
from singsynth.model.sing import SING

BATCH = 16
STORE_FLOOR = 1e-20       # features keep energies to here; the loss floors them at ENERGY_FLOOR
SMOOTH_BANDS = 3          # the loss compares energies over 3 bands (1.1 kHz): see smooth_bands


def full_band_model(core: SING, upsample: int = 3, noise_bands: int = 48,
                    noise_low_hz: int = 6000) -> SING:
    """A full-band model with `core`'s weights (all of them) and a new, silent noise band."""
    if core.config.noise_bands or core.config.upsample > 1:
        config = core.config
    else:
        config = dataclasses.replace(core.config, name="fullband", upsample=upsample,
                                     noise_bands=noise_bands, noise_low_hz=noise_low_hz)
    model = SING(config, core.instruments, core.velocities,
                 core.sequence.pitch.num_embeddings, with_encoder=core.encoder is not None)
    missing, _ = model.load_state_dict(core.state_dict(), strict=False)
    if any(not k.startswith("noise.") for k in missing):
        raise ConfigError(f"the core checkpoint lacks {missing[:3]}")
    model.provenance = dict(getattr(core, "provenance", {}) or {})
    return model


def band_energy(model: SING, wave: torch.Tensor) -> torch.Tensor:
    """Mean |STFT|^2 per noise band and decoder frame of output-rate waves:
    (B, L) -> (B, bands, frames), frames centred where the model's noise grains are."""
    noise, cfg = model.noise, model.config
    frames = cfg.steps - (cfg.kernel - 1)
    lead = -noise.centre0                           # frame 0 sits this far before sample 0
    right = (frames - 1) * noise.hop - lead - wave.shape[-1] + noise.hop
    x = F.pad(wave, (lead, max(0, right)))
    spec = torch.stft(x, noise.n_fft, noise.hop, window=torch.hann_window(noise.n_fft),
                      center=True, pad_mode="constant", return_complex=True)[..., :frames]
    return noise.band_energy(spec.abs().square())


def read_split(data: Path, split: str, rate: int, instruments):
    """[(instrument index in `instruments`, pitch, velocity index, wav path)] of a split
    of a dataset at `rate` (one built with `dataset build --sample-rate`), read and checked
    by `NSynthDataset` (a note of an instrument the model lacks is one line there)."""
    from singsynth.data import NSynthDataset
    ds = NSynthDataset(data, split=split, instruments=instruments)
    if ds.sample_rate != rate:
        raise DatasetError(f"{data} holds {ds.sample_rate} Hz notes; the model plays {rate} "
                           f"Hz: build it with `singsynth dataset build --sample-rate {rate}`")
    return list(zip(ds.instrument.tolist(), ds.pitch.tolist(), ds.velocity.tolist(), ds.paths))


@torch.no_grad()
def features(model: SING, rows, out: Path, name: str, progress=True):
    """The frozen model's decoder activations (N, C, F) float16 and the residual band
    log energies the noise must add (N, bands, F) float32 (floored at 1e-20: the loss
    applies its own floor), cached in `out`."""
    h_path, t_path = out / f"features-{name}-h.npy", out / f"features-{name}-target2.npy"
    cfg = model.config
    frames = cfg.steps - (cfg.kernel - 1)
    if h_path.exists() and t_path.exists():
        h, target = np.load(h_path, mmap_mode="r"), np.load(t_path)
        if len(h) == len(target) == len(rows):
            return h, target   # else made with another `every`: made again
    # A fresh name, never a fixed ".part" a planted link could redirect.
    fd, part = tempfile.mkstemp(prefix=f".{h_path.name}.", suffix=".part", dir=out)
    os.close(fd)
    h_all = np.lib.format.open_memmap(part, "w+", np.float16,
                                      (len(rows), cfg.channels, frames))
    target = np.empty((len(rows), model.noise.bands, frames), np.float32)
    start = time.time()
    for i in range(0, len(rows), BATCH):
        batch = rows[i:i + BATCH]
        inst = torch.tensor([r[0] for r in batch])
        pitch = torch.tensor([r[1] for r in batch])
        vel = torch.tensor([r[2] for r in batch])
        _, h, core = model.upsampled_core(inst, pitch, vel)
        wav = torch.from_numpy(np.stack([read_wav(r[3], rate=cfg.output_rate) for r in batch]))
        residual = (band_energy(model, wav) - band_energy(model, core)).clamp(min=0)
        h_all[i:i + len(batch)] = h.numpy().astype(np.float16)
        target[i:i + len(batch)] = np.log(residual.numpy() + STORE_FLOOR)
        if progress and (i // BATCH) % 50 == 0:
            print(f"features {name}: {i + len(batch)}/{len(rows)} notes, "
                  f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
    h_all.flush()
    del h_all
    np.save(t_path, target)
    os.replace(part, h_path)
    return np.load(h_path, mmap_mode="r"), target


def training_rows(model: SING, rows, every: int):
    """The rows the noise band trains on: every `every`-th melodic row and every row of an
    unpitched instrument (a drum kit); and the indices of the kit rows among them."""
    pitched = model.pitched(torch.tensor([r[0] for r in rows], dtype=torch.long))
    if pitched is None:
        return rows[::every], []
    melodic = [r for r, p in zip(rows, pitched.tolist()) if p >= 0.5][::every]
    kit = [r for r, p in zip(rows, pitched.tolist()) if p < 0.5]
    return melodic + kit, list(range(len(melodic), len(melodic) + len(kit)))


def smooth_bands(log_target: np.ndarray, width: int = SMOOTH_BANDS) -> np.ndarray:
    """Log band energies (N, bands, F) averaged, as energies, over `width` neighbouring
    bands (edges: over those that exist).

    Why: a band of 375 Hz holds a partial of one note and none of the next, so per band
    the target jumps by 60 dB from pitch to pitch, and a fit in the log (a median) then
    sits far below the energy that is there: 18 dB too quiet on a square lead. Above
    6 kHz the ear's critical bands are 0.7-2.6 kHz wide: it hears the energy of about
    three bands together, which the average keeps and the fit can follow.
    """
    energy = torch.from_numpy(np.exp(log_target.astype(np.float64))).float()
    n, bands, frames = energy.shape
    flat = energy.permute(0, 2, 1).reshape(-1, 1, bands)
    kernel = torch.ones(1, 1, width)
    total = F.conv1d(flat, kernel, padding=width // 2)
    count = F.conv1d(torch.ones(1, 1, bands), kernel, padding=width // 2)
    smooth = (total / count).reshape(n, frames, bands).permute(0, 2, 1)
    return np.log(smooth.numpy() + ENERGY_FLOOR).astype(np.float32)


def run(init, data, out, epochs: int = 40, lr: float = 5e-3, batch: int = 32,
        resume: bool = False, seed: int = 0, progress: bool = True, every: int = 4,
        kit_repeat: int = 4, force: bool = False) -> dict:
    """Train the noise band of `init`'s full-band model on dataset `data` into `out`.

    every: use every `every`-th training note (and every `(every + 1) // 2`-th held-out
        one): the head has 140 k weights and each note gives 257 frames, so a quarter of
        gm19's 7,150 notes (460 k frames) is plenty, and computing features is the cost.
        Every note of a drum kit trains whatever `every` is, `kit_repeat` times an epoch:
        a kit's keys are each a sound of their own, a few hundred notes in all, and most
        of a hi-hat is above 8 kHz, where the core has nothing.
    """
    from singsynth.model.checkpoint import atomic_save_tensors, load_model, save_model

    out, data = Path(out), Path(data)
    mine = ["state-highband.safetensors", "log.jsonl", "model.safetensors",
            "features-train-h.npy", "features-train-target2.npy",
            "features-test-h.npy", "features-test-target2.npy"]
    if out.exists() and any((out / m).exists() for m in mine) and not resume:
        if not force:
            raise ConfigError(f"{out} holds a previous run; pass --resume to continue it or "
                              "-f to start over")
        for m in mine:   # only what this stage writes: -f never empties a folder
            (out / m).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = full_band_model(load_model(init)).eval()
    rate = model.config.output_rate
    train_rows, kit = training_rows(model, read_split(data, "train", rate, model.instruments),
                                    every)
    test_rows = read_split(data, "test", rate, model.instruments)[::(every + 1) // 2]
    h_train, t_train = features(model, train_rows, out, "train", progress)
    h_test, t_test = features(model, test_rows, out, "test", progress)
    t_train, t_test = smooth_bands(t_train), smooth_bands(t_test)
    head = model.noise
    optimizer = torch.optim.Adam(head.net.parameters(), lr=lr)

    @torch.no_grad()
    def conditioning(rows, idx) -> torch.Tensor:
        """The frozen embeddings of notes `idx` of `rows`, (len(idx), 26)."""
        return model._inputs(torch.tensor([rows[i][0] for i in idx]),
                             torch.tensor([rows[i][1] for i in idx]),
                             torch.tensor([rows[i][2] for i in idx]))
    state_path, log_path = out / "state-highband.safetensors", out / "log.jsonl"
    first = 0
    if resume and state_path.exists():
        from safetensors.torch import load_file
        state = load_file(state_path)
        head.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        opt = optimizer.state_dict()
        for i, p in enumerate(head.net.parameters()):
            opt["state"][i] = {"step": state[f"adam.{i}.step"], "exp_avg": state[f"adam.{i}.m"],
                               "exp_avg_sq": state[f"adam.{i}.v"]}
        optimizer.load_state_dict(opt)
        first = int(state["epoch"].item())
    gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def test_loss() -> float:
        return sum(F.l1_loss(head.log_energy(torch.from_numpy(np.asarray(h_test[i:i + 64], np.float32)),
                                             conditioning(test_rows, range(i, min(i + 64, len(test_rows))))),
                             torch.from_numpy(t_test[i:i + 64]), reduction="sum").item()
                   for i in range(0, len(test_rows), 64)) / max(1, t_test.size)

    result = {}
    if first == 0:
        # Start each band at its mean log energy over the training frames, not at silence:
        # from -23 (1e-10) Adam would spend most of a short run just climbing there.
        with torch.no_grad():
            head.net[-1].bias.copy_(torch.from_numpy(t_train.mean(axis=(0, 2))))
            head.net[-1].weight.mul_(0.1)
    if first == 0:   # where the head starts, for the log
        with open(log_path, "a") as f:
            f.write(json.dumps({"stage": "highband", "epoch": 0,
                                "test_log_energy_l1": test_loss()}) + "\n")
    for epoch in range(first, epochs):
        start = time.time()
        for group in optimizer.param_groups:   # cosine decay to 1/20 over the run
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))
        order = torch.cat([torch.arange(len(train_rows)),
                           torch.tensor(kit, dtype=torch.long).repeat(kit_repeat - 1)])
        order = order[torch.randperm(len(order), generator=gen)]
        total = 0.0
        for i in range(0, len(order), batch):
            idx = np.sort(order[i:i + batch].numpy())
            h = torch.from_numpy(np.asarray(h_train[idx], np.float32))
            loss = F.l1_loss(head.log_energy(h, conditioning(train_rows, idx)),
                             torch.from_numpy(t_train[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        result = {"stage": "highband", "epoch": epoch + 1, "train_loss": total / len(order),
                  "test_log_energy_l1": test_loss(), "seconds": round(time.time() - start, 1)}
        with open(log_path, "a") as f:
            f.write(json.dumps(result) + "\n")
        if progress:
            print(json.dumps(result), file=sys.stderr, flush=True)
        model.provenance.update({"highband": {"data": data.name, "epochs": epoch + 1,
                                              "init": str(init)}})
        save_model(out / "model.safetensors", model, model.provenance)
        opt = optimizer.state_dict()["state"]
        tensors = {f"net.{k}": v.detach().clone() for k, v in head.net.state_dict().items()}
        for i, st in opt.items():
            tensors[f"adam.{i}.step"] = torch.as_tensor(st["step"]).reshape(1).float()
            tensors[f"adam.{i}.m"], tensors[f"adam.{i}.v"] = st["exp_avg"], st["exp_avg_sq"]
        tensors["epoch"] = torch.tensor([epoch + 1])
        atomic_save_tensors(state_path, tensors, {"stage": "highband"})
    return result
