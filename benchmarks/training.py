"""Training speed per stage: `python benchmarks/training.py [--sizes small,paper] [--steps 4] [--paper-steps 2]`.

Notes per second of each of the paper's three stages (ae, lstm, e2e) at the `small`
and `paper` model sizes, on the CPU and on CUDA when present. The data is random audio
held in memory (no dataset needed); each step is what `singsynth train`'s loop does for
one batch (the stage's loss on the same crops, backward, gradient clipping, an Adam
step; for lstm all nine 32-step TBPTT windows of the batch). One untimed warm-up step,
then `--steps` timed ones.

Stage settings come from configs/<size>.yaml; the paper's batch of 256 whole notes is
cut to `--paper-batch` on the CPU so a run fits in a few minutes. Pause the background
training first (see benchmarks/README.md).
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from singsynth.model.sing import build
from singsynth.train.config import STAGES, load_config
from singsynth.train.distributed import World
from singsynth.train.stages import TASKS, TrainData
from singsynth.train.trainer import generator, learning_rate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
INSTRUMENTS = ["piano", "organ", "guitar", "strings"]


def random_notes(count: int, seed: int = 0) -> TrainData:
    """`count` notes of decaying noise (4 s at 16 kHz) with random labels."""
    gen = torch.Generator().manual_seed(seed)
    envelope = torch.exp(-torch.arange(64000) / 16000.0)
    audio = 0.1 * torch.randn(count, 64000, generator=gen) * envelope
    return TrainData(torch.randint(0, len(INSTRUMENTS), (count,), generator=gen),
                     torch.randint(21, 109, (count,), generator=gen),
                     torch.randint(0, 5, (count,), generator=gen), audio)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_stage(size: str, stage: str, device: torch.device, steps: int, batch: int | None):
    """(batch, mean seconds per step, notes per second at the mean and the best step)."""
    cfg = load_config(CONFIGS / f"{size}.yaml")
    stage_cfg = getattr(cfg, stage)
    if batch:
        stage_cfg.batch = batch
    torch.manual_seed(0)
    model = build(size, INSTRUMENTS).to(device)
    data = random_notes(stage_cfg.batch * (steps + 1))
    task = TASKS[stage](model, stage_cfg, data, random_notes(1, seed=1), device)
    if stage == "lstm":
        task.targets  # the frozen encoder's targets: computed once before the first epoch
    world = World(0, 1, device)
    optimizer = torch.optim.Adam(task.parameters(), lr=stage_cfg.lr)
    task.train()
    times = []
    for batch_index in range(steps + 1):
        indices = torch.arange(batch_index * stage_cfg.batch, (batch_index + 1) * stage_cfg.batch)
        gen = generator(0, 2, 0, batch_index)
        sync(device)
        started = time.perf_counter()
        for window in range(task.steps_per_batch):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(stage_cfg, window, 1000)
            loss = task.loss(task.module, indices, gen, window, window, world)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if stage_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(task.parameters(), stage_cfg.grad_clip)
            optimizer.step()
        sync(device)
        times.append(time.perf_counter() - started)
    # The mean is what a training run sees (an e2e step's cost depends on its random
    # crop: the LSTM runs from step 0 to the crop's end); the fastest step is the least
    # disturbed by other jobs on a shared machine.
    per_step, best = statistics.mean(times[1:]), min(times[1:])
    return stage_cfg.batch, per_step, stage_cfg.batch / per_step, stage_cfg.batch / best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="small,paper")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--steps", type=int, default=4, help="timed steps per stage (default 4)")
    p.add_argument("--paper-steps", type=int, default=2,
                   help="timed steps per stage at the paper size (default 2)")
    p.add_argument("--paper-batch", type=int, default=2,
                   help="paper-size batch on the CPU (default 2; CUDA uses the config's)")
    p.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, plus cuda if present)")
    args = p.parse_args()
    devices = args.devices.split(",") if args.devices else (
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'size':<6} {'stage':<5} {'device':<6} {'batch':>5} {'s/step':>8} {'notes/s':>9} "
          f"{'best n/s':>9}")
    for device in devices:
        for size in args.sizes.split(","):
            for stage in args.stages.split(","):
                batch = args.paper_batch if size == "paper" and device == "cpu" else None
                steps = args.paper_steps if size == "paper" else args.steps
                b, per_step, rate, best = bench_stage(size, stage, torch.device(device),
                                                      steps, batch)
                print(f"{size:<6} {stage:<5} {device:<6} {b:>5} {per_step:>8.3f} {rate:>9.1f} "
                      f"{best:>9.1f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
