"""The note engine: a pull-based synth core (no device, file or model I/O in the audio path)."""
from .synth import Synth

__all__ = ["Synth"]
