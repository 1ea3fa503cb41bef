"""Checkpoint files by name, hash and JSON header, without torch.

The bottom of the model package: `files` (the lazy source, `open_source`) and
`checkpoint` (the full loader) both read names and headers through here, so neither
needs the other to find a file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from singsynth.errors import SingsynthError
from singsynth.files import open_regular, shipped_dir, shipped_or_path

MODELS_DIR = Path(os.environ.get("SINGSYNTH_MODELS") or shipped_dir("models"))
DEFAULT_MODEL = "default"


def resolve(name_or_path=None) -> Path:
    """A model name ('default', 'small-gm') in `models/`, or a path to a checkpoint file."""
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    return shipped_or_path(name, MODELS_DIR, ".safetensors")


def file_hash(path, length: int = 16) -> str:
    """Hex SHA-256 prefix of a file's bytes: identifies the exact weights for caches."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def read_header(path) -> dict:
    """A safetensors file's JSON header: {tensor name: {dtype, shape, data_offsets}, ...,
    "__metadata__": {str: str}}. Read as JSON, never unpickled; OSError or ValueError
    for a file that is not one."""
    try:  # a regular file only: a FIFO would block this open forever
        f = open_regular(path, "a checkpoint")
    except SingsynthError as exc:
        raise OSError(str(exc)) from None
    with f:
        size = int.from_bytes(f.read(8), "little")
        if not 2 <= size <= 100_000_000:
            raise ValueError("implausible header size")
        return json.loads(f.read(size))


def usable_velocities(velocities) -> bool:
    """A checkpoint's velocities: MIDI velocities 1-127, strictly ascending (the engine
    interpolates between them)."""
    return (isinstance(velocities, list) and 1 <= len(velocities) <= 127
            and all(type(v) is int and 1 <= v <= 127 for v in velocities)
            and all(a < b for a, b in zip(velocities, velocities[1:])))
