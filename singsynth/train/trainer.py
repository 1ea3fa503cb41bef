"""The loop the three stages share: sampling, schedule, resume, logging, progress.

Everything random in a step is drawn from generators seeded by (seed, epoch, step), so a
resumed run, a single process and N torchrun processes all see the same global batches:
each rank trains on its slice `batch[rank::world]`, and DDP averages the gradients.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from singsynth.checkpoint import atomic_save_tensors, read_tensors
from singsynth.errors import ConfigError
from singsynth.train.config import StageConfig


def generator(*seeds: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of ints (stable across runs and machines)."""
    value = 0
    for s in seeds:
        value = (value * 1_000_003 + int(s)) % (2**62)
    return torch.Generator().manual_seed(value)


def autocast_dtype(amp: str, device) -> torch.dtype | None:
    """bf16 on CUDA under "auto" (tensor cores; the loss's STFT still runs in float32),
    on any device under "bf16"; None = float32."""
    on = amp == "bf16" or (amp == "auto" and torch.device(device).type == "cuda")
    return torch.bfloat16 if on else None


def autocast(amp: str, device):
    """The forward pass's precision context (see `autocast_dtype`)."""
    dtype = autocast_dtype(amp, device)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32,
                          enabled=dtype is not None)


def learning_rate(cfg: StageConfig, step: int, total: int) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to `lr * final_lr`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    floor = cfg.lr * cfg.final_lr
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _flatten_optimizer(optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"optim.{index}.{slot}"] = torch.as_tensor(value).float() \
                if slot == "step" else value
    return tensors, {"param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        _, index, slot = name.split(".", 2)
        state.setdefault(int(index), {})[slot] = value
    return {"state": state, "param_groups": meta["param_groups"]}


class Loop:
    """Runs one stage: a `task` supplies the module, its loss and its evaluation.

    A task has: `name`, `module` (what DDP wraps), `parameters()`, `examples` (number of
    training notes), `steps_per_batch` (TBPTT windows), `loss(module, indices, gen,
    window) -> tensor` and `evaluate() -> dict`.
    """

    def __init__(self, task, cfg: StageConfig, model, out: Path, world, seed: int,
                 save_minutes: float, provenance: dict, amp: str = "off"):
        self.task, self.cfg, self.model, self.out = task, cfg, model, Path(out)
        self.amp = amp
        self.world, self.seed, self.save_minutes = world, seed, save_minutes
        self.provenance = provenance
        if cfg.batch % world.size:
            raise ConfigError(f"{task.name}.batch {cfg.batch} must be divisible by the "
                              f"{world.size} training processes")
        self.batches = math.ceil(task.examples / cfg.batch)
        self.total = cfg.epochs * self.batches * task.steps_per_batch
        self.state_path = self.out / f"state-{task.name}.safetensors"
        self.log_path = self.out / "log.jsonl"

    # --- state -----------------------------------------------------------------------
    def save_state(self, optimizer, epoch: int, batch: int, done: bool, result=None):
        if not self.world.main:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {"stage": self.task.name, "epoch": epoch, "batch": batch, "done": done,
                "instruments": self.model.instruments, "result": result or {}, **opt_meta}
        atomic_save_tensors(self.state_path, tensors, {"state": json.dumps(meta)})

    def load_state(self, optimizer) -> tuple[int, int, dict | None]:
        """Restore model, optimizer and RNG; returns (epoch, batch, the last epoch's
        log record if the stage had finished, else None)."""
        tensors, metadata = read_tensors(self.state_path)
        meta = json.loads(metadata["state"])
        if meta["instruments"] != self.model.instruments:
            raise ConfigError(f"{self.state_path}: its instrument vocabulary "
                              f"({len(meta['instruments'])} instruments) does not match the "
                              f"dataset's ({len(self.model.instruments)}); use the same --data "
                              "or start a new --out folder")
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items()
                                        if k.startswith("model.")})
        except RuntimeError:  # missing keys or other shapes: another model size
            raise ConfigError(f"{self.state_path}: saved by a different model size than "
                              f"{self.model.config.name!r}; resume with the run's own --config "
                              "or start a new --out folder") from None
        optimizer.load_state_dict(_unflatten_optimizer(
            {k: v for k, v in tensors.items() if k.startswith("optim.")}, meta))
        torch.set_rng_state(tensors["rng.torch"])
        # A finished stage whose config now asks for more epochs trains on (the cosine
        # schedule is recomputed over the new total).
        finished = meta["done"] and meta["epoch"] >= self.cfg.epochs
        return meta["epoch"], meta["batch"], meta.get("result", {}) if finished else None

    def trim_log(self, epochs: int):
        """Drop this stage's log lines past `epochs` (logged, then killed before the save)."""
        if not self.world.main or not self.log_path.exists():
            return
        lines = self.log_path.read_text().splitlines()
        keep = [line for line in lines if line.strip() and not (
            json.loads(line).get("stage") == self.task.name and json.loads(line)["epoch"] > epochs)]
        if len(keep) != len(lines):
            tmp = self.log_path.with_name(self.log_path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            tmp.replace(self.log_path)

    def log(self, record: dict):
        if self.world.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    # --- the loop --------------------------------------------------------------------
    def run(self, resume: bool) -> dict:
        cfg, task, world = self.cfg, self.task, self.world
        optimizer = torch.optim.Adam(task.param_groups(), lr=cfg.lr)
        epoch = batch = 0
        if resume and self.state_path.exists():
            epoch, batch, finished = self.load_state(optimizer)
            if finished is not None:
                return {**finished, "stage": task.name, "skipped": True}
            self.trim_log(epoch)
        module = world.wrap(task.module)
        result = {}
        last_save = time.monotonic()
        while epoch < cfg.epochs:
            order = torch.randperm(task.examples, generator=generator(self.seed, 1, epoch))
            started, seen, running = time.monotonic(), 0, 0.0
            bar = tqdm(range(batch, self.batches), desc=f"{task.name} {epoch + 1}/{cfg.epochs}",
                       disable=not world.main, leave=False, file=sys.stderr,
                       mininterval=0.5 if sys.stderr.isatty() else 30)
            task.train()
            for batch in bar:
                indices = order[batch * cfg.batch:(batch + 1) * cfg.batch]
                gen = generator(self.seed, 2, epoch, batch)
                for window in range(task.steps_per_batch):
                    step = (epoch * self.batches + batch) * task.steps_per_batch + window
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(cfg, step, self.total) * group.get("lr_scale", 1.0)
                    with autocast(self.amp, world.device):
                        loss = task.loss(module, indices, gen, window, step, world)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(task.parameters(), cfg.grad_clip)
                    optimizer.step()
                    running += loss.item()
                seen += 1
                bar.set_postfix(loss=f"{running / (seen * task.steps_per_batch):.4f}", refresh=False)
                if time.monotonic() - last_save > self.save_minutes * 60:
                    self.save_state(optimizer, epoch, batch + 1, False)
                    last_save = time.monotonic()
            bar.close()
            seconds = time.monotonic() - started
            task.eval()
            result = {"stage": task.name, "epoch": epoch + 1,
                      "train_loss": running / max(1, seen * task.steps_per_batch),
                      **(task.evaluate() if world.main else {}),
                      "seconds": round(seconds, 2),
                      "notes_per_s": round(seen * cfg.batch / max(seconds, 1e-9), 2),
                      "lr": optimizer.param_groups[0]["lr"]}
            self.log(result)
            if world.main:
                print(json.dumps(result), file=sys.stderr, flush=True)
            epoch, batch = epoch + 1, 0
            self.save_state(optimizer, epoch, 0, epoch >= cfg.epochs, result)
            last_save = time.monotonic()
            world.barrier()
        return result
