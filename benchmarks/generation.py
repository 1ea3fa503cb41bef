"""Generation speed: seconds of audio per second of compute, and time to the first chunk.

For the `paper` and `small` sizes, at batch 1, 8 and 64, on CPU (and CUDA when present).
Targets (issue 2): `paper` >= 10 s of audio per second at batch 8 on a 2-core CPU;
`small` first streamed chunk <= 10 ms; `paper` >= 50,000 s/s on an H200.

    python benchmarks/generation.py [--sizes paper,small] [--batches 1,8,64] [--device cpu]
"""
import argparse
import statistics
import time

import torch

from singsynth.model.sing import build


def inputs(batch, n_instruments, device):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, n_instruments, (batch,), generator=g).to(device),
            torch.randint(24, 96, (batch,), generator=g).to(device),
            torch.randint(0, 5, (batch,), generator=g).to(device))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def audio_per_second(model, batch, device, dtype, min_seconds=2.0):
    """Seconds of 16 kHz audio generated per second of wall time (median of runs)."""
    args = inputs(batch, len(model.instruments), device)
    model.generate(*args, dtype=dtype)                       # warm-up
    sync(device)
    rates, spent = [], 0.0
    while spent < min_seconds or len(rates) < 2:
        start = time.perf_counter()
        model.generate(*args, dtype=dtype)
        sync(device)
        took = time.perf_counter() - start
        rates.append(batch * model.config.note_samples / model.config.sample_rate / took)
        spent += took
        if took > 20:                                        # one slow run is enough
            break
    return statistics.median(rates)


def first_chunk_ms(model, device, repeats=20):
    """Milliseconds from calling `stream` to holding its first 256-sample chunk (p50, p95)."""
    args = inputs(1, len(model.instruments), device)
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        next(model.stream(*args, chunk=256))
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    times = sorted(times[2:])
    return times[len(times) // 2], times[int(0.95 * (len(times) - 1))]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="paper,small")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--device", default=None, help="cpu, cuda (default: both when present)")
    p.add_argument("--instruments", type=int, default=1006)
    args = p.parse_args()
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'size':6} {'device':6} {'dtype':8} {'batch':>5} {'audio s/s':>10}")
    for device_name in devices:
        device = torch.device(device_name)
        dtypes = [None] + ([torch.bfloat16] if device.type == "cuda" else [])
        for size in args.sizes.split(","):
            torch.manual_seed(0)
            model = build(size, [str(i) for i in range(args.instruments)], with_encoder=False)
            model = model.to(device).eval()
            for dtype in dtypes:
                for batch in [int(b) for b in args.batches.split(",")]:
                    rate = audio_per_second(model, batch, device, dtype)
                    print(f"{size:6} {device_name:6} {str(dtype or 'float32').replace('torch.', ''):8} "
                          f"{batch:5d} {rate:10.1f}", flush=True)
            p50, p95 = first_chunk_ms(model, device)
            print(f"{size:6} {device_name:6} first streamed chunk (256 samples, batch 1): "
                  f"p50 {p50:.2f} ms, p95 {p95:.2f} ms", flush=True)
            del model


if __name__ == "__main__":
    main()
