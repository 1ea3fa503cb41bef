"""Training: `run(...)` builds the model, loads the data and runs the stages in order.

Each stage writes `OUT/<stage>.safetensors` (a playable checkpoint with provenance),
`OUT/state-<stage>.safetensors` (what `--resume` continues from) and appends one JSON line
per epoch to `OUT/log.jsonl`. `OUT/model.safetensors` is the last stage's checkpoint.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from singsynth.errors import ConfigError
from singsynth.files import atomic_path, read_bytes, write_atomic
from singsynth.model.checkpoint import load_checkpoint, save_model
from singsynth.model.sing import build
from singsynth.train import extend
from singsynth.train.config import STAGES, TrainConfig
from singsynth.train.distributed import init_world, shutdown
from singsynth.train.stages import TASKS, TrainData
from singsynth.train.trainer import Loop, log_record


def load_data(root, split: str, instruments=None) -> tuple[TrainData, list[str]]:
    """A dataset split, its audio memory-mapped from an int16 file decoded on first use
    (`NSynthDataset.audio_file`: NSynth's training split does not fit in memory), and
    the instrument vocabulary: `instruments` if given, else the whole dataset's."""
    from singsynth.data import NSynthDataset

    ds = NSynthDataset(root, split=split, instruments=instruments)
    audio = ds.audio_file(progress=sys.stderr.isatty())  # a bar only where one is watched
    return TrainData(ds.instrument, ds.pitch, ds.velocity, audio), list(ds.instruments)


def forget_stages(out: Path, stages) -> None:
    """Delete what earlier runs of `stages` left in `out` (for -f), keeping other stages."""
    for s in stages:
        for f in (out / f"state-{s}.safetensors", out / f"{s}.safetensors"):
            f.unlink(missing_ok=True)
    (out / "model.safetensors").unlink(missing_ok=True)
    log = out / "log.jsonl"
    if log.exists():
        text = read_bytes(log, "a training log", 1 << 30, ConfigError).decode(errors="replace")
        keep = [line for line in text.splitlines()
                if (log_record(line) or {}).get("stage") not in (None, *stages)]
        write_atomic(log, "".join(line + "\n" for line in keep))


def init_weights(model, path) -> None:
    """Start `model` from checkpoint `path`: every tensor with a matching name and shape."""
    trained, _ = load_checkpoint(path)
    if trained.instruments != model.instruments:
        added = [i for i in model.instruments if i not in trained.instruments]
        hint = (f"; pass --extend (extend: true) to add the dataset's {len(added)} new "
                "instruments to it, training only their embeddings" if added else "")
        raise ConfigError(f"init {path}: its instrument vocabulary ({len(trained.instruments)} "
                          f"instruments) does not match the dataset's ({len(model.instruments)})"
                          f"{hint or '; use the dataset it was trained on'}")
    mine, theirs = model.state_dict(), trained.state_dict()
    shared = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    if not shared:
        raise ConfigError(f"init {path}: no tensor of it fits a {model.config.name!r} model")
    model.load_state_dict(shared, strict=False)
    fresh = sorted(k for k in mine if k not in shared)
    print(f"init from {path}: {len(shared)} tensors loaded"
          + (f", {len(fresh)} new ({', '.join(fresh[:4])})" if fresh else ""), file=sys.stderr)


def run(cfg: TrainConfig, data, out, stages=STAGES, resume: bool = False, device="auto",
        force: bool = False, config_path: str | None = None) -> Path:
    """Train `stages` of `cfg` on dataset folder `data`, writing into folder `out`."""
    out = Path(out)
    world = init_world(device)
    try:
        # Only the requested stages count: `--stage lstm` after `--stage ae` is no rerun.
        previous_run = [s for s in stages if (out / f"state-{s}.safetensors").exists()]
        if previous_run and not (resume or force):
            raise ConfigError(f"{out} holds a previous run of stage {previous_run[0]}; pass "
                              "--resume to continue it or -f to start over")
        if world.main and out.exists():
            if force and not resume:
                forget_stages(out, stages)
            # A kill during an atomic save leaves its temporary file behind.
            for tmp in [*out.glob("*.safetensors.*.tmp"), *out.glob(".model.safetensors.*.tmp"),
                        *out.glob(".log.jsonl.*.tmp")]:
                tmp.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        world.barrier()
        new = []
        if cfg.extend:
            extend.check_stages(stages)
            vocabulary, new = extend.vocabulary(cfg.init, data)
        train, instruments = load_data(data, "train", vocabulary if new else None)
        test, _ = load_data(data, "test", vocabulary if new else None)
        if len(test) == 0:
            raise ConfigError(f"{data}: the dataset has no test notes (pitch-completion split "
                              "is empty); add pitches per instrument")
        torch.manual_seed(cfg.seed)
        model = (extend.extended_model(cfg.init, instruments) if new
                 else build(cfg.model, instruments)).to(world.device)
        if train.audio.shape[1] != model.config.note_samples:
            raise ConfigError(f"{data} holds {train.audio.shape[1] // 4} Hz notes; the three "
                              f"stages train the model's {model.config.sample_rate} Hz core on "
                              "a dataset at that rate (a 48 kHz dataset teaches a full-band "
                              "model's noise band: --stage highband)")
        first = STAGES.index(stages[0])
        resuming = resume and (out / f"state-{stages[0]}.safetensors").exists()
        old = len(instruments) - len(new)
        if new and not resuming:
            extend.report(extend.choose_rows(model, old, train, world.device), new)
        if new:
            extend.freeze_old(model, old)
        elif cfg.init and not resuming:
            init_weights(model, cfg.init)
        elif first > 0 and not resuming:
            previous = out / f"{STAGES[first - 1]}.safetensors"
            if not previous.exists():
                raise ConfigError(f"stage {stages[0]} starts from {previous}, which does not "
                                  f"exist; run --stage {STAGES[first - 1]} first")
            trained, _ = load_checkpoint(previous)
            if trained.config != model.config:
                raise ConfigError(f"{previous}: a {trained.config.name!r} model, but the config "
                                  f"says {cfg.model!r}; use the same --config as that stage")
            if trained.instruments != instruments:
                raise ConfigError(f"{previous}: its instrument vocabulary ({len(trained.instruments)}"
                                  f" instruments) does not match the dataset's ({len(instruments)})"
                                  "; use the same --data as that stage or start a new --out folder")
            model.load_state_dict(trained.state_dict())
        provenance = {"dataset": str(data), "train_notes": len(train), "test_notes": len(test),
                      "config": cfg.to_dict(), "config_file": config_path, "epochs": {}}
        if new:
            provenance["extended"] = {"from": str(cfg.init), "added": new,
                                      "trained": "the added instruments' embedding rows only"}
        for name in stages:
            stage_cfg = getattr(cfg, name)
            task = TASKS[name](model, stage_cfg, train, test, world.device)
            loop = Loop(task, stage_cfg, model, out, world, cfg.seed, cfg.save_minutes, provenance,
                        amp=cfg.amp)
            try:
                result = loop.run(resume)
            except torch.cuda.OutOfMemoryError:
                raise ConfigError(f"{name}.batch {stage_cfg.batch} does not fit in GPU memory; "
                                  f"lower it (e.g. {name}.batch={stage_cfg.batch // 2})") from None
            provenance["epochs"][name] = stage_cfg.epochs
            provenance["stage"] = name
            # A stage finished before a resume reports the losses its state recorded.
            provenance.setdefault("losses", {})[name] = {
                k: v for k, v in result.items() if k.startswith(("train_", "test_"))}
            if world.main:
                save_model(out / f"{name}.safetensors", model, provenance)
            world.barrier()
        if world.main:
            with atomic_path(out / "model.safetensors") as tmp:  # a fresh name, never a link
                shutil.copyfile(out / f"{stages[-1]}.safetensors", tmp)
            print(f"wrote {out / 'model.safetensors'}", file=sys.stderr)
        return out / "model.safetensors"
    finally:
        shutdown(world)
