"""Which torch device a command runs on."""
from __future__ import annotations

import torch

from singsynth.errors import ConfigError


def choose_device(name: str | None = "auto") -> str:
    """"cpu" or "cuda" for `--device NAME` (None or "auto": CUDA when torch sees a GPU).

    Raises ConfigError, naming the fix, for an unknown name or CUDA without a GPU.
    """
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r} is unknown; choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: this torch sees no CUDA GPU; use --device cpu, or "
                          "install the CUDA build of torch")
    return name
