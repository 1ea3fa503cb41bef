"""The note engine: a pull-based synth core (no device, file or model I/O in the audio path)."""
from singsynth.engine.synth import Synth

__all__ = ["Synth"]
