"""PNG figures for the report: loss curves from a training log, spectrogram grids.

matplotlib runs with the Agg backend (no display needed). Every PNG is written to a
temporary file and renamed, so a killed process never leaves half an image.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from singsynth.errors import SingsynthError
from singsynth.files import atomic_path, read_bytes

SAMPLE_RATE = 16000
DYNAMIC_RANGE_DB = 80.0
STAGE_TITLES = {"ae": "1. autoencoder", "lstm": "2. LSTM (frozen encoder targets)",
                "e2e": "3. end to end"}


def _pyplot():
    from singsynth.eval import require_extras
    require_extras(("matplotlib",))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, png_path) -> Path:
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a fresh temporary name: --plot's folder may hold a planted link at any fixed one
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        _pyplot().close(fig)
    return png_path


def read_log(jsonl_path) -> dict:
    """Epoch records of a training log, grouped by stage in the order they ran.

    Returns:
        stage -> list of records sorted by epoch; a repeated (stage, epoch), as left
        by a restarted run, keeps its last record.
    """
    path = Path(jsonl_path)
    if not path.is_file():
        raise SingsynthError(f"{path}: no training log; pass the log.jsonl that "
                             "`singsynth train --out RUN_DIR` wrote into RUN_DIR")
    stages: dict = {}
    try:
        text = read_bytes(path, "a training log (log.jsonl)", 1 << 30).decode("utf-8")
    except UnicodeDecodeError:
        raise SingsynthError(f"{path}: not a text file, so not a training log; pass the "
                             "log.jsonl that `singsynth train --out RUN_DIR` wrote") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            stage, epoch = str(record["stage"]), int(record["epoch"])
        except (ValueError, KeyError, TypeError):
            raise SingsynthError(f"{path}:{number}: not a training log record (JSON with "
                                 "'stage' and 'epoch'); pass a log.jsonl from singsynth train"
                                 ) from None
        stages.setdefault(stage, {})[epoch] = record
    if not stages:
        raise SingsynthError(f"{path}: the training log is empty (no epoch finished yet)")
    return {s: [recs[e] for e in sorted(recs)] for s, recs in stages.items()}


def plot_log(jsonl_path, png_path) -> Path:
    """Loss curves per training stage (one panel each) from `singsynth train`'s log.jsonl.

    Each panel shows the training loss (the stage's objective: spectral loss for ae and
    e2e, latent MSE for lstm, on its own axis) and the held-out spectral loss of whole
    notes, per epoch.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    stages = read_log(jsonl_path)
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.8), squeeze=False)
    for ax, (stage, records) in zip(axes[0], stages.items()):
        epochs = [r["epoch"] for r in records]
        train = [r.get("train_loss", np.nan) for r in records]
        test = [r.get("test_spectral", np.nan) for r in records]
        ax.plot(epochs, test, "o-", color="tab:red", label="held-out spectral loss")
        if stage == "lstm":
            twin = ax.twinx()
            twin.plot(epochs, train, "s--", color="tab:blue", label="train latent MSE")
            twin.set_ylabel("train latent MSE", color="tab:blue")
            ax.legend(loc="upper right", fontsize=8)
            twin.legend(loc="center right", fontsize=8)
        else:
            ax.plot(epochs, train, "s--", color="tab:blue", label="train loss (stage objective)")
            ax.legend(fontsize=8)
        ax.set_title(STAGE_TITLES.get(stage, stage))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("spectral loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, png_path)


def spectrogram_db(wave, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Power spectrogram in dB, (n_fft // 2 + 1, frames), as the spectral loss sees it."""
    from singsynth.model.dsp import power_spectrogram

    x = torch.as_tensor(np.asarray(wave, dtype=np.float32))[None]
    return 10 * np.log10(power_spectrogram(x, n_fft, hop)[0].numpy() + 1e-10)


def spectrogram_grid(rows, png_path, row_labels=None, title: str | None = None,
                     sample_rate: int = SAMPLE_RATE) -> Path:
    """Spectrograms side by side: one figure row per list in `rows`.

    Args:
        rows: list of rows, each a list of (caption, wave (L,) or None); None leaves
            an empty cell (e.g. no autoencoder in the checkpoint).
        row_labels: optional label per row, drawn left of the row.
    The colour scale is shared within a row (0 dB at the row's loudest bin, 80 dB range),
    so louder and quieter versions of one note compare directly.
    """
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.8 * n_rows),
                             squeeze=False, layout="constrained")
    for r, row in enumerate(rows):
        specs = [None if w is None else spectrogram_db(w) for _, w in row]
        top = max((s.max() for s in specs if s is not None), default=0.0)
        image = None
        for c in range(n_cols):
            ax = axes[r][c]
            if c >= len(row) or specs[c] is None:
                ax.axis("off")
                if c < len(row):
                    ax.set_title(row[c][0], fontsize=9)
                continue
            seconds = specs[c].shape[1] * 256 / sample_rate
            image = ax.imshow(specs[c] - top, origin="lower", aspect="auto", cmap="magma",
                              vmin=-DYNAMIC_RANGE_DB, vmax=0,
                              extent=(0, seconds, 0, sample_rate / 2000))
            ax.set_title(row[c][0], fontsize=9)
            ax.tick_params(labelsize=7)
            if c == 0:
                label = f"{row_labels[r]}\n" if row_labels else ""
                ax.set_ylabel(f"{label}kHz", fontsize=8 if row_labels else 7)
            if r == n_rows - 1:
                ax.set_xlabel("seconds", fontsize=8)
        if image is not None:
            fig.colorbar(image, ax=list(axes[r]), fraction=0.02, pad=0.01, label="dB")
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, png_path)
