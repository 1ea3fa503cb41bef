"""Evaluation: the paper's Table 1, pitch accuracy, a sampler baseline, and a report.

`run(...)` is what `singsynth eval` does: load a checkpoint, score it on its dataset
(`evaluate.py`), and write REPORT_DIR/report.md with figures (`report.py`, `plots.py`).
Submodules import torch and matplotlib lazily, so `singsynth.eval.plots` stays light.
"""
from __future__ import annotations

from pathlib import Path


def require_extras(modules=("librosa", "matplotlib")) -> None:
    """Raise SingsynthError if a module of the `eval` extra is missing."""
    import importlib.util

    from singsynth.errors import SingsynthError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SingsynthError(f"evaluation needs {' and '.join(missing)}; install them with "
                             "pip install 'singsynth[eval]'")


def run(checkpoint, out, data=None, notes: int | None = 200, log=None, force: bool = False,
        seed: int = 0, batch: int = 16, examples: int = 4, device=None) -> Path:
    """Evaluate `checkpoint` on dataset folder `data` and write the report folder `out`.

    Args:
        data: dataset folder; None uses the one recorded in the checkpoint's provenance.
        notes: at most this many notes scored per split (None: all).
        log: a training log.jsonl to draw as loss curves; None uses the log.jsonl beside
            the checkpoint when there is one (a `singsynth train --out` folder).
    Returns:
        the path of out/report.md.
    """
    from singsynth.errors import DatasetError
    from singsynth.eval.evaluate import evaluate
    from singsynth.eval.report import check_out, write_report
    from singsynth.model.checkpoint import load_model
    from singsynth.model.header import resolve
    from singsynth.model.devices import choose_device

    check_out(out, force)   # fail before minutes of work, not after
    require_extras()
    device = choose_device(device)
    model = load_model(checkpoint)
    provenance = getattr(model, "provenance", {}) or {}
    if data is None:
        data = provenance.get("dataset")
        if not data:
            raise DatasetError(f"{checkpoint}: the checkpoint does not record its dataset; "
                               "pass --data DIR")
    from singsynth.data.nsynth import dataset_rate, read_examples
    rate = dataset_rate(read_examples(data))
    if rate != model.config.sample_rate:
        raise DatasetError(f"{data} holds {rate} Hz notes; eval scores the model's "
                           f"{model.config.sample_rate} Hz core on a dataset at that rate (the "
                           "full band is compared with its SoundFont by benchmarks/timbre.py)")
    if log is None:
        beside = resolve(checkpoint).parent / "log.jsonl"
        log = beside if beside.is_file() else None
    elif not Path(log).is_file():
        raise DatasetError(f"{log}: no such training log; pass RUN_DIR/log.jsonl or omit --log")
    if log is not None:
        from singsynth.eval.plots import read_log
        read_log(log)   # a malformed log fails now, not after the evaluation
    results, media = evaluate(model, data, notes=notes, seed=seed, batch=batch,
                              examples=examples, device=device)
    results.update(checkpoint=str(resolve(checkpoint)), config=model.config.name,
                   stage=provenance.get("stage", "unknown"),
                   parameters=model.parameter_count("generator"))
    return write_report(out, results, media, log=log, force=force)
