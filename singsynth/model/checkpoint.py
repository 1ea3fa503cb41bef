"""Checkpoints: safetensors weights + JSON metadata that describes how to rebuild the model.

Loading never unpickles: a file is accepted only if it parses as safetensors with our
metadata header, its format version is known and every tensor has the shape the
described model expects. Anything else raises `CheckpointError` naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from singsynth.errors import CheckpointError
from singsynth.files import make_public, missing, open_regular, printable
from singsynth.model.config import SINGConfig
from singsynth.model.header import resolve, usable_velocities
from singsynth.model.sing import SING

FORMAT = "singsynth"
FORMAT_VERSION = 1
MAX_INSTRUMENTS = 100_000
# safetensors' names for the float types a checkpoint may hold (loaded as float32).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
# torch.save writes a zip archive of pickles.
_ZIP_MAGIC = b"PK\x03\x04"


def _looks_pickled(head: bytes) -> bool:
    """True for a zip (torch.save) or a pickle; a safetensors file's JSON header starts
    with '{' at byte 8 (its first 8 bytes are the header length, which may begin 0x80)."""
    if len(head) > 8 and head[8:9] == b"{":
        return False
    return head.startswith(_ZIP_MAGIC) or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05")


def atomic_save_tensors(path, tensors: dict, metadata: dict) -> None:
    """Write safetensors to a temporary file beside `path`, then rename over it.

    A kill at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised here and written through our own temporary file: safetensors' save_file
    # may stage the file in a temporary of its own, which a kill would leave behind.
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                metadata={k: str(v) for k, v in metadata.items()})
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        make_public(tmp)                    # mkstemp makes files private; checkpoints are not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open(path):
    """`safe_open` on a checkpoint file, after refusing a missing file or a pickle."""
    path = Path(path)
    if missing(path):
        raise CheckpointError(f"{path}: no such checkpoint file; pass an existing .safetensors "
                              "file, or train one with `singsynth train`")
    # A regular file the user can read (a folder, a FIFO, a device or no permission is
    # one line); safe_open then maps it.
    with open_regular(path, "a .safetensors checkpoint", CheckpointError) as f:
        head = f.read(9)
    if _looks_pickled(head):
        raise CheckpointError(f"{path}: is a Python pickle / torch.save file; singsynth never "
                              "unpickles files (they can run code); convert the weights to a "
                              "singsynth .safetensors checkpoint")
    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path, exc) -> CheckpointError:
    # printable: safetensors quotes the file's own header bytes (newlines, escapes) in exc.
    return CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt: "
                           f"{printable(exc)[:300]}); re-export or re-train the checkpoint")


def _get_tensors(path, f, names) -> dict:
    """The tensors `names` of the open file `f`, refusing NaN and infinite values (a model
    with them renders full-scale noise or silence, and nothing downstream can tell)."""
    try:
        tensors = {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values (a "
                                  "diverged training run?); use an earlier checkpoint")
    return tensors


def read_tensors(path) -> tuple[dict, dict]:
    """Tensors and string metadata of a safetensors file, refusing anything else."""
    with _open(path) as f:
        metadata = f.metadata() or {}
        return _get_tensors(path, f, list(f.keys())), metadata


def model_metadata(model: SING, provenance: dict | None = None) -> dict:
    """The JSON header that lets `load_checkpoint` rebuild `model`."""
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "instruments": json.dumps(model.instruments),
        "velocities": json.dumps(list(model.velocities)),
        "pitch_range": json.dumps([0, model.sequence.pitch.num_embeddings - 1]),
        "sample_rate": str(model.config.output_rate),   # what it plays (the config has the core's)
        "provenance": json.dumps(provenance or {}),
    }


def save_model(path, model: SING, provenance: dict | None = None) -> None:
    """Save `model`'s weights and description atomically to a .safetensors file."""
    atomic_save_tensors(path, model.state_dict(), model_metadata(model, provenance))


def _meta_json(path, metadata: dict, key: str):
    if key not in metadata:
        raise CheckpointError(f"{path}: metadata has no {key!r}; not a singsynth checkpoint")
    try:
        return json.loads(metadata[key])
    # ValueError beyond JSONDecodeError: an integer of over 4,300 digits (Python's limit).
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON") from None


def _check_info(path, info: dict) -> None:
    """CheckpointError unless the decoded metadata has the types and values SING needs."""
    def bad(key, what):
        # repr: the value comes from the file, and may hold newlines or terminal escapes.
        return CheckpointError(f"{path}: metadata {key!r} must be {what}, not "
                               f"{repr(info[key])[:60]}; not a usable singsynth checkpoint")
    instruments, velocities = info["instruments"], info["velocities"]
    if (not isinstance(instruments, list) or not 1 <= len(instruments) <= MAX_INSTRUMENTS
            or not all(isinstance(i, str) for i in instruments)):
        raise bad("instruments", f"a list of 1-{MAX_INSTRUMENTS} names")
    if not usable_velocities(velocities):
        raise bad("velocities", "a list of MIDI velocities 1-127 in ascending order")
    if info["pitch_range"] != [0, 127]:
        raise bad("pitch_range", "[0, 127] (every MIDI pitch)")
    if not isinstance(info["provenance"], dict):
        raise bad("provenance", "a JSON object")


def _describe(path, info: dict, names, device=None) -> SING:
    """The model the metadata describes, on `device` ("meta": shapes only, no memory)."""
    try:
        config = SINGConfig.from_dict(info["config"])
        with torch.device(device or "cpu"):
            return SING(config, info["instruments"], info["velocities"], n_pitches=128,
                        with_encoder=any(k.startswith("encoder.") for k in names))
    except Exception as exc:  # a config that cannot build a model is a bad checkpoint
        raise CheckpointError(f"{path}: cannot rebuild the model it describes: {exc}") from None


def load_checkpoint(path, device=None) -> tuple[SING, dict]:
    """Rebuild the model a checkpoint describes and load its weights.

    Every check that needs no weights comes first, against the header only: the
    metadata, then each tensor's name, shape and dtype against the described model built
    on torch's meta device. So a hostile header that describes a huge model is refused
    before any memory is taken.

    Returns:
        (model in eval mode on `device`, metadata with JSON fields decoded).
    """
    with _open(path) as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise CheckpointError(f"{path}: safetensors file without singsynth metadata; "
                                  "not a singsynth checkpoint")
        version = metadata.get("format_version")
        if version != str(FORMAT_VERSION):
            raise CheckpointError(f"{path}: checkpoint format version {version!r} is not "
                                  f"supported (this singsynth reads version {FORMAT_VERSION}); "
                                  "upgrade singsynth")
        info = {k: _meta_json(path, metadata, k)
                for k in ("config", "instruments", "velocities", "pitch_range", "provenance")}
        _check_info(path, info)
        names = list(f.keys())
        expected = _describe(path, info, names, "meta").state_dict()
        missing = sorted(set(expected) - set(names))
        unexpected = sorted(set(names) - set(expected))
        if missing or unexpected:
            raise CheckpointError(f"{path}: tensors do not match the described model "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        for name in names:
            header = f.get_slice(name)
            shape, dtype = tuple(header.get_shape()), header.get_dtype()
            if shape != tuple(expected[name].shape):
                raise CheckpointError(f"{path}: tensor {name} has shape {shape}, the "
                                      f"described model needs {tuple(expected[name].shape)}")
            if dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"{path}: tensor {name} has dtype {dtype}, expected "
                                      "a float type")
        tensors = _get_tensors(path, f, names)
    model = _describe(path, info, names)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.eval()
    if device is not None:
        model.to(device)
    return model, info


def load_model(name_or_path=None, device=None) -> SING:
    """The model for a name or path (None: `models/default.safetensors`); CheckpointError if bad."""
    path = resolve(name_or_path)
    model, info = load_checkpoint(path, device)
    model.checkpoint_path = str(path)
    model.provenance = info["provenance"]
    return model

