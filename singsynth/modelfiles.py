"""Where checkpoints live and how they are identified, without importing torch.

`render` reads a checkpoint's header and hash before deciding whether it needs the model
at all, so these helpers must stay free of torch (see `singsynth.diskcache`).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

MODELS_DIR = Path(os.environ.get("SINGSYNTH_MODELS", Path(__file__).resolve().parents[1] / "models"))
DEFAULT_MODEL = "default"


def resolve(name_or_path=None) -> Path:
    """A model name ('default', 'small-gm') in `models/`, or a path to a checkpoint file."""
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    candidate = Path(name)
    if candidate.suffix or os.sep in name or candidate.exists():
        return candidate
    return MODELS_DIR / f"{name}.safetensors"


def file_hash(path, length: int = 16) -> str:
    """Hex SHA-256 prefix of a file's bytes: identifies the exact weights for caches."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
