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

from singsynth.errors import CheckpointError, ConfigError
from singsynth.files import read_bytes, write_atomic
from singsynth.model.checkpoint import atomic_save_tensors, read_tensors
from singsynth.train.config import StageConfig

# The way out of a state file that cannot be resumed from.
STATE_FIX = "delete it to restart the stage, or pass -f instead of --resume to start the run over"
# The slots Adam (amsgrad off) keeps per trained parameter, as `save_state` writes them.
ADAM_SLOTS = ("exp_avg", "exp_avg_sq", "step")
# The running figures of an interrupted epoch, kept in the state's metadata: batches
# trained, sum of their losses and seconds spent, so its logged record covers them all.
CARRIED = ("seen", "loss_sum", "seconds")


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


def _unflatten_optimizer(tensors: dict, param_groups: list) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        _, index, slot = name.split(".", 2)
        state.setdefault(int(index), {})[slot] = value
    return {"state": state, "param_groups": param_groups}


def log_record(line: str) -> dict | None:
    """One log.jsonl line as a dict; None for a blank line or one a kill cut short (the
    last line of a log can be half-written: it is dropped, not fatal)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _bad_state(path, problem: str) -> CheckpointError:
    """One line naming the state file, what is wrong with it and the way out."""
    return CheckpointError(f"{path}: {problem}; {STATE_FIX}")


def _whole(value) -> bool:
    return type(value) is int and value >= 0        # type(): JSON's true is no count


def _non_negative(value) -> bool:
    """A finite JSON number 0 or more."""
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# Key -> (test, what it must be) of the metadata every state has.
_META = {
    "stage": (lambda v: isinstance(v, str), "a stage name"),
    "epoch": (_whole, "a whole number 0 or more"),
    "batch": (_whole, "a whole number 0 or more"),
    "done": (lambda v: isinstance(v, bool), "true or false"),
    "instruments": (lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
                    "a list of names"),
    "result": (lambda v: isinstance(v, dict), "a JSON object"),
    "param_groups": (lambda v: isinstance(v, list) and all(
        isinstance(g, dict) and _non_negative(g.get("lr")) for g in v),
        "a list of optimiser groups, each with its lr"),
}


def _read_meta(path, metadata: dict) -> dict:
    """The state's JSON metadata, refused unless every key has the type the loop uses."""
    if "state" not in metadata:
        raise _bad_state(path, "no training-state metadata (a model checkpoint copied over "
                               "it? those are OUT/<stage>.safetensors)")
    try:
        meta = json.loads(metadata["state"])
    except (json.JSONDecodeError, RecursionError):
        raise _bad_state(path, "metadata 'state' is not valid JSON") from None
    if not isinstance(meta, dict):
        raise _bad_state(path, "metadata 'state' must be a JSON object")
    for key, (ok, what) in _META.items():
        if key not in meta:
            raise _bad_state(path, f"metadata has no {key!r}")
        if not ok(meta[key]):
            raise _bad_state(path, f"metadata {key!r} must be {what}, not {meta[key]!r:.60}")
    return meta


def _carried(path, meta: dict) -> tuple[int, float, float]:
    """(batches, loss sum, seconds) of the saved epoch so far. A state written before
    they were kept has none: its resumed epoch logs the loss of the later batches only."""
    if not any(key in meta for key in CARRIED):
        return 0, 0.0, 0.0
    for key in CARRIED:
        if key not in meta:
            raise _bad_state(path, f"metadata has no {key!r}")
    if not (_whole(meta["seen"]) and meta["seen"] <= meta["batch"]):
        raise _bad_state(path, f"metadata 'seen' must be a whole number 0 to the batch "
                               f"{meta['batch']}, not {meta['seen']!r:.60}")
    for key in ("loss_sum", "seconds"):                # every loss term is >= 0
        if not _non_negative(meta[key]):
            raise _bad_state(path, f"metadata {key!r} must be a finite number 0 or more, "
                                   f"not {meta[key]!r:.60}")
    return meta["seen"], float(meta["loss_sum"]), float(meta["seconds"])


class Loop:
    """Runs one stage: a `task` supplies the module, its loss and its evaluation.

    A task has: `name`, `module` (what DDP wraps), `parameters()`, `order` (an epoch's
    training notes as indices into its data: drum kits may repeat, `kit_order`), `examples`
    (their number), `steps_per_batch` (TBPTT windows), `loss(module, indices, gen,
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
    def save_state(self, optimizer, epoch: int, batch: int, done: bool, result=None,
                   carried=(0, 0.0, 0.0)):
        """Write the stage's state; `carried` = (batches, loss sum, seconds) of the epoch
        so far when saved mid-epoch."""
        if not self.world.main:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {"stage": self.task.name, "epoch": epoch, "batch": batch, "done": done,
                "instruments": self.model.instruments, "result": result or {},
                **dict(zip(CARRIED, carried)), **opt_meta}
        atomic_save_tensors(self.state_path, tensors, {"state": json.dumps(meta)})

    def load_state(self, optimizer) -> tuple[int, int, dict | None, tuple[int, float, float]]:
        """Restore model, optimizer and RNG; returns (epoch, batch, the last epoch's
        log record if the stage had finished else None, the epoch's carried figures).

        Everything is checked before anything is loaded: a bad file raises one
        CheckpointError (ConfigError where the config or data differ) and changes nothing.
        """
        path = self.state_path
        tensors, metadata = read_tensors(path)
        meta = _read_meta(path, metadata)
        carried = _carried(path, meta)
        self._check_position(meta)
        if meta["instruments"] != self.model.instruments:
            raise ConfigError(f"{path}: its instrument vocabulary "
                              f"({len(meta['instruments'])} instruments) does not match the "
                              f"dataset's ({len(self.model.instruments)}); use the same --data "
                              "or start a new --out folder")
        self._check_tensors(tensors, optimizer)
        groups = self._param_groups(meta["param_groups"], optimizer)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items()
                                    if k.startswith("model.")})
        optimizer.load_state_dict(_unflatten_optimizer(
            {k: v for k, v in tensors.items() if k.startswith("optim.")}, groups))
        torch.set_rng_state(tensors["rng.torch"])
        # A finished stage whose config now asks for more epochs trains on (the cosine
        # schedule is recomputed over the new total).
        finished = meta["done"] and meta["epoch"] >= self.cfg.epochs
        return meta["epoch"], meta["batch"], meta["result"] if finished else None, carried

    def _check_position(self, meta: dict) -> None:
        """The saved (epoch, batch, done) is one this stage and its config can go on from."""
        path, name = self.state_path, self.task.name
        epoch, batch, done = meta["epoch"], meta["batch"], meta["done"]
        if meta["stage"] != name:
            raise _bad_state(path, f"holds the state of stage {meta['stage']!r:.40}, "
                                   f"not {name!r}")
        if done and (batch or not epoch):
            raise _bad_state(path, f"marks the stage done at epoch {epoch}, batch {batch}; a "
                                   "stage is done only at the start of an epoch after the first")
        if batch > self.batches:
            raise _bad_state(path, f"stopped at batch {batch} of an epoch of {self.batches} "
                                   f"batches ({name}.batch {self.cfg.batch}: is this the run's "
                                   "own --config?)")
        if not done and epoch >= self.cfg.epochs:
            # Nothing would train: the stage would end without its last epoch's record.
            raise ConfigError(f"{path}: stopped in epoch {epoch + 1} of stage {name}, but "
                              f"{name}.epochs is now {self.cfg.epochs}; set {name}.epochs="
                              f"{epoch + 1} or more to finish it, or {STATE_FIX}")

    def _param_groups(self, saved: list, optimizer) -> list:
        """The optimiser's groups to load: the live ones (hyper-parameters come from the
        config), each with its saved lr (set anew each step, but logged at an epoch's
        end even when the resumed epoch has no step left)."""
        live = optimizer.state_dict()["param_groups"]
        if [g.get("params") for g in saved] != [g["params"] for g in live]:
            raise _bad_state(self.state_path, f"its optimiser groups (of "
                             f"{[len(g.get('params') or []) for g in saved]} parameters) do not "
                             f"match this stage's (of {[len(g['params']) for g in live]})")
        return [{**g, "lr": s["lr"]} for g, s in zip(live, saved)]

    def _check_tensors(self, tensors: dict, optimizer) -> None:
        """Names, shapes and dtypes of the saved tensors are those of the live model,
        optimizer and RNG; Adam's moments and step counts hold values it can use."""
        path, model = self.state_path, self.model.state_dict()
        saved = {k[6:] for k in tensors if k.startswith("model.")}
        if not saved:
            raise _bad_state(path, "holds no model tensors")
        if saved != set(model) or any(tensors[f"model.{k}"].shape != v.shape
                                      for k, v in model.items()):
            raise ConfigError(f"{path}: saved by a different model size than "
                              f"{self.model.config.name!r}; resume with the run's own --config "
                              "or start a new --out folder")
        expected = {f"model.{k}": v for k, v in model.items()}
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for index, param in enumerate(params):   # state_dict numbers them in this order
            expected[f"optim.{index}.exp_avg"] = param
            expected[f"optim.{index}.exp_avg_sq"] = param
            expected[f"optim.{index}.step"] = torch.zeros((), dtype=torch.float32)
        expected["rng.torch"] = torch.get_rng_state()
        for name, like in expected.items():
            if name not in tensors:
                raise _bad_state(path, f"tensor {name} is missing")
            got = tensors[name]
            if got.shape != like.shape or got.dtype != like.dtype:
                raise _bad_state(path, f"tensor {name} has shape {list(got.shape)} and dtype "
                                       f"{_dtype(got.dtype)}, expected {list(like.shape)} and "
                                       f"{_dtype(like.dtype)}")
            # A negative second moment makes Adam's sqrt NaN; a negative or fractional
            # step count, its bias correction meaningless.
            if name.endswith(".exp_avg_sq") and (got < 0).any():
                raise _bad_state(path, f"tensor {name} holds negative values")
            if name.endswith(".step") and not (got >= 0 and got == got.round()):
                raise _bad_state(path, f"tensor {name} must hold a whole number of steps, "
                                       f"not {got.item()}")
        extra = sorted(set(tensors) - set(expected))
        if extra:
            raise _bad_state(path, f"unexpected tensor {extra[0]} (a state of another stage?)")

    def trim_log(self, epochs: int):
        """Drop this stage's log lines past `epochs` (logged, then killed before the save)."""
        if not self.world.main or not self.log_path.exists():
            return
        lines = read_bytes(self.log_path, "a training log", 1 << 30,
                           ConfigError).decode(errors="replace").splitlines()
        keep = []
        for line in lines:
            record = log_record(line)
            if record is not None and not (record.get("stage") == self.task.name
                                           and record.get("epoch", 0) > epochs):
                keep.append(line)
        if len(keep) != len(lines):
            write_atomic(self.log_path, "".join(line + "\n" for line in keep))

    def log(self, record: dict):
        if self.world.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    # --- the loop --------------------------------------------------------------------
    def run(self, resume: bool) -> dict:
        cfg, task, world = self.cfg, self.task, self.world
        optimizer = torch.optim.Adam(task.param_groups(), lr=cfg.lr)
        epoch = batch = 0
        # Batches trained, their loss sum and seconds in the current epoch before this
        # process: the epoch's record covers them too after a mid-epoch resume.
        seen, running, elapsed = 0, 0.0, 0.0
        if resume and self.state_path.exists():
            epoch, batch, finished, (seen, running, elapsed) = self.load_state(optimizer)
            if finished is not None:
                return {**finished, "stage": task.name, "skipped": True}
            self.trim_log(epoch)
        module = world.wrap(task.module)
        result = {}
        last_save = time.monotonic()
        while epoch < cfg.epochs:
            order = torch.randperm(task.examples, generator=generator(self.seed, 1, epoch))
            started = time.monotonic() - elapsed
            bar = tqdm(range(batch, self.batches), desc=f"{task.name} {epoch + 1}/{cfg.epochs}",
                       disable=not world.main, leave=False, file=sys.stderr,
                       mininterval=0.5 if sys.stderr.isatty() else 30)
            task.train()
            for batch in bar:
                indices = task.order[order[batch * cfg.batch:(batch + 1) * cfg.batch]]
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
                    self.save_state(optimizer, epoch, batch + 1, False,
                                    carried=(seen, running, time.monotonic() - started))
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
            seen, running, elapsed = 0, 0.0, 0.0
            self.save_state(optimizer, epoch, 0, epoch >= cfg.epochs, result)
            last_save = time.monotonic()
            world.barrier()
        return result
