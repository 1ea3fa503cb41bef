"""`ModelSource`: the NoteSource that generates notes with a SING model."""
from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import numpy as np
import torch

from singsynth.errors import CheckpointError
from singsynth.model.checkpoint import load_model
from singsynth.model.header import file_hash
from singsynth.model.sing import SING
from singsynth.notes import NoteKey


class ModelSource:
    """Generate `NoteKey`s with a SING model, on CUDA when available, else CPU.

    Args:
        model: a SING model (e.g. from `singsynth.model.checkpoint.load_model`).
        device: torch device; default CUDA if available, else CPU.
        dtype: compute dtype (bf16 helps on GPU); None for float32.
        max_batch: notes generated per forward pass in `render`; None: 64 on a GPU, 16 on
            a CPU (where larger batches are slower per note: 9.1 ms at 16, 10.4 at 64 for
            the default model on 2 cores, benchmarks/README.md).
    """

    def __init__(self, model: SING, device=None, dtype: torch.dtype | None = None,
                 max_batch: int | None = None):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(device).eval()
        self.dtype = dtype
        if max_batch is None:
            max_batch = 16 if self.device.type == "cpu" else 64
        self.max_batch = max_batch
        self.sample_rate = model.config.output_rate      # 16 or 48 kHz (full band)
        self.note_samples = model.config.output_samples
        self.instruments = list(model.instruments)
        self.velocities = tuple(model.velocities)
        self._identity = None

    def __reduce__(self):
        # A process generator (worker.py) gets the checkpoint's path and loads the same
        # file itself, rather than a pickle of the weights.
        path = getattr(self.model, "checkpoint_path", None)
        if path:
            return (_from_checkpoint, (str(path), str(self.device), self.dtype, self.max_batch))
        return (ModelSource, (self.model, self.device, self.dtype, self.max_batch))

    def _inputs(self, keys: Sequence[NoteKey]):
        weights = torch.zeros(len(keys), len(self.instruments))
        for row, key in enumerate(keys):
            for index, weight in key.instrument:
                weights[row, index] += weight
        pitch = torch.tensor([k.pitch for k in keys], dtype=torch.long)
        velocity = torch.tensor([k.velocity for k in keys], dtype=torch.float32)
        return weights, pitch, velocity

    def render(self, keys: Sequence[NoteKey]) -> np.ndarray:
        """Whole notes, float32 (len(keys), note_samples) at `sample_rate`."""
        out = np.empty((len(keys), self.note_samples), dtype=np.float32)
        for start in range(0, len(keys), self.max_batch):
            batch = keys[start:start + self.max_batch]
            wave = self.model.generate(*self._inputs(batch), dtype=self.dtype)
            out[start:start + len(batch)] = self._checked(wave)
        return out

    def stream(self, keys: Sequence[NoteKey], chunk: int = 256) -> Iterator[np.ndarray]:
        """The notes in consecutive float32 chunks (len(keys), chunk)."""
        for part in self.model.stream(*self._inputs(keys), chunk=chunk):
            yield self._checked(part)

    def _checked(self, wave: torch.Tensor) -> np.ndarray:
        """`wave` as a numpy array, refusing NaN and infinite samples: weights that are
        finite but overflow make them, and the limiter and the file writer would turn
        them into full-scale noise that nothing downstream can tell from music."""
        if not torch.isfinite(wave).all():
            name = getattr(self.model, "checkpoint_path", "the model")
            raise CheckpointError(f"{name}: the model made NaN or infinite samples (its "
                                  "weights overflow); use another checkpoint")
        return wave.cpu().numpy()

    def prepare(self) -> "ModelSource":
        """Already loaded: itself."""
        return self

    def identity(self) -> str:
        """Hash of the weights: the checkpoint file's, else of the tensors in memory."""
        if self._identity is None:
            path = getattr(self.model, "checkpoint_path", None)
            if path:
                self._identity = file_hash(path)
            else:
                digest = hashlib.sha256()
                for name, tensor in sorted(self.model.state_dict().items()):
                    digest.update(name.encode())
                    digest.update(tensor.detach().cpu().numpy().tobytes())
                self._identity = digest.hexdigest()[:16]
        return self._identity


def _from_checkpoint(path: str, device: str, dtype, max_batch: int) -> ModelSource:
    return ModelSource(load_model(path), device, dtype, max_batch)


def load_source(path) -> ModelSource:
    """The loaded `ModelSource` of a checkpoint file (CheckpointError for a bad file)."""
    return ModelSource(load_model(path))
